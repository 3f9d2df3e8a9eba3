"""The multi-model example on a fake GPU: switching on its GPU-heavy neighbour fires
GPUNoisyNeighbour for the latency-sensitive model, and each model's cost shows in ``top``.

The server runs as users run it (a subprocess, real HTTP). Its /metrics is read every 0.25 s;
each read becomes one minute of input for promtool, which evaluates the shipped rules over
them (time compressed 240x: rates change scale, shares and quantiles do not).
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from tests.test_examples import MULTI, ROOT, serve_example

from infersight import top
from infersight.conventions import METRIC
from stack import find_binary

PROMTOOL = find_binary("promtool")
RULES = ROOT / "prometheus-rules"
READS_BEFORE, READS_AFTER = 22, 11  # fires from about 7 reads after; the rise is 10 reads long
READ_EVERY_S = 0.25
ALERT = "GPUNoisyNeighbour"
FAMILIES = (
    f"{METRIC.REQUEST_DURATION.name}_bucket",
    f"{METRIC.REQUEST_DURATION.name}_count",
    METRIC.MODEL_SLO_P99.name,
    METRIC.MODEL_GPU_SECONDS.sample_name,
    METRIC.GPU_HOURLY_COST.name,
)
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _keep_calling(url: str, stop: threading.Event) -> None:
    deadline = time.monotonic() + 120
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            requests.post(f"{url}/predict/realtime", json={"text": "good great"}, timeout=10)
        except requests.RequestException:
            time.sleep(0.05)


def _read(url: str) -> Samples:
    return top.parse_metrics(requests.get(f"{url}/metrics", timeout=5).text)


def _series(reads: list[Samples]) -> list[dict[str, str]]:
    keys = sorted({k for r in reads for k in r if k[0] in FAMILIES})
    out = []
    for name, labels in keys:
        values = [repr(r[(name, labels)]) if (name, labels) in r else "_" for r in reads]
        text = ",".join(f'{k}="{v}"' for k, v in (*labels, ("job", "model-server"), ("instance", "example")))
        out.append({"series": f"{name}{{{text}}}", "values": " ".join(values)})
    return out


def _rules_without_annotations(tmp: Path) -> Path:
    """The shipped GPU rules, with the alert's annotations left out: its description quotes a
    measured value, which promtool would have to match exactly."""
    doc: dict[str, Any] = yaml.safe_load((RULES / "gpu.rules.yaml").read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    path = tmp / "gpu.rules.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not on PATH")
def test_a_gpu_heavy_neighbour_fires_the_noisy_neighbour_alert(tiny_model_dir: Path, tmp_path: Path) -> None:
    env = {
        "INFERSIGHT_GPU": "on",
        "EXAMPLE_FAKE_GPU": "1",
        "INFERSIGHT_GPU_INTERVAL": "0.1",
        "INFERSIGHT_GPU_SLOW_INTERVAL": "1",
        "INFERSIGHT_GPU_HOURLY_COST": "H100=4",
    }
    reads: list[Samples] = []
    with serve_example(MULTI, tiny_model_dir, tmp_path, **env) as url:
        stop = threading.Event()
        clients = [threading.Thread(target=_keep_calling, args=(url, stop)) for _ in range(2)]
        for c in clients:
            c.start()
        try:
            for i in range(READS_BEFORE + READS_AFTER):
                if i == READS_BEFORE:
                    resp = requests.post(f"{url}/admin/neighbour", json={"on": True}, timeout=5)
                    assert resp.json()["on"] is True
                reads.append(_read(url))
                time.sleep(READ_EVERY_S)
        finally:
            stop.set()
            for c in clients:
                c.join(15)

    uuid = next(dict(k[1])["uuid"] for k in reads[-1] if k[0] == METRIC.MODEL_GPU_SECONDS.sample_name)
    last = READS_BEFORE + READS_AFTER - 1
    test = {
        "rule_files": [str(_rules_without_annotations(tmp_path)), str(RULES / "latency.rules.yaml")],
        "evaluation_interval": "1m",
        "group_eval_order": ["infersight-latency-recording", "infersight-gpu-recording", "infersight-gpu-alerts"],
        "tests": [
            {
                "interval": "1m",
                "input_series": _series(reads),
                "alert_rule_test": [
                    # The neighbour is switched on at minute READS_BEFORE: nothing before.
                    {"alertname": ALERT, "eval_time": f"{READS_BEFORE - 1}m", "exp_alerts": []},
                    {
                        "alertname": ALERT,
                        "eval_time": f"{last}m",
                        "exp_alerts": [{"exp_labels": {"severity": "warning", "model": "realtime", "uuid": uuid}}],
                    },
                ],
            }
        ],
    }
    (tmp_path / "neighbour_test.yaml").write_text(yaml.safe_dump(test, sort_keys=False))
    assert PROMTOOL is not None
    result = subprocess.run(
        [PROMTOOL, "test", "rules", "neighbour_test.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]

    # `infersight top` over the neighbour's last reads: both models' GPU share and cost.
    snap = top.build_snapshot(reads[-1], reads[-5], 4 * READ_EVERY_S, "test")
    realtime, embedder = snap.models["realtime"], snap.models["embedder"]
    assert realtime.gpu_share + embedder.gpu_share == pytest.approx(1.0)
    assert embedder.gpu_share > 0.2
    for row in (realtime, embedder):
        # One GPU at 4 an hour: the cost is the GPU time at that price.
        assert row.gpu_seconds_per_1k > 0
        assert row.cost_per_1k == pytest.approx(row.gpu_seconds_per_1k * 4 / 3600)
    text = top.render(snap)
    assert "COST/1k" in text and f"{embedder.gpu_share * 100:.0f}%" in text
