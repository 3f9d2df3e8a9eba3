"""``infersight top``: quantile maths, the table from two /metrics reads, and ``--once`` against a
running example server, both from its /metrics and through a real Prometheus."""

from __future__ import annotations

import math
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from tests.test_examples import ROOT, SENTIMENT, serve_example

from infersight import top
from infersight.conventions import LATENCY_BUCKETS, METRIC, STAGES
from stack import find_binary, prometheus, wait_until

sys.path.insert(0, str(ROOT / "examples" / "load"))
import http_load


def test_bucket_quantile_interpolates_like_promql() -> None:
    buckets = [(0.1, 50.0), (0.2, 100.0), (math.inf, 100.0)]
    assert top.bucket_quantile(0.5, buckets) == pytest.approx(0.1)
    assert top.bucket_quantile(0.75, buckets) == pytest.approx(0.15)
    assert top.bucket_quantile(0.25, buckets) == pytest.approx(0.05)
    # Beyond the last finite bound, the bound itself; no data, NaN.
    assert top.bucket_quantile(0.99, [(0.1, 1.0), (math.inf, 10.0)]) == pytest.approx(0.1)
    assert math.isnan(top.bucket_quantile(0.5, [(0.1, 0.0), (math.inf, 0.0)]))


def test_snapshot_from_two_reads_uses_only_the_difference() -> None:
    reg = CollectorRegistry()
    spec, stage_spec = METRIC.REQUEST_DURATION, METRIC.STAGE_DURATION
    req = Histogram(spec.name, spec.help, spec.labels, buckets=LATENCY_BUCKETS, registry=reg)
    st = Histogram(stage_spec.name, stage_spec.help, stage_spec.labels, buckets=LATENCY_BUCKETS, registry=reg)
    Gauge(METRIC.MODEL_SLO_P99.name, "", ("model",), registry=reg).labels("m").set(0.1)
    gpu = METRIC.GPU_UTILIZATION
    Gauge(gpu.name, gpu.help, gpu.labels, registry=reg).labels("0", "GPU-1", "NVIDIA H100").set(0.37)
    for _ in range(100):  # before the window: fast
        req.labels("m", "1", "/p", "success").observe(0.004)
    before = top.parse_metrics(generate_latest(reg).decode())
    for _ in range(18):  # in the window: slow, and two errors
        req.labels("m", "1", "/p", "success").observe(0.3)
        st.labels("m", "postprocess").observe(0.29)
    for _ in range(2):
        req.labels("m", "1", "/p", "error").observe(0.3)
    after = top.parse_metrics(generate_latest(reg).decode())
    snap = top.build_snapshot(after, before, 4.0, "test")
    row = snap.models["m"]
    assert row.rps == pytest.approx(20 / 4.0)
    assert row.error_ratio == pytest.approx(0.1)
    assert 0.25 < row.p50 <= 0.5 and 0.25 < row.p99 <= 0.5  # the fast requests are outside the window
    assert row.slo_p99 == pytest.approx(0.1) and row.over_slo
    assert snap.stages[("m", "postprocess")].rps == pytest.approx(18 / 4.0)
    assert snap.gpus == {"0 (NVIDIA H100)": pytest.approx(0.37)}
    snap.alerts = [
        top.Alert("InferenceP99AboveSLO", "firing", {"model": "m", "severity": "warning"}),
        top.Alert("InferenceErrorRatioHigh", "pending", {"model": "m"}),
    ]
    text = top.render(snap)
    assert "OVER" in text and "postprocess" in text and "10.0%" in text
    assert "0 (NVIDIA H100): 37% busy" in text
    assert "ALERTS  1 firing, 1 pending" in text
    assert re.search(r"FIRING +InferenceP99AboveSLO +model=m severity=warning", text)
    assert "\x1b[" not in text and "\x1b[31m" in top.render(snap, color=True)


