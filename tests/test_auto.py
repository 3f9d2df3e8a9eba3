"""`import infersight.auto` and `opentelemetry-instrument`, in fresh interpreters."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

APP = """
{preamble}
from flask import Flask
import infersight
app = Flask(__name__)

@app.get("/p")
def p():
    with infersight.model(model="m"):
        return "ok"

c = app.test_client()
assert c.get("/p").status_code == 200
from infersight._runtime import get_runtime
get_runtime().worker.drain()
body = c.get("/metrics").data.decode()
line = [l for l in body.splitlines() if l.startswith("infersight_stage_duration_seconds_count")]
print(line)
"""


def _run(code: str, *prefix: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ, OTEL_TRACES_EXPORTER="none", INFERSIGHT_GPU="off", **env)
    return subprocess.run(
        [*prefix, sys.executable, "-c", code] if not prefix else [*prefix, "-c", code],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_one_import_after_flask_was_imported() -> None:
    result = _run(APP.format(preamble="import flask\nimport infersight.auto"))
    assert result.returncode == 0, result.stderr
    assert 'model="m",stage="model"} 1.0' in result.stdout


def test_one_import_before_flask() -> None:
    result = _run(APP.format(preamble="import infersight.auto"))
    assert result.returncode == 0, result.stderr
    assert 'model="m",stage="model"} 1.0' in result.stdout


def test_bad_env_fails_at_startup_naming_the_variable() -> None:
    result = _run("import infersight.auto", INFERSIGHT_METRICS_PORT="ninety")
    assert result.returncode != 0
    assert "INFERSIGHT_METRICS_PORT" in result.stderr
    assert "metrics_port" in result.stderr


def test_entry_point_is_registered() -> None:
    eps = entry_points(group="opentelemetry_instrumentor")
    ours = [ep for ep in eps if ep.name == "infersight"]
    assert ours and ours[0].load().__name__ == "InfersightInstrumentor"


def test_opentelemetry_instrument_gives_the_same_result() -> None:
    """With opentelemetry-instrumentation-flask also loaded, its server span is kept and our
    stages attach to it."""
    bindir = Path(sys.executable).parent
    result = _run(APP.format(preamble=""), str(bindir / "opentelemetry-instrument"), sys.executable)
    assert result.returncode == 0, result.stderr
    assert 'model="m",stage="model"} 1.0' in result.stdout
