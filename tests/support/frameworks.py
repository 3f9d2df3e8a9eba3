"""Serving frameworks with a Python env of their own (tools/build-framework-env.sh): find or
build the env, start a server from it on loopback, read the spans and metrics it produced."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT_S = 900


_built: dict[str, tuple[str | None, str]] = {}  # per session: the env's python, or why not


def framework_python(name: str) -> str:
    """The env's python; builds it when tools/setup.sh hasn't (cached, so once). Skips, with the
    reason, when it can't be built (no registry reachable): tried once per test session."""
    if name not in _built:
        try:
            done = subprocess.run(
                ["bash", str(ROOT / "tools" / "build-framework-env.sh"), name],
                capture_output=True,
                text=True,
                timeout=BUILD_TIMEOUT_S,
            )
            if done.returncode == 0:
                _built[name] = (done.stdout.strip().splitlines()[-1], "")
            else:
                _built[name] = (None, f"the {name} env could not be built: {done.stderr.strip()[-500:]}")
        except subprocess.TimeoutExpired:
            _built[name] = (None, f"the {name} env was not built within {BUILD_TIMEOUT_S} s")
    python, why = _built[name]
    if python is None:
        pytest.skip(why)
    return python


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(predicate: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except requests.RequestException:
            pass
        time.sleep(0.1)
    return False


@contextmanager
def server(cmd: list[str], cwd: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """The server as a process group (frameworks start workers of their own), stopped with
    SIGTERM then SIGKILL; its output is printed for a failing test."""
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        yield proc
    finally:
        try:
            os.killpg(proc.pid, 15)
            out, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            out, _ = proc.communicate()
        except ProcessLookupError:
            out, _ = proc.communicate()
        print(out.decode(errors="replace")[-4000:])


def samples(url: str) -> list[Any]:
    text = requests.get(url, timeout=10).text
    return [s for f in text_string_to_metric_families(text) for s in f.samples]


def total(found: list[Any], name: str, **labels: str) -> float:
    return sum(s.value for s in found if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))