def test_gpu_share_and_cost_per_model_from_two_reads() -> None:
    reg = CollectorRegistry()
    spec, secs, price = METRIC.REQUEST_DURATION, METRIC.MODEL_GPU_SECONDS, METRIC.GPU_HOURLY_COST
    req = Histogram(spec.name, spec.help, spec.labels, buckets=LATENCY_BUCKETS, registry=reg)
    gpu_seconds = Counter(secs.name, secs.help, secs.labels, registry=reg)
    Gauge(price.name, price.help, price.labels, registry=reg).labels("0", "GPU-0", "H100").set(3.6)
    gpu_seconds.labels("realtime", "0", "GPU-0").inc(50)  # before the window
    before = top.parse_metrics(generate_latest(reg).decode())
    for _ in range(100):
        req.labels("realtime", "1", "/p", "success").observe(0.02)
    for _ in range(10):
        req.labels("embedder", "1", "/p", "success").observe(0.5)
    gpu_seconds.labels("realtime", "0", "GPU-0").inc(1.0)  # 10 ms of GPU per request
    gpu_seconds.labels("embedder", "0", "GPU-0").inc(4.0)  # 400 ms per request
    after = top.parse_metrics(generate_latest(reg).decode())
    snap = top.build_snapshot(after, before, 5.0, "test")
    realtime, embedder = snap.models["realtime"], snap.models["embedder"]
    assert realtime.gpu_share == pytest.approx(0.2) and embedder.gpu_share == pytest.approx(0.8)
    assert realtime.gpu_seconds_per_1k == pytest.approx(10.0)
    assert embedder.gpu_seconds_per_1k == pytest.approx(400.0)
    assert embedder.cost_per_1k == pytest.approx(400 * 3.6 / 3600)
    rows = _rows(top.render(snap))
    assert rows["realtime"][-3:] == ["20%", "10", "0.01"]
    assert rows["embedder"][-3:] == ["80%", "400", "0.4"]
    # Without a price: no cost, the rest stays.
    no_price = {k: v for k, v in after.items() if k[0] != price.name}
    assert math.isnan(top.build_snapshot(no_price, before, 5.0, "test").models["embedder"].cost_per_1k)


def _rows(output: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split()[1:] for line in output.splitlines() if line.strip()}


def _ms(cell: str) -> float:
    match = re.fullmatch(r"([\d.]+)(ms|s)", cell)
    assert match, f"not a latency: {cell!r}"
    return float(match.group(1)) / (1000 if match.group(2) == "ms" else 1)


def _check_table(output: str) -> None:
    rows = _rows(output)
    assert "tiny-sentiment" in rows, output
    cells = rows["tiny-sentiment"]
    p50, p95, p99, slo = (_ms(c) for c in cells[:4])
    assert 0 < p50 <= p95 <= p99 < 5, output
    assert slo == pytest.approx(0.1)
    assert float(cells[5]) > 1.0, output  # RPS, with the load at ~8/s
    assert cells[6] == "0.0%"
    for stage in STAGES:
        assert stage in rows and _ms(rows[stage][2]) > 0, output


