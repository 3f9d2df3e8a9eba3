"""The trace view (infersight.traceview, ``infersight trace``, the ``t`` key of top) and top's
P99 sparklines.

Parsing and drawing are pure functions, tested on OTLP JSON written here the way Jaeger's
query API (/api/v3) and Tempo answer; one live test runs the real Jaeger binary
(tools/build-jaeger.sh), sends it a trace over OTLP, and reads it back through the CLI.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infersight import top, traceview
from infersight.conventions import ATTR, SPAN

ROOT = Path(__file__).resolve().parent.parent
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
T0 = 1_700_000_000_000_000_000  # ns


def _attr(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}  # proto3 JSON writes int64 as a string
    if isinstance(value, float):
        return {"key": key, "value": {"doubleValue": value}}
    return {"key": key, "value": {"stringValue": value}}


def _span(span_id: str, parent: str, name: str, start_ms: float, end_ms: float, kind: int = 1, **attrs: Any) -> Any:
    return {
        "traceId": TRACE_ID,
        "spanId": span_id,
        "parentSpanId": parent,
        "name": name,
        "kind": kind,
        "startTimeUnixNano": str(T0 + int(start_ms * 1e6)),
        "endTimeUnixNano": str(T0 + int(end_ms * 1e6)),
        "attributes": [_attr(k, v) for k, v in attrs.items()],
        "status": {},
    }


def request_trace() -> list[dict[str, Any]]:
    """A request of 200 ms: preprocess 40 ms (10 ms on a CPU), model 100 ms with GPU figures,
    postprocess 50 ms (all CPU), 10 ms outside the stages."""
    spans = [
        _span("00000000000000a1", "", "POST /predict", 0, 200, kind=2, **{ATTR.OUTSIDE_STAGES_SECONDS: 0.01}),
        _span("00000000000000b2", "00000000000000a1", SPAN.PREPROCESS, 5, 45, **{ATTR.STAGE_CPU_SECONDS: 0.01}),
        _span(
            "00000000000000c3",
            "00000000000000a1",
            SPAN.MODEL,
            45,
            145,
            **{
                ATTR.STAGE_CPU_SECONDS: 0.02,
                ATTR.MODEL_NAME: "tiny-sentiment",
                ATTR.BATCH_SIZE: 4,
                ATTR.GPU_SECONDS: 0.012,
                ATTR.GPU_BUSY_SECONDS: 0.048,
                ATTR.GPU_PREFIX + "sm_active": 0.45,
                ATTR.GPU_PREFIX + "nvlink_tx_bytes_per_second": 2.5e9,
                ATTR.GPU_WALL_SECONDS: 0.1,
                ATTR.GPU_UUID: "GPU-1234",
            },
        ),
        _span("00000000000000d4", "00000000000000a1", SPAN.POSTPROCESS, 145, 195, **{ATTR.STAGE_CPU_SECONDS: 0.05}),
    ]
    return [
        {
            "resource": {"attributes": [_attr(ATTR.SERVICE_NAME, "sentiment")]},
            "scopeSpans": [{"scope": {"name": "infersight"}, "spans": spans}],
        }
    ]


def jaeger_doc() -> dict[str, Any]:
    return {"result": {"resourceSpans": request_trace()}}


# ---- parsing -----------------------------------------------------------------------------


def test_parses_jaegers_and_tempos_otlp_json_alike() -> None:
    for doc in (jaeger_doc(), {"batches": request_trace()}, {"trace": {"resourceSpans": request_trace()}}):
        traces = traceview.parse_traces(doc)
        assert list(traces) == [TRACE_ID]
        trace = traces[TRACE_ID]
        assert len(trace.spans) == 4 and {s.service for s in trace.spans} == {"sentiment"}
        assert trace.root.name == "POST /predict" and trace.root.kind == traceview.SPAN_KIND_SERVER
        assert trace.duration_s == pytest.approx(0.2)
        model = next(s for s in trace.spans if s.name == SPAN.MODEL)
        assert model.attributes[ATTR.BATCH_SIZE] == 4  # int64 string -> int
        assert model.number(ATTR.STAGE_CPU_SECONDS) == pytest.approx(0.02)
        assert model.number(ATTR.MODEL_NAME) is None


def test_tree_is_depth_first_by_start_time_and_survives_a_cycle() -> None:
    trace = traceview.parse_traces(jaeger_doc())[TRACE_ID]
    assert [(d, s.name) for d, s in trace.tree()] == [
        (0, "POST /predict"),
        (1, SPAN.PREPROCESS),
        (1, SPAN.MODEL),
        (1, SPAN.POSTPROCESS),
    ]
    # Two spans naming each other as parent, and an orphan: each shown once, nothing lost.
    broken = request_trace()
    spans = broken[0]["scopeSpans"][0]["spans"]
    spans[1]["parentSpanId"] = "00000000000000c3"
    spans[2]["parentSpanId"] = "00000000000000b2"
    spans.append(_span("00000000000000e5", "ffffffffffffffff", "orphan", 1, 2))
    tree = traceview.parse_traces({"resourceSpans": broken})[TRACE_ID].tree()
    assert sorted(s.name for _, s in tree) == sorted(["POST /predict", "orphan", SPAN.POSTPROCESS])


def test_error_status_and_enum_names() -> None:
    doc = jaeger_doc()
    span = doc["result"]["resourceSpans"][0]["scopeSpans"][0]["spans"][3]
    span["status"] = {"code": "STATUS_CODE_ERROR"}
    span["kind"] = "SPAN_KIND_CLIENT"
    post = next(s for s in traceview.parse_traces(doc)[TRACE_ID].spans if s.name == SPAN.POSTPROCESS)
    assert post.error and post.kind == 3


# ---- drawing -----------------------------------------------------------------------------


def _line(text: str, name: str) -> str:
    found = [line for line in text.splitlines() if re.match(rf"\s*{re.escape(name)}\s+\|", line)]
    assert len(found) == 1, text
    return found[0]


def _bar(line: str) -> str:
    return line.split("|")[1]


def test_waterfall_splits_each_stage_into_cpu_and_wait() -> None:
    trace = traceview.parse_traces(jaeger_doc())[TRACE_ID]
    text = traceview.render_waterfall(trace, width=140)
    assert TRACE_ID in text and "200ms" in text and "4 spans" in text and "model tiny-sentiment" in text
    pre = _line(text, SPAN.PREPROCESS)
    assert "cpu 10.0ms (25%) wait 30.0ms" in pre
    bar = _bar(pre)
    cpu, wait = bar.count(traceview.CPU), bar.count(traceview.WAIT)
    assert cpu >= 1 and abs(cpu - 0.25 * (cpu + wait)) <= 1, bar  # 10 ms of 40 ms on a CPU
    post = _line(text, SPAN.POSTPROCESS)
    assert "cpu 50.0ms (100%) wait 0.0ms" in post and traceview.WAIT not in _bar(post)
    # The bars sit on one time axis: preprocess starts left of model, which starts left of postprocess.
    starts = [len(_bar(_line(text, n))) - len(_bar(_line(text, n)).lstrip()) for n in STAGE_NAMES]
    assert starts == sorted(starts) and starts[0] < starts[2]
    root = _line(text, "POST /predict")
    assert "outside stages 10.0ms" in root and "cpu" not in root
    assert "\x1b[" not in text and "\x1b[1m" in traceview.render_waterfall(trace, color=True)


STAGE_NAMES = (SPAN.PREPROCESS, SPAN.MODEL, SPAN.POSTPROCESS)


def test_waterfall_shows_gpu_counters_only_where_present() -> None:
    trace = traceview.parse_traces(jaeger_doc())[TRACE_ID]
    text = traceview.render_waterfall(trace, width=160)
    model = _line(text, SPAN.MODEL)
    assert "GPU gpu 12.0ms kernels 48.0ms nvlink_tx_bytes_per_second 2.5e+09 sm_active 45%" in model
    assert "GPU-1234" not in model and "wall" not in model
    assert "GPU" not in _line(text, SPAN.PREPROCESS)


def test_waterfall_of_an_error_and_of_nothing() -> None:
    doc = jaeger_doc()
    doc["result"]["resourceSpans"][0]["scopeSpans"][0]["spans"][2]["status"] = {"code": 2}
    text = traceview.render_waterfall(traceview.parse_traces(doc)[TRACE_ID])
    assert "ERROR" in _line(text, SPAN.MODEL)
    assert "no spans" in traceview.render_waterfall(traceview.Trace("ab", []))


# ---- top's sparklines --------------------------------------------------------------------


def test_sparkline_scales_from_zero_and_leaves_gaps() -> None:
    assert top.sparkline([0.1, 0.1, 0.1]) == top.SPARK[-1] * 3
    line = top.sparkline([0.0, 0.05, 0.1, float("nan"), 0.1])
    assert line == top.SPARK[0] + top.SPARK[4] + top.SPARK[-1] + " " + top.SPARK[-1]
    assert len(top.sparkline([0.1] * 40)) == top.SPARK_LEN


def test_top_draws_a_p99_trend_per_model_and_stage() -> None:
    history = top.History(size=5)
    for p99 in (0.01, 0.01, 0.02, 0.04, 0.08, 0.16):  # the model's P99 doubles each frame
        snap = top.Snapshot(source="test", window="1m")
        snap.models["m"] = top.Row(p50=p99 / 2, p95=p99, p99=p99, rps=5)
        snap.stages[("m", "model")] = top.Row(p99=p99 / 2, rps=5)
        if p99 > 0.05:
            snap.stages[("m", "postprocess")] = top.Row(p99=0.03, rps=5)  # appears in frame 5
        history.add(snap)
    assert history.series("m") == [0.01, 0.02, 0.04, 0.08, 0.16]
    assert history.series(("m", "postprocess"))[:3] == [pytest.approx(v, nan_ok=True) for v in [float("nan")] * 3]
    text = top.render(snap, history=history)
    assert "P99 trend" in text.splitlines()[2]
    model_row = next(line for line in text.splitlines() if line.startswith("m "))
    assert top.sparkline([0.01, 0.02, 0.04, 0.08, 0.16]) in model_row
    post_row = next(line for line in text.splitlines() if line.startswith("  postprocess"))
    assert "   " + top.SPARK[-1] * 2 in post_row
    assert "P99 trend" not in top.render(snap)  # no history: the table as before


# ---- live: the real Jaeger ---------------------------------------------------------------


@pytest.fixture(scope="module")
def jaeger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    import stack

    binary = stack.jaeger_binary()
    if not binary.exists():
        pytest.skip(f"Jaeger is not built ({binary}); tools/setup.sh builds it (tools/build-jaeger.sh)")
    with stack.run_jaeger(tmp_path_factory.mktemp("jaeger"), binary) as running:
        yield running


def _send_request_trace(endpoint: str) -> str:
    """A server span with three stage spans (CPU time attributes as the SDK sets them), sent
    over OTLP gRPC by the OTel SDK; returns the trace id."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.trace import SpanKind

    provider = TracerProvider(resource=Resource.create({ATTR.SERVICE_NAME: "traceview-test"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"http://{endpoint}", insecure=True)))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("POST /predict", kind=SpanKind.SERVER) as root:
        for name, cpu in ((SPAN.PREPROCESS, 0.001), (SPAN.MODEL, 0.002), (SPAN.POSTPROCESS, 0.0)):
            with tracer.start_as_current_span(name) as span:
                span.set_attribute(ATTR.STAGE_CPU_SECONDS, cpu)
                span.set_attribute(ATTR.MODEL_NAME, "tiny-sentiment")
                time.sleep(0.02)
        trace_id = format(root.get_span_context().trace_id, "032x")
    provider.shutdown()
    return trace_id


