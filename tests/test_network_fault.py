"""Network faults, end to end on loopback: a TCP proxy (tests/support/netproxy.py) adds latency
and jitter between an instrumented ``requests`` client and an instrumented Flask server.

With the proxy on, the client's P99 and its network part grow while the server's own P99 does
not, and ``infersight top`` says the P99 is mostly "network". With a slow stage instead (no
proxy), the client's P99 is mostly "server", and the stage that grew is the server's slowest.
The alert that says "network" (InferenceNetworkLatencyHigh) is tested by promtool in
tests/rules/network_test.yaml and live in tests/e2e/test_fault_matrix_live.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from prometheus_client.exposition import generate_latest
from tests.support.netproxy import DelayProxy
from werkzeug.serving import make_server

import infersight
from infersight import top
from infersight.conventions import METRIC
from infersight.instrumentation import instrument_all, uninstrument_all
from infersight.testing import Captured, capture

MODEL = "clf"
MODEL_S = 0.03  # the model stage's own time, well above loopback's network time
DELAY_S, JITTER_S = 0.15, 0.03  # per direction: a call crosses the proxy twice
SLOW_POSTPROCESS_S = 0.15
CALLS = 20

_slow = {"postprocess": 0.0}


def _app() -> Any:
    from flask import Flask, request

    app = Flask("network-fault")

    @app.post("/predict")
    def predict() -> str:
        with infersight.preprocess(model=MODEL):
            text = (request.get_json(silent=True) or {}).get("text", "")
        with infersight.model():
            time.sleep(MODEL_S)
        with infersight.postprocess():
            time.sleep(_slow["postprocess"])
        return f"ok {len(text)}"

    return app


@pytest.fixture
def t() -> Iterator[Captured]:
    with capture(models={MODEL: {"version": "1", "slo_p99_seconds": 0.1}}) as captured:
        instrument_all(["flask", "requests"])
        try:
            yield captured
        finally:
            uninstrument_all()
            _slow["postprocess"] = 0.0


@pytest.fixture
def server_port() -> Iterator[int]:
    server = make_server("127.0.0.1", 0, _app(), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        thread.join(5)


def _samples(t: Captured) -> top.Samples:
    t.flush()
    return top.parse_metrics(generate_latest(t.registry).decode())  # type: ignore[no-untyped-call]


def _phase(t: Captured, port: int) -> top.Snapshot:
    """``CALLS`` calls through ``port``; the table over just them."""
    before = _samples(t)
    labels = {"model": MODEL, "version": "1", "endpoint": "/predict", "outcome": "success"}
    served = t.value(f"{METRIC.REQUEST_DURATION.name}_count", **labels) or 0
    with requests.Session() as session:
        for i in range(CALLS):
            response = session.post(f"http://127.0.0.1:{port}/predict", json={"text": f"call {i}"}, timeout=10)
            assert response.status_code == 200 and "server-timing" in response.headers
    deadline = time.monotonic() + 5  # the server's record reaches the worker just after its response
    while (t.value(f"{METRIC.REQUEST_DURATION.name}_count", **labels) or 0) < served + CALLS:
        assert time.monotonic() < deadline, "the server's requests were not recorded"
        time.sleep(0.02)
    return top.build_snapshot(_samples(t), before, 1.0, "test")


def _call(snap: top.Snapshot, port: int) -> top.Call:
    assert list(snap.calls) == [(f"127.0.0.1:{port}", "/predict")], snap.calls
    return snap.calls[(f"127.0.0.1:{port}", "/predict")]


def test_proxy_delay_grows_the_client_p99_not_the_servers_and_top_says_network(t: Captured, server_port: int) -> None:
    with DelayProxy(("127.0.0.1", server_port)) as proxy:
        direct = _phase(t, proxy.port)  # through the proxy, no delay yet: the same path
        proxy.set_delay(DELAY_S, JITTER_S)
        delayed = _phase(t, proxy.port)
        port = proxy.port
    before, after = _call(direct, port), _call(delayed, port)
    server_before, server_after = direct.models[MODEL].p99, delayed.models[MODEL].p99

    assert before.layer == "server", (before, server_before)
    assert after.layer == "network", (after, server_after)
    # The client waits for both crossings; the server sees none of it.
    assert after.p99 - before.p99 > DELAY_S, (before, after)
    assert after.network_p99 - before.network_p99 > DELAY_S, (before, after)
    assert server_after < server_before + DELAY_S / 2, (server_before, server_after)
    frame = top.render(delayed)
    row = next(line for line in frame.splitlines() if f"127.0.0.1:{port}/predict" in line)
    assert row.rstrip().endswith("network"), frame
    assert "OUTGOING CALLS" in frame


def test_slow_stage_without_proxy_top_says_server_and_names_the_stage(t: Captured, server_port: int) -> None:
    normal = _phase(t, server_port)
    _slow["postprocess"] = SLOW_POSTPROCESS_S
    slow = _phase(t, server_port)
    before, after = _call(normal, server_port), _call(slow, server_port)

    assert before.layer == after.layer == "server", (before, after)
    assert after.p99 - before.p99 > SLOW_POSTPROCESS_S / 2, (before, after)
    assert after.network_p99 < SLOW_POSTPROCESS_S / 2, after
    stages = {stage: row.p99 for (model, stage), row in slow.stages.items() if model == MODEL}
    assert max(stages, key=stages.__getitem__) == "postprocess", stages
    row = next(line for line in top.render(slow).splitlines() if f"127.0.0.1:{server_port}/predict" in line)
    assert row.rstrip().endswith("server")