@pytest.fixture(scope="module")
def loaded_server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The sentiment example under a steady ~8 req/s until the module ends (bounded at 240 s)."""
    import json

    models = json.dumps({"tiny-sentiment": {"slo_p99_seconds": 0.1}})
    with serve_example(SENTIMENT, tiny_model_dir, tmp_path_factory.mktemp("top"), INFERSIGHT_MODELS=models) as url:
        stop = threading.Event()
        load = threading.Thread(
            target=http_load.run,
            args=(f"{url}/predict",),
            kwargs={"duration_s": 240, "rps": 8, "concurrency": 2, "stop": stop},
        )
        load.start()
        try:
            yield url
        finally:
            stop.set()
            load.join(15)


def _top(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "infersight.cli", "top", "--once", "--no-color", *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert "\x1b[" not in proc.stdout
    return proc.stdout


def test_top_once_from_a_servers_metrics(loaded_server: str) -> None:
    out = _top("--metrics-url", f"{loaded_server}/metrics", "--interval", "2")
    _check_table(out)
    assert "ALERTS  0 firing" in out


@pytest.mark.skipif(find_binary("prometheus") is None, reason="prometheus binary not installed (tools/setup.sh)")
def test_top_once_through_prometheus(loaded_server: str, tmp_path: Path) -> None:
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": "model-server", "static_configs": [{"targets": [loaded_server.removeprefix("http://")]}]}
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    with prometheus(tmp_path / "prometheus.yml", tmp_path) as prom:
        source = top.PrometheusSource(prom.url, window="30s")
        wait_until(
            lambda: source.snapshot().models.get("tiny-sentiment", top.Row()).rps > 1.0,
            30,
            interval=0.5,
            what="a rate in Prometheus",
        )
        out = _top("--prometheus", prom.url, "--window", "30s")
    _check_table(out)
    assert "! " not in out, out  # every query answered


def test_top_says_when_its_source_is_down() -> None:
    from stack import free_port

    for flag, url in (
        ("--metrics-url", f"http://127.0.0.1:{free_port()}/metrics"),
        ("--prometheus", f"http://127.0.0.1:{free_port()}"),
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "infersight.cli", "top", "--once", flag, url],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=ROOT,
        )
        assert "Traceback" not in proc.stderr, proc.stderr
        assert "refused" in proc.stdout and "(no data, see below)" in proc.stdout, proc.stdout
        assert proc.returncode == 1


def test_outgoing_call_names_keep_their_distinguishing_end() -> None:
    assert top._call_name("a:80", "/v2/models/m/infer") == "a:80/v2/models/m/infer"
    grpc_call = top._call_name("127.0.0.1:45053", "inference.GRPCInferenceService/ModelInfer/double_slow")
    assert grpc_call.endswith("ModelInfer/double_slow") and len(grpc_call) == 37 and grpc_call.startswith("…")
    assert top._call_name("127.0.0.1:45053", "svc.S/M") == "127.0.0.1:45053 svc.S/M"


def test_outgoing_calls_from_prometheus_name_the_layer() -> None:
    """Client-side series (an instrumented client's outgoing calls): the P99, its network part,
    and "network" or "server" for whichever holds most of it."""

    class Fake(top.PrometheusSource):
        def query(self, expr: str) -> list[tuple[dict[str, str], float]]:
            calls = {"a:80": (0.30, 0.25), "b:80": (0.30, 0.02)}  # (client P99, network P99)
            if "client_network_seconds_bucket" in expr and "0.99" in expr:
                return [({"target": t, "endpoint": "/p"}, v[1]) for t, v in calls.items()]
            if "client_request_duration_seconds_bucket" in expr and "0.99" in expr:
                return [({"target": t, "endpoint": "/p"}, v[0]) for t, v in calls.items()]
            if "client_request_duration_seconds_count" in expr:
                return [({"target": t, "endpoint": "/p"}, 5.0) for t in calls]
            return []

        def alerts(self) -> list[top.Alert]:
            return [top.Alert("InferenceNetworkLatencyHigh", "firing", {"layer": "network", "target": "a:80"})]

    snap = Fake("http://prometheus.invalid").snapshot()
    assert snap.calls[("a:80", "/p")].layer == "network"
    assert snap.calls[("b:80", "/p")].layer == "server"
    frame = top.render(snap)
    rows = {
        line.split()[0]: line.split()[-1] for line in frame.splitlines() if line.startswith("  ") and ":80/p" in line
    }
    assert rows == {"a:80/p": "network", "b:80/p": "server"}, frame
    assert "InferenceNetworkLatencyHigh" in frame and "layer=network" in frame


def test_a_query_prometheus_refuses_is_one_problem_not_an_outage() -> None:
    """HTTP 400 for one query (an OSError, as a refused connection is): the others still run."""
    import urllib.error

    class Fake(top.PrometheusSource):
        def query(self, expr: str) -> list[tuple[dict[str, str], float]]:
            if "client_network_seconds_bucket" in expr:
                raise urllib.error.HTTPError(self.url, 400, "Bad Request", {}, None)  # type: ignore[arg-type]
            if "client_request_duration_seconds_count" in expr:
                return [({"target": "a:80", "endpoint": "/p"}, 5.0)]
            return []

        def alerts(self) -> list[top.Alert]:
            return []

    snap = Fake("http://prometheus.invalid").snapshot()
    assert [p for p in snap.problems if p.startswith("call_network_p0.99:")], snap.problems
    assert not [p for p in snap.problems if "unreachable" in p], snap.problems
    assert snap.calls[("a:80", "/p")].rps == 5.0  # a query after the refused one


def test_payload_note_on_a_fresh_deployment_against_the_median_of_the_history() -> None:
    """No hour of history: the payload baseline is the median of the windowed means so far, as in
    the alert's note, so a payload jump in the first hour is noted."""

    class Fake(top.PrometheusSource):
        def query(self, expr: str) -> list[tuple[dict[str, str], float]]:
            if "payload_size_bytes" not in expr or "offset 1h" in expr:
                return []  # no hour ago
            if expr.startswith("quantile_over_time(0.5,"):
                return [({"model": "m"}, 100.0)]  # the median of the means so far
            if expr.startswith("sum by (model) (rate(infersight_payload_size_bytes_sum"):
                return [({"model": "m"}, 400.0)]  # now
            return []

    snap = top.Snapshot("http://prometheus.invalid", "1m")
    top._prometheus_diagnose(Fake("http://prometheus.invalid"), snap)
    assert snap.notes.get("m") == f"payload {top.TIMES}4.0", (snap.notes, snap.problems)
