"""``uvicorn --workers 2`` (spawned workers) in prometheus multiprocess mode: every request is
counted once across workers, and a worker killed and replaced leaves no files behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent

APP = """
import os

import infersight.auto
from fastapi import FastAPI

app = FastAPI()


@app.get("/hit/{n}")
def hit(n: int) -> dict[str, int]:
    return {"pid": os.getpid()}
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _served(url: str) -> float:
    text = requests.get(f"{url}/metrics", timeout=5).text
    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        if f.name == "infersight_request_duration_seconds"
        for s in f.samples
        if s.name.endswith("_count") and s.labels["endpoint"] == "/hit/{n}"
    )


def _wait_for(predicate, timeout_s: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_uvicorn_workers_count_each_request_once(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(APP)
    mp_dir = tmp_path / "prom"
    mp_dir.mkdir()
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "sdk"), str(tmp_path)]),
        "PROMETHEUS_MULTIPROC_DIR": str(mp_dir),
        "OTEL_TRACES_EXPORTER": "none",
        "INFERSIGHT_METRICS_PORT": "0",
        "INFERSIGHT_GPU": "off",
        "INFERSIGHT_FLUSH_INTERVAL": "0.1",
    }
    cmd = [sys.executable, "-m", "uvicorn", "app:app", "--workers", "2", "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    sent = 0
    pids: set[int] = set()

    def hit() -> bool:
        nonlocal sent
        try:
            pids.add(requests.get(f"{url}/hit/{sent}", headers={"Connection": "close"}, timeout=5).json()["pid"])
        except requests.RequestException:
            return False
        sent += 1
        return True

    try:
        assert _wait_for(hit, 60), "uvicorn did not start"
        assert _wait_for(lambda: hit() and len(pids) == 2, 30), "one worker served everything"
        for _ in range(20):
            assert hit()
        assert _wait_for(lambda: _served(url) == sent, 10), (_served(url), sent)
        assert all(_served(url) == sent for _ in range(4))  # any worker answers the scrape: the same sum

        # A worker killed and replaced: its counts stay, its files are merged and go.
        victim = min(pids)
        os.kill(victim, signal.SIGKILL)
        assert _wait_for(lambda: hit() and len(pids) == 3, 60), "the worker was not replaced"
        assert _wait_for(lambda: not any(p.name.endswith(f"_{victim}.db") for p in mp_dir.iterdir()), 10)
        assert _wait_for(lambda: _served(url) == sent, 10), (_served(url), sent)
    finally:
        server.terminate()
        try:
            out, _ = server.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            out, _ = server.communicate()
        print(out.decode(errors="replace")[-3000:])
