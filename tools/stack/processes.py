"""Child processes and loopback HTTP: free ports, bounded waits, log files, always stopped.

Every child logs to a file, dies with its parent where ``setpriv`` exists (even when the parent
is killed outright), and is stopped with terminate-then-kill. Every wait has a time limit.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "LOOPBACK",
    "Service",
    "find_binary",
    "free_port",
    "http_get",
    "http_post_json",
    "require",
    "run_binary",
    "run_service",
    "run_tool",
    "spawn",
    "stop",
    "wait_answering",
    "wait_until",
]

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


def require(name: str) -> str:
    """The path of a stack binary; FileNotFoundError naming the installer when it is missing."""
    path = find_binary(name)
    if path is None:
        raise FileNotFoundError(f"{name} binary not found on PATH (tools/setup.sh installs it)")
    return path


def free_port() -> int:
    """A TCP port free on loopback now (the OS may hand it out again later; bind soon)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float, what: str = "condition", interval: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy; TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = predicate()
            if result:
                return result
        except (OSError, ValueError) as exc:  # not listening yet, or a half-written answer
            last_error = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not met within {timeout:.0f}s (last error: {last_error})")
        time.sleep(interval)


def _send(req: urllib.request.Request, timeout: float) -> tuple[int, str]:
    """Status and body text; an HTTP error status is returned, not raised."""
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(resp.status), resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode(errors="replace")


def http_get(url: str, timeout: float = 2.0, headers: Mapping[str, str] | None = None) -> tuple[int, str]:
    return _send(urllib.request.Request(url, headers=dict(headers or {})), timeout)


def http_post_json(url: str, payload: Any, timeout: float = 2.0) -> tuple[int, str]:
    data = json.dumps(payload).encode()
    return _send(urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}), timeout)


def run_tool(
    argv: list[str], timeout: float = 60.0, cwd: str | os.PathLike[str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a CLI (promtool, amtool) with a time limit, capturing its output as text."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=cwd, check=False)


def spawn(
    argv: list[str],
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` with its output in ``log_path``; stop it with ``stop()``."""
    if shutil.which("setpriv"):
        # Die with the parent even if it is killed outright (SIGKILL, a closed terminal).
        argv = ["setpriv", "--pdeathsig", "TERM", "--", *argv]
    with open(log_path, "wb") as log:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=cwd)


def stop(*processes: subprocess.Popen[Any], timeout: float = 8.0) -> None:
    """Terminate all, then wait for them together; kill what is still running at ``timeout``."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + timeout
    for process in processes:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def wait_answering(
    process: subprocess.Popen[Any],
    url: str,
    timeout: float,
    what: str = "",
    accept: Callable[[str], bool] | None = None,
) -> None:
    """Wait until ``url`` answers 200 (and ``accept(body)``); RuntimeError as soon as the process exits."""

    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"{what or url} exited with {process.returncode} before {url} answered")
        status, body = http_get(url, 1.0)
        return status == 200 and (accept is None or accept(body))

    wait_until(ready, timeout, what=f"{what or url} answering {url}", interval=0.3)


@dataclass
class Service:
    """A started child that serves HTTP on a loopback port, with its log file."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def instance(self) -> str:
        """``host:port``, as a scrape target and Prometheus's ``instance`` label name it."""
        return f"{LOOPBACK}:{self.port}"

    def log(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 8.0) -> None:
        stop(self.process, timeout=timeout)


@contextlib.contextmanager
def run_service(
    name: str,
    argv: list[str],
    port: int,
    workdir: Path,
    ready_path: str = "/-/ready",
    timeout: float = 15.0,
) -> Iterator[Service]:
    """Start ``argv`` (serving on ``port``), wait for ``ready_path`` to answer, yield it, always stop it."""
    service = Service(name, port, spawn(argv, workdir / f"{name}.log", cwd=workdir), workdir / f"{name}.log")
    try:
        try:
            wait_answering(service.process, service.url + ready_path, timeout, what=name)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{name} did not start: {exc}\n{service.log()}") from exc
        yield service
    finally:
        service.stop()


@contextlib.contextmanager
def run_binary(
    name: str, flags: Callable[[int, Path], list[str]], workdir: Path, timeout: float = 15.0
) -> Iterator[Service]:
    """Stack binary ``name`` with ``flags(port, data_dir)``: a free loopback port, its data in
    ``workdir/<name>-data``, ready when ``/-/ready`` answers, always stopped."""
    port = free_port()
    data = workdir / f"{name}-data"
    data.mkdir(parents=True, exist_ok=True)
    with run_service(name, [require(name), *flags(port, data)], port, workdir, timeout=timeout) as service:
        yield service
