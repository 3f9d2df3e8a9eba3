"""transformers 4.4x: the same three stages, in a subprocess that puts 4.46 ahead of 5.x."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CACHE = Path(os.environ.get("INFERSIGHT_CACHE", Path.home() / ".cache" / "infersight"))
COMPAT = CACHE / "compat" / "transformers-4.46"

SCRIPT = """
import json, sys
import transformers
import infersight
from infersight.testing import capture
from infersight.instrumentation import instrument_all
with capture() as t:
    instrument_all(["transformers"])
    from transformers import pipeline
    clf = pipeline("sentiment-analysis", model=sys.argv[1])
    with infersight.request(endpoint="/p"):
        label = clf("great movie")[0]["label"]
    spans = t.spans()
    # The model's cold start is a trace of its own (its root: cold_start); the request's spans are apart.
    cold = {s.context.trace_id for s in spans if s.name == "cold_start"}
    request = [s for s in spans if s.context.trace_id not in cold]
    print(json.dumps({"version": transformers.__version__, "label": label,
                      "spans": sorted(s.name for s in request),
                      "cold_start": sorted({s.name for s in spans if s.context.trace_id in cold}),
                      "models": sorted({str(s.attributes.get("infersight.model.name")) for s in request})}))
"""


def test_transformers_4_46_pipeline_stages(tiny_model_dir: Path) -> None:
    if not (COMPAT / ".done").exists():
        pytest.fail(f"{COMPAT} is missing: run tools/setup.sh (make setup) to install it")
    env = dict(os.environ, PYTHONPATH=str(COMPAT))
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tiny_model_dir)], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["version"] == "4.46.3"
    assert out["spans"] == ["inference", "model", "postprocess", "preprocess"]
    assert {"cold_start", "model_load", "read_weights"} <= set(out["cold_start"]), out["cold_start"]
    assert out["models"] == ["tiny-sentiment"]
