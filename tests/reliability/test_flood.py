"""Cardinality flood: 100k distinct model names and URL paths keep the series count bounded by
``max_label_values``, the overflow is counted in ``infersight_label_overflow_total``, no request
is lost from the totals, and memory stays flat. Prints its figures.

tests/test_robustness.py does 5,000 through the API; this is the 100k version, through the API
and through a real instrumented Flask app (its WSGI callable, without a socket, so the 100k fit
in the time), plus gRPC method names through a real server.
"""

from __future__ import annotations

import ctypes
import gc
import io
import os
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

import infersight
from infersight.instrumentation import instrument_all, uninstrument_all
from infersight.testing import Captured, capture

N = 100_000
LIMIT = 50  # max_label_values
CHECKPOINT = 10_000  # series and RSS are measured here and at the end: no growth in between
DRAIN_EVERY = 1_000  # drain as we go, so the bounded queue drops nothing (its drops are tested elsewhere)
MAX_RSS_GROWTH = 16 * 2**20  # measured: ~2 MiB
REQUESTS = "infersight_request_duration_seconds"


def rss_bytes() -> int:
    """Resident memory after a full collection, with freed heap pages given back to the OS, so
    the figure is what is still held, not what the allocator keeps cached."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: the figure includes the allocator's cache
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        pytest.skip("needs /proc/self/statm")


class Series:
    """What a scrape would see: every infersight series, and the values of each label."""

    def __init__(self, t: Captured) -> None:
        self.count = 0
        self.values: dict[str, set[str]] = defaultdict(set)
        self.requests: dict[tuple[str, str], float] = {}
        for family in text_string_to_metric_families(t.openmetrics()):
            if not family.name.startswith("infersight_"):
                continue
            for sample in family.samples:
                self.count += 1
                for key, value in sample.labels.items():
                    if key != "le":
                        self.values[key].add(value)
                if sample.name == f"{REQUESTS}_count":
                    key = (sample.labels["model"], sample.labels["endpoint"])
                    self.requests[key] = self.requests.get(key, 0) + sample.value

    def total_requests(self) -> float:
        return sum(self.requests.values())


def flood(t: Captured, n: int, one: Callable[[int], None]) -> tuple[Series, Series, float, int]:
    """Run ``one(i)`` n times; the series at the checkpoint and at the end, seconds, RSS growth
    from the checkpoint to the end."""
    started = time.perf_counter()
    at_checkpoint: Series | None = None
    rss_checkpoint = 0
    for i in range(n):
        one(i)
        if (i + 1) % DRAIN_EVERY == 0:
            t.flush()
        if i + 1 == CHECKPOINT:
            at_checkpoint = Series(t)
            rss_checkpoint = rss_bytes()
    t.flush()
    seconds = time.perf_counter() - started
    end = Series(t)
    assert at_checkpoint is not None
    return at_checkpoint, end, seconds, rss_bytes() - rss_checkpoint


def overflow(t: Captured, label: str) -> float:
    return t.value("infersight_label_overflow_total", label=label) or 0.0


def report(what: str, checkpoint: Series, end: Series, seconds: float, rss: int, t: Captured) -> None:
    per_label = {k: len(v) for k, v in sorted(end.values.items())}
    print(
        f"\n{what}: {N} requests in {seconds:.1f} s ({seconds / N * 1e6:.0f} us each); "
        f"series {checkpoint.count} at {CHECKPOINT}, {end.count} at {N}; "
        f"overflow model={overflow(t, 'model'):.0f} endpoint={overflow(t, 'endpoint'):.0f}; "
        f"label values {per_label}; RSS +{rss / 2**20:.1f} MiB from {CHECKPOINT} to {N}"
    )


def assert_bounded(checkpoint: Series, end: Series, rss: int) -> None:
    assert end.count == checkpoint.count, "the series count grew after the labels were full"
    for label in ("model", "endpoint", "version", "stage"):
        # LIMIT traffic values, "other", and "unknown" where nothing named a model
        assert len(end.values[label]) <= LIMIT + 2, (label, len(end.values[label]))
    assert rss < MAX_RSS_GROWTH, f"RSS grew {rss / 2**20:.1f} MiB"


# RSS is the whole process's figure: what earlier tests left in this process (torch's, NVML's
# or gRPC's allocators and caches) moves it by more than the limit. So each flood runs in a
# fresh interpreter of its own, and the test here passes when that run passes.
ROOT = Path(__file__).resolve().parents[2]
IN_OWN_PROCESS = os.environ.get("INFERSIGHT_FLOOD_OWN_PROCESS") == "1"


def ran_in_own_process(request: pytest.FixtureRequest) -> bool:
    """False in the fresh interpreter (the test goes on); True once it passed there."""
    if IN_OWN_PROCESS:
        return False
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            f"{request.node.path}::{request.node.name}",
            "-q",
            "-s",
            "-p",
            "no:cacheprovider",
        ],
        cwd=ROOT,
        env=os.environ | {"INFERSIGHT_FLOOD_OWN_PROCESS": "1"},
        capture_output=True,
        text=True,
        timeout=280,
    )
    print(done.stdout[-3000:])
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    return True


@pytest.fixture
def t(request: pytest.FixtureRequest) -> Iterator[Captured | None]:
    if not IN_OWN_PROCESS:
        yield None  # the test runs itself in a fresh interpreter: ran_in_own_process
        return
    # traces off: the in-memory exporter would keep every span; this is about metric series
    with capture(max_label_values=LIMIT, traces=False, metrics_port=0) as captured:
        yield captured


def test_100k_model_names_and_endpoints_through_the_api(t: Captured, request: pytest.FixtureRequest) -> None:
    if ran_in_own_process(request):
        return

    def one(i: int) -> None:
        with infersight.request(model=f"model-{i}", endpoint=f"/path/{i}"), infersight.model():
            pass

    checkpoint, end, seconds, rss = flood(t, N, one)
    report("API", checkpoint, end, seconds, rss, t)
    assert_bounded(checkpoint, end, rss)
    assert overflow(t, "model") == N - LIMIT  # one label lookup per request: its stage reuses it
    assert overflow(t, "endpoint") == N - LIMIT
    assert end.total_requests() == N  # nothing lost: the overflow is counted under "other"
    assert end.requests[("other", "other")] == N - LIMIT
    stages = t.value("infersight_stage_duration_seconds_count", model="other", stage="model")
    assert stages == N - LIMIT


ROUTES = 200  # more route templates than LIMIT: the endpoint label overflows too


def make_app() -> Any:
    from flask import Flask

    app = Flask("flood")

    @app.get("/predict/<name>")
    def predict(name: str) -> str:
        with infersight.model(model=name):  # the model name comes from the URL: traffic-controlled
            return "ok"

    def route(rest: str) -> str:
        return "ok"

    for k in range(ROUTES):
        app.add_url_rule(f"/r{k}/<path:rest>", f"r{k}", route)
    return app


def flask_path(i: int) -> tuple[str, str | None, str]:
    """The i-th URL path (all distinct), the model it names and its route label."""
    kind = i % 4
    if kind < 2:
        return f"/predict/model-{i}", f"model-{i}", "/predict/<name>"
    if kind == 2:
        k = (i // 4) % ROUTES
        return f"/r{k}/item/{i}", None, f"/r{k}/<path:rest>"
    return f"/nowhere/{i}", None, "unmatched"  # 404: must not become a series of its own


def test_100k_paths_and_model_names_through_a_flask_app(t: Captured, request: pytest.FixtureRequest) -> None:
    if ran_in_own_process(request):
        return
    instrument_all(["flask"])
    try:
        app = make_app()
        base = {
            "REQUEST_METHOD": "GET",
            "SERVER_NAME": "flood",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.url_scheme": "http",
            "REMOTE_ADDR": "127.0.0.1",
        }
        statuses: dict[str, int] = defaultdict(int)

        def start_response(status: str, headers: Any, exc_info: Any = None) -> Callable[[bytes], None]:
            statuses[status] += 1
            return lambda data: None

        def one(i: int) -> None:
            environ = dict(base, PATH_INFO=flask_path(i)[0])
            environ["wsgi.input"] = io.BytesIO()
            body = app(environ, start_response)
            for _ in body:
                pass
            body.close()

        checkpoint, end, seconds, rss = flood(t, N, one)
    finally:
        uninstrument_all()
    report("Flask", checkpoint, end, seconds, rss, t)
    assert statuses == {"200 OK": N * 3 // 4, "404 NOT FOUND": N // 4}
    assert_bounded(checkpoint, end, rss)

    # What the limiter should have made of it, request by request, in arrival order.
    seen: dict[str, set[str]] = {"model": set(), "endpoint": set()}
    expected_overflow = {"model": 0, "endpoint": 0}
    expected: dict[tuple[str, str], int] = defaultdict(int)
    for i in range(N):
        _, model, route = flask_path(i)
        labels = []
        for label, value in (("model", model), ("endpoint", route)):
            if value is None:
                labels.append("unknown")
            elif value in seen[label] or len(seen[label]) < LIMIT:
                seen[label].add(value)
                labels.append(value)
            else:
                expected_overflow[label] += 1
                labels.append("other")
        expected[(labels[0], labels[1])] += 1
    assert overflow(t, "model") == expected_overflow["model"] == N // 2 - LIMIT
    assert overflow(t, "endpoint") == expected_overflow["endpoint"] > 0
    assert end.requests == expected  # every request counted, under the labels the limiter gave it
    assert not [e for e in end.values["endpoint"] if e.startswith("/nowhere")]
    assert end.requests[("unknown", "unmatched")] == N // 4


def test_grpc_method_names(t: Captured, request: pytest.FixtureRequest) -> None:
    if ran_in_own_process(request):
        return
    """A catch-all generic handler serves any method name the client invents: bounded like a
    route. Methods nobody serves get UNIMPLEMENTED from grpc and no series at all."""
    n = 3_000

    class AnyMethod(grpc.GenericRpcHandler):  # type: ignore[misc]
        def service(self, details: Any) -> Any:
            if not details.method.startswith("/flood.Any/"):
                return None
            return grpc.unary_unary_rpc_method_handler(lambda request, context: b"ok")

    instrument_all(["grpc"])
    try:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        server.add_generic_rpc_handlers((AnyMethod(),))
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        try:
            started = time.perf_counter()
            for i in range(n):
                assert channel.unary_unary(f"/flood.Any/M{i}")(b"x", timeout=10) == b"ok"
            unimplemented = 0
            for i in range(n // 10):
                with pytest.raises(grpc.RpcError) as info:
                    channel.unary_unary(f"/flood.Nobody/M{i}")(b"x", timeout=10)
                unimplemented += info.value.code() == grpc.StatusCode.UNIMPLEMENTED
            seconds = time.perf_counter() - started
        finally:
            channel.close()
            server.stop(0).wait(5)
    finally:
        uninstrument_all()
    t.flush()
    end = Series(t)
    print(
        f"\ngRPC: {n} distinct methods + {n // 10} unserved in {seconds:.1f} s; series {end.count}; "
        f"endpoint values {len(end.values['endpoint'])}; "
        f"overflow endpoint={overflow(t, 'endpoint'):.0f}"
    )
    assert unimplemented == n // 10
    assert len(end.values["endpoint"]) == LIMIT + 1
    assert overflow(t, "endpoint") == n - LIMIT
    assert end.total_requests() == n  # the unserved calls made no record
    assert not [e for e in end.values["endpoint"] if "Nobody" in e]
