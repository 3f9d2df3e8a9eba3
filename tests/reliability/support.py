"""Shared by the fault tests: the instrumented app as a subprocess, a paced load driver, and
readers for the figures every fault test prints (drops, exports, RSS). Ports and stopping
children come from the loopback stack (tools/stack)."""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

from stack import ROOT, free_port

SPANS_PER_REQUEST = 4  # the app's server span + preprocess, model, postprocess


def start_app(endpoint: str, **env: str) -> tuple[subprocess.Popen[str], str]:
    """tests/reliability/app.py exporting to ``endpoint``; returns the process and its base URL."""
    port = free_port()
    full_env = dict(
        os.environ,
        OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
        OTEL_EXPORTER_OTLP_INSECURE="true",
        OTEL_BSP_SCHEDULE_DELAY="200",
        INFERSIGHT_GPU="off",
        PYTHONPATH=os.pathsep.join([str(ROOT / "sdk"), str(ROOT)]),
        **env,
    )
    proc = subprocess.Popen(
        [sys.executable, "tests/reliability/app.py", str(port)],
        cwd=ROOT,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "ready" in line, line
    # Keep reading its output: a full pipe would block the app's next log line (and request).
    tail: deque[str] = deque(maxlen=200)
    threading.Thread(target=lambda: tail.extend(proc.stdout or ()), daemon=True).start()
    proc.output_tail = tail  # type: ignore[attr-defined]
    return proc, f"http://127.0.0.1:{port}"


@dataclass
class Load:
    """What a driver run saw."""

    latencies: list[float] = field(default_factory=list)
    failures: int = 0

    @property
    def served(self) -> int:
        return len(self.latencies) - self.failures

    def p99(self) -> float:
        return statistics.quantiles(self.latencies, n=100)[98]


def drive(url: str, n: int, path: str = "/work") -> Load:
    """``n`` requests back to back."""
    return drive_for(url, float("inf"), rate=0, path=path, limit=n)


def drive_for(
    url: str,
    seconds: float,
    rate: float,
    path: str = "/work",
    limit: int | None = None,
    expect: int = 200,
    on_tick: Callable[[], object] | None = None,
) -> Load:
    """Requests at ``rate`` per second (0: back to back) for ``seconds`` or ``limit`` requests.

    Paced on a fixed schedule, so a slow request is followed by catch-up, as with real clients.
    A request fails when it raises or answers anything but ``expect``.
    """
    session = requests.Session()
    load = Load()
    start = time.monotonic()
    i = 0
    while time.monotonic() - start < seconds and (limit is None or i < limit):
        if rate:
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        t0 = time.perf_counter()
        try:
            if session.get(f"{url}{path}", timeout=5).status_code != expect:
                load.failures += 1
        except requests.RequestException:
            load.failures += 1
        load.latencies.append(time.perf_counter() - t0)
        i += 1
        if on_tick is not None:
            on_tick()
    return load


def metrics(url: str) -> str:
    return requests.get(f"{url}/metrics", timeout=5).text


def dropped(url: str) -> dict[str, float]:
    return {
        reason: float(value)
        for reason, value in re.findall(r'infersight_spans_dropped_total\{reason="(\w+)"\} (\S+)', metrics(url))
    }


def exported(url: str) -> float:
    found = re.search(r"^infersight_spans_exported_total (\S+)", metrics(url), re.M)
    return float(found.group(1)) if found else 0.0


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]


def wait_settled(url: str, produced: int, timeout: float) -> tuple[float, dict[str, float]]:
    """Wait until every produced span is accounted for (exported or counted as dropped)."""
    deadline = time.monotonic() + timeout
    while True:
        sent, drops = exported(url), dropped(url)
        if sent + sum(drops.values()) >= produced or time.monotonic() > deadline:
            return sent, drops
        time.sleep(0.5)
