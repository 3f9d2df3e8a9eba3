"""Start and stop the stack's binaries (Prometheus, Alertmanager) and a webhook receiver.

Everything binds to 127.0.0.1 on a free port, is bounded in time, and is stopped by the
context managers even when a test fails. Used by the rule/alerting tests and end-to-end
tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"

# Debian ships Alertmanager as prometheus-alertmanager; upstream tarballs as alertmanager.
BINARIES = {
    "prometheus": ("prometheus",),
    "promtool": ("promtool",),
    "alertmanager": ("prometheus-alertmanager", "alertmanager"),
    "amtool": ("amtool",),
}


def find_binary(name: str) -> str | None:
    """Path of a stack binary (``prometheus``, ``promtool``, ``alertmanager``, ``amtool``)."""
    for candidate in BINARIES.get(name, (name,)):
        path = shutil.which(candidate)
        if path:
            return path
    return None


def free_port() -> int:
    """A TCP port free on loopback now (the OS may hand it out again later; bind soon)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.1,
               what: str = "condition") -> Any:  # fmt: skip
    """Poll ``predicate`` until it returns something truthy; TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = predicate()
            if result:
                return result
        except (OSError, ValueError) as exc:  # not up yet, or a half-written answer
            last_error = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not met within {timeout:.0f}s (last error: {last_error})")
        time.sleep(interval)


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def http_post_json(url: str, payload: Any, timeout: float = 2.0) -> tuple[int, bytes]:
    data = json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def wait_ready(url: str, timeout: float = 15.0) -> None:
    """Wait until ``url`` answers 200 (``/-/ready`` of Prometheus and Alertmanager)."""
    wait_until(lambda: http_get(url, timeout=1.0)[0] == 200, timeout, what=f"GET {url} == 200")


@dataclass
class Service:
    """A started binary: its base URL, process and log file."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self, timeout: float = 5.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)


@contextlib.contextmanager
def run_service(
    name: str,
    argv: list[str],
    url: str,
    workdir: Path,
    ready_path: str = "/-/ready",
    timeout: float = 15.0,
) -> Iterator[Service]:
    """Start ``argv``, wait for ``url + ready_path``, yield it, always stop it."""
    log_path = workdir / f"{name}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    service = Service(name, url, process, log_path)
    try:
        try:
            wait_until(
                lambda: process.poll() is None and http_get(url + ready_path, 1.0)[0] == 200,
                timeout, what=f"{name} ready",
            )  # fmt: skip
        except TimeoutError as exc:
            raise RuntimeError(f"{name} did not start: {exc}\n{service.log()}") from exc
        yield service
    finally:
        service.stop()


def _require(name: str) -> str:
    path = find_binary(name)
    if path is None:
        raise FileNotFoundError(f"{name} binary not found on PATH (tools/setup.sh installs it)")
    return path


@contextlib.contextmanager
def prometheus(config: Path, workdir: Path, extra_args: tuple[str, ...] = (),
               timeout: float = 20.0) -> Iterator[Service]:  # fmt: skip
    """A Prometheus on a free loopback port, with exemplar storage, data under ``workdir``."""
    port = free_port()
    data = workdir / "prometheus-data"
    data.mkdir(parents=True, exist_ok=True)
    argv = [
        _require("prometheus"),
        f"--config.file={config}",
        f"--storage.tsdb.path={data}",
        f"--web.listen-address={LOOPBACK}:{port}",
        "--enable-feature=exemplar-storage",
        "--web.enable-lifecycle",
        *extra_args,
    ]
    with run_service("prometheus", argv, f"http://{LOOPBACK}:{port}", workdir,
                     timeout=timeout) as service:  # fmt: skip
        yield service


@contextlib.contextmanager
def alertmanager(config: Path, workdir: Path, timeout: float = 15.0) -> Iterator[Service]:
    """An Alertmanager on a free loopback port, clustering off, data under ``workdir``."""
    port = free_port()
    data = workdir / "alertmanager-data"
    data.mkdir(parents=True, exist_ok=True)
    argv = [
        _require("alertmanager"),
        f"--config.file={config}",
        f"--storage.path={data}",
        f"--web.listen-address={LOOPBACK}:{port}",
        "--cluster.listen-address=",
    ]
    with run_service("alertmanager", argv, f"http://{LOOPBACK}:{port}", workdir,
                     timeout=timeout) as service:  # fmt: skip
        yield service


def post_alerts(alertmanager_url: str, alerts: list[dict[str, Any]]) -> None:
    """POST alerts to Alertmanager's API v2 (labels, annotations, optional startsAt)."""
    status, body = http_post_json(f"{alertmanager_url}/api/v2/alerts", alerts)
    if status != 200:
        raise RuntimeError(f"Alertmanager refused alerts: {status} {body!r}")


def get_alerts(alertmanager_url: str) -> list[dict[str, Any]]:
    status, body = http_get(f"{alertmanager_url}/api/v2/alerts")
    if status != 200:
        raise RuntimeError(f"GET alerts: {status} {body!r}")
    alerts: list[dict[str, Any]] = json.loads(body)
    return alerts


@dataclass
class WebhookReceiver:
    """Records every JSON POST it gets as ``(path, body)``; thread-safe."""

    url: str
    received: list[tuple[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, path: str, body: Any) -> None:
        with self._lock:
            self.received.append((path, body))

    def snapshot(self) -> list[tuple[str, Any]]:
        with self._lock:
            return list(self.received)

    def wait_for(self, predicate: Callable[[str, Any], bool],
                 timeout: float = 10.0) -> tuple[str, Any]:  # fmt: skip
        """The first received ``(path, body)`` matching ``predicate``, waiting if needed."""

        def match() -> tuple[str, Any] | None:
            return next((r for r in self.snapshot() if predicate(*r)), None)

        found: tuple[str, Any] = wait_until(match, timeout, what="webhook notification")
        return found


@contextlib.contextmanager
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """An HTTP server on a free loopback port that records JSON POSTs; stopped on exit."""
    receiver: WebhookReceiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                body: Any = json.loads(raw)
            except ValueError:
                body = raw.decode(errors="replace")
            receiver.add(self.path, body)
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

    server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    server.daemon_threads = True
    receiver = WebhookReceiver(f"http://{LOOPBACK}:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              name="webhook-receiver", daemon=True)  # fmt: skip
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def run_tool(
    argv: list[str], timeout: float = 60.0, cwd: str | os.PathLike[str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a CLI (promtool, amtool) with a time limit, capturing its output as text."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=cwd, check=False)
