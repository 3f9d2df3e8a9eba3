"""SIGTERM loses no span: a server stopped the way ``docker stop`` and Kubernetes stop it has
every span of the requests it answered at the collector, and still dies of that signal.

Each case starts a real server (tests/apps/shutdown_app.py, no signal handler of its own) that
exports to an in-process OTLP sink, answers a few requests, gets SIGTERM right after the last
answer and must exit; the sink then must hold every span. Export batches are held back (a 30 s
schedule), so nothing reaches the sink before the signal but what the shutdown flushes.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

import infersight
from infersight import _runtime, _signals
from stack import LOOPBACK, free_port, http_get, running_sink, spawn, stop, wait_until

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "tests" / "apps" / "shutdown_app.py"
SPANS_PER_REQUEST = 4  # tests/apps/shutdown_app.py: the request and three stages
REQUESTS = 5
EXIT_WAIT_S = 15.0


def _env(endpoint: str, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "sdk"), str(ROOT)]),
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_BSP_SCHEDULE_DELAY": "30000",
        "INFERSIGHT_FLUSH_INTERVAL": "30",
        "INFERSIGHT_METRICS_PORT": "0",
        "INFERSIGHT_GPU": "off",
        "INFERSIGHT_SHUTDOWN_TIMEOUT": "3",
        **extra,
    }


def _start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return spawn([sys.executable, *argv], log, env=env, cwd=ROOT)


def _listening(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    """Wait for the port to accept connections (no request: a timed-out one would still be served)."""

    def accepts() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        with socket.create_connection((LOOPBACK, port), timeout=1.0):
            return True

    wait_until(accepts, 20, what="server listening")


def _http_requests(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    _listening(proc, port, log)
    for _ in range(REQUESTS):
        assert http_get(f"http://{LOOPBACK}:{port}/work", 10.0)[0] == 200


def _grpc_requests(port: int) -> None:
    import grpc

    with grpc.insecure_channel(f"{LOOPBACK}:{port}") as channel:
        call = channel.unary_unary("/scorer.Scorer/Score")
        for _ in range(REQUESTS):
            assert call(b"x", timeout=10, wait_for_ready=True) == b"x"


def _sigterm_and_wait(proc: subprocess.Popen[bytes], log: Path) -> float:
    """Seconds from SIGTERM to exit; the process must have died of SIGTERM."""
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(EXIT_WAIT_S)
    except subprocess.TimeoutExpired:
        stop(proc)
        pytest.fail(f"still running {EXIT_WAIT_S:.0f} s after SIGTERM:\n{log.read_text()[-3000:]}")
    return time.monotonic() - start


def _run_case(kind: str, tmp_path: Path, endpoint: str, **extra: str) -> tuple[subprocess.Popen[bytes], float]:
    port = free_port()
    log = tmp_path / f"{kind}.log"
    proc = _start([str(APP), kind, str(port)], _env(endpoint, **extra), log)
    try:
        if kind == "grpc":
            _grpc_requests(port)
        else:
            _http_requests(proc, port, log)
        return proc, _sigterm_and_wait(proc, log)
    finally:
        stop(proc)


@pytest.fixture
def sink() -> Iterator[object]:
    with running_sink() as s:
        yield s


@pytest.mark.parametrize("kind", ["flask", "grpc", "uvicorn"])
def test_every_span_is_at_the_collector_after_sigterm(kind: str, sink: object, tmp_path: Path) -> None:
    if kind == "uvicorn":
        pytest.importorskip("uvicorn")
    proc, _ = _run_case(kind, tmp_path, f"http://{LOOPBACK}:{sink.port}")  # type: ignore[attr-defined]
    # The export is synchronous before the exit: what the sink has now is all it will get.
    assert sink.received == REQUESTS * SPANS_PER_REQUEST, (tmp_path / f"{kind}.log").read_text()[-3000:]  # type: ignore[attr-defined]
    assert proc.returncode == -signal.SIGTERM  # died of the signal, as without infersight


def test_gunicorn_workers_flush_on_sigterm(sink: object, tmp_path: Path) -> None:
    pytest.importorskip("gunicorn")
    port = free_port()
    log = tmp_path / "gunicorn.log"
    argv = ["-m", "gunicorn", "-w", "2", "-b", f"{LOOPBACK}:{port}", "--graceful-timeout", "10"]
    proc = _start([*argv, "tests.apps.shutdown_app:wsgi"], _env(f"http://{LOOPBACK}:{sink.port}"), log)  # type: ignore[attr-defined]
    try:
        _http_requests(proc, port, log)
        _sigterm_and_wait(proc, log)
    finally:
        stop(proc)
    assert sink.received == REQUESTS * SPANS_PER_REQUEST, log.read_text()[-3000:]  # type: ignore[attr-defined]
    assert proc.returncode == 0  # gunicorn's own handler: a clean stop


@pytest.mark.parametrize(("kind", "status"), [("flask", 0), ("grpc", -signal.SIGINT)])
def test_sigint_already_flushes_through_keyboard_interrupt(
    kind: str, status: int, sink: object, tmp_path: Path
) -> None:
    """SIGINT keeps Python's handler: KeyboardInterrupt unwinds and atexit flushes."""
    port = free_port()
    log = tmp_path / f"{kind}.log"
    proc = _start([str(APP), kind, str(port)], _env(f"http://{LOOPBACK}:{sink.port}"), log)  # type: ignore[attr-defined]
    try:
        if kind == "grpc":
            _grpc_requests(port)
        else:
            _http_requests(proc, port, log)
        proc.send_signal(signal.SIGINT)
        proc.wait(EXIT_WAIT_S)
    finally:
        stop(proc)
    assert sink.received == REQUESTS * SPANS_PER_REQUEST, log.read_text()[-3000:]  # type: ignore[attr-defined]
    # As without infersight: werkzeug's serve_forever ends quietly on KeyboardInterrupt; in
    # wait_for_termination Python ends the program by SIGINT, after atexit.
    assert proc.returncode == status, log.read_text()[-3000:]