@pytest.fixture()
def fake_http() -> Iterator[tuple[str, dict[str, Any]]]:
    """A loopback HTTP server answering GETs from ``routes``: the longest path prefix wins,
    its value is JSON (200); no prefix: 404."""
    routes: dict[str, Any] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            match = max((p for p in routes if path.startswith(p)), key=len, default=None)
            body = json.dumps(routes[match] if match is not None else {"error": "not found"}).encode()
            self.send_response(200 if match is not None else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", routes
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _exemplars(*pairs: tuple[str, float]) -> dict[str, Any]:
    """A query_exemplars answer: one series per (trace id, seconds)."""
    now = time.time()
    data = [
        {
            "seriesLabels": {"model": "tiny-sentiment", "le": "+Inf"},
            "exemplars": [{"labels": {"trace_id": tid}, "value": str(value), "timestamp": now}],
        }
        for tid, value in pairs
    ]
    return {"status": "success", "data": data}


def test_top_shows_the_slowest_trace_on_the_t_key(fake_http: tuple[str, dict[str, Any]]) -> None:
    """top in a terminal: ``t`` draws the slowest exemplar's trace (skipping one the backend
    does not hold), any key goes back to the table, ``q`` quits. Prometheus and Jaeger are
    stand-ins serving their APIs' JSON."""
    import argparse

    url, routes = fake_http
    routes["/api/v1/query"] = {"status": "success", "data": {"resultType": "vector", "result": []}}
    routes["/api/v1/alerts"] = {"status": "success", "data": {"alerts": []}}
    routes["/api/v1/query_exemplars"] = _exemplars(("f" * 32, 3.0), (TRACE_ID, 0.2))
    routes[f"/api/v3/traces/{TRACE_ID}"] = jaeger_doc()
    parser = argparse.ArgumentParser()
    top.add_arguments(parser)
    args = parser.parse_args(["--prometheus", url, "--jaeger", url, "--interval", "0.1", "--no-color"])

    class Out:
        def __init__(self) -> None:
            self.parts: list[str] = []

        def write(self, text: str) -> None:
            self.parts.append(text)

        def flush(self) -> None:
            pass

        def text(self) -> str:
            return "".join(self.parts)

    master, slave = os.openpty()
    out, result = Out(), []
    with os.fdopen(slave, "rb", buffering=0) as keys:
        thread = threading.Thread(target=lambda: result.append(top.run(args, out, keys_from=keys)), daemon=True)
        thread.start()
        from stack import wait_until

        wait_until(lambda: top.KEYS_HELP in out.text(), 10, what="the first frame")
        os.write(master, b"t")
        wait_until(lambda: "slowest recent request" in out.text(), 10, what="the trace on t")
        shown = out.text().split("slowest recent request", 1)[1]
        assert TRACE_ID in shown and "cpu 10.0ms (25%) wait 30.0ms" in shown
        frames = out.text().count("infersight top")
        os.write(master, b"x")  # back to the table
        wait_until(lambda: out.text().count("infersight top") > frames, 10, what="the table again")
        os.write(master, b"q")
        thread.join(timeout=10)
    os.close(master)
    assert result == [0]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "sdk"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "infersight.cli", "trace", "--no-color", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )


