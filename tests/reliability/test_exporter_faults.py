"""Collector down, blackholed, or slow: requests never fail or block, drops are counted, and
SIGTERM still exits within the grace periods of gunicorn and Kubernetes. Prints its figures."""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from stack import free_port, stop

from .support import SPANS_PER_REQUEST, Load, drive, dropped, rss_mib, start_app


@pytest.fixture
def blackhole() -> Iterator[int]:
    """Accepts TCP connections and never answers: the worst kind of collector."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(sock.getsockname()[1])
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        sock.close()


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["collector down", "collector blackholed"])
def test_requests_never_fail_or_block_and_drops_are_counted(fault: str, blackhole: int) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}" if fault == "collector down" else f"http://127.0.0.1:{blackhole}"
    baseline, url = start_app(endpoint, OTEL_TRACES_EXPORTER="none")
    faulty, furl = start_app(endpoint, OTEL_EXPORTER_OTLP_TIMEOUT="1")
    try:
        drive(url, 50)
        drive(furl, 50)
        base = drive(url, 400)
        first = drive(furl, 400)
        rss_before = rss_mib(faulty.pid)
        second = drive(furl, 400)
        # Failed exports are counted when their retries give up (1 s here): wait for the count to
        # cover everything but what the export queue and one batch in flight can hold.
        deadline = time.monotonic() + 20
        drops = dropped(furl)
        while sum(drops.values()) < SPANS_PER_REQUEST * 850 - (2048 + 512) and time.monotonic() < deadline:
            time.sleep(0.5)
            drops = dropped(furl)
        rss_after = rss_mib(faulty.pid)
    finally:
        stop(baseline, faulty)
    faulty_load = Load(first.latencies + second.latencies, first.failures + second.failures)
    ratio = faulty_load.p99() / base.p99()
    produced = SPANS_PER_REQUEST * 850
    counted = sum(drops.values())
    print(
        f"\n[{fault}] requests 800, failed {faulty_load.failures}; P99 {faulty_load.p99() * 1e3:.2f} ms vs "
        f"{base.p99() * 1e3:.2f} ms without export (ratio {ratio:.2f}); spans produced {produced}, "
        f"received 0, counted as dropped {counted:.0f} {drops}, the rest waiting in the export queue "
        f"(2048); RSS {rss_before:.1f} -> {rss_after:.1f} MiB"
    )
    assert base.failures == 0 and faulty_load.failures == 0
    assert drops.get("export_failed", 0) > 0, "failed exports must be counted"
    # Nothing vanishes uncounted: what isn't counted as dropped fits in the export queue.
    assert produced - counted <= 2048 + 512
    assert faulty_load.p99() < base.p99() * 3 + 0.005  # generous: noise, not a timing target
    assert rss_after - rss_before < 50


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["collector down", "collector blackholed"])
def test_sigterm_exits_within_five_seconds(fault: str, blackhole: int) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}" if fault == "collector down" else f"http://127.0.0.1:{blackhole}"
    proc, url = start_app(endpoint)
    try:
        drive(url, 100)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    print(f"\n[{fault}] SIGTERM to exit: {took:.2f} s")
    assert took <= 5.0