def _blackhole() -> socket.socket:
    """A port that accepts connections and never answers: a hung collector."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((LOOPBACK, 0))
    sock.listen(64)
    return sock


@pytest.mark.parametrize("down", ["refused", "hung"])
def test_with_the_collector_down_the_server_still_exits_within_the_timeout(down: str, tmp_path: Path) -> None:
    timeout_s = 1.0
    hole = _blackhole() if down == "hung" else None
    port = hole.getsockname()[1] if hole is not None else free_port()
    try:
        proc, took = _run_case(
            "flask", tmp_path, f"http://{LOOPBACK}:{port}", INFERSIGHT_SHUTDOWN_TIMEOUT=str(timeout_s)
        )
    finally:
        if hole is not None:
            hole.close()
    assert proc.returncode == -signal.SIGTERM
    assert took < timeout_s + 1.5, f"exit took {took:.1f} s with INFERSIGHT_SHUTDOWN_TIMEOUT={timeout_s}"


# ---- The handler itself, in this process --------------------------------------------------


@pytest.fixture
def default_sigterm() -> Iterator[None]:
    before = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        yield
    finally:
        infersight.shutdown()
        signal.signal(signal.SIGTERM, before)


def _init() -> None:
    infersight.init(registry=CollectorRegistry(), traces_exporter="none", metrics_port=0, gpu="off")


def test_installed_at_init_when_default_and_removed_at_shutdown(default_sigterm: None) -> None:
    _init()
    assert _signals.installed() == [signal.SIGTERM]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # SIGINT left alone
    infersight.shutdown()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_handler_the_app_set_first_is_kept(default_sigterm: None) -> None:
    def app_handler(signum: int, frame: object) -> None: ...

    signal.signal(signal.SIGTERM, app_handler)
    _init()
    assert signal.getsignal(signal.SIGTERM) is app_handler
    infersight.shutdown()
    assert signal.getsignal(signal.SIGTERM) is app_handler


def test_a_handler_the_app_sets_later_replaces_ours_and_stays(default_sigterm: None) -> None:
    def app_handler(signum: int, frame: object) -> None: ...

    _init()
    signal.signal(signal.SIGTERM, app_handler)
    infersight.shutdown()
    assert signal.getsignal(signal.SIGTERM) is app_handler


def test_init_outside_the_main_thread_installs_nothing(default_sigterm: None) -> None:
    thread = threading.Thread(target=_init)
    thread.start()
    thread.join(30)
    assert _runtime.get_runtime() is not None
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