@pytest.mark.stack
def test_a_trace_sent_to_jaeger_is_drawn_by_infersight_trace(
    jaeger: Any, fake_http: tuple[str, dict[str, Any]]
) -> None:
    from stack import wait_until

    trace_id = _send_request_trace(jaeger.otlp_endpoint)

    def whole() -> traceview.Trace | None:  # Jaeger stores each batch as it comes: wait for all 4 spans
        trace = jaeger.trace(trace_id)
        return trace if trace is not None and len(trace.spans) == 4 else None

    trace = wait_until(whole, 15, interval=0.2, what=f"the 4 spans of trace {trace_id} in Jaeger")
    assert {s.name for s in trace.spans} == {"POST /predict", *STAGE_NAMES}
    assert trace.root.service == "traceview-test"

    proc = _cli(trace_id, "--jaeger", jaeger.url)
    assert proc.returncode == 0, proc.stderr
    assert trace_id in proc.stdout and "POST /predict" in proc.stdout
    assert re.search(r"^\s+model\s+\|.*cpu 2\.0ms", proc.stdout, re.M), proc.stdout
    found = traceview.find_traces(jaeger.url, "traceview-test", since=time.time() - 60)
    assert trace_id in found

    # An id Jaeger does not hold is said so.
    missing = "f" * 32
    proc = _cli(missing, "--jaeger", jaeger.url)
    assert proc.returncode == 1 and f"no trace {missing}" in proc.stderr

    # Without an id: the slowest exemplar whose trace Jaeger holds (the slower one was sampled out).
    prom_url, routes = fake_http
    routes["/api/v1/query_exemplars"] = _exemplars((missing, 2.5), (trace_id, 0.07), ("e" * 32, 0.01))
    proc = _cli("--prometheus", prom_url, "--jaeger", jaeger.url)
    assert proc.returncode == 0, proc.stderr
    assert "slowest recent request (70 ms)" in proc.stdout and trace_id in proc.stdout


def test_build_script_and_stack_agree_on_the_cached_binary(jaeger: Any) -> None:
    """tools/build-jaeger.sh (cached: returns at once) prints the path tools/stack/jaeger.py
    computes, and the binary is the pinned release."""
    import stack

    proc = subprocess.run(["bash", str(ROOT / "tools" / "build-jaeger.sh")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == str(stack.jaeger_binary())
    module, version = next(
        line.split() for line in (ROOT / "tools" / "jaeger.pin").read_text().splitlines() if line[:1] not in ("#", "")
    )
    go = next((p for p in ("go", "/usr/local/go/bin/go") if stack.find_binary(p) or Path(p).exists()), None)
    if go is None:
        pytest.skip("go not installed: cannot read the binary's module version")
    info = subprocess.run([go, "version", "-m", str(stack.jaeger_binary())], capture_output=True, text=True, timeout=60)
    assert re.search(rf"^\s+mod\s+{re.escape(module)}\s+{re.escape(version)}\s", info.stdout, re.M), info.stdout
