"""gunicorn with several forked workers: counts are right when aggregated across workers."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from tests.support.stack import free_port

ROOT = Path(__file__).resolve().parent.parent


def _wait(url: str, deadline_s: float) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise TimeoutError(url)


@pytest.mark.parametrize("preload", [False, True])
def test_counts_aggregate_across_gunicorn_workers(tmp_path: Path, preload: bool) -> None:
    gunicorn = shutil.which("gunicorn", path=os.path.dirname(sys.executable))
    assert gunicorn, "gunicorn is a dev dependency"
    port = free_port()
    mp_dir = tmp_path / "prom"
    mp_dir.mkdir()
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(mp_dir), OTEL_TRACES_EXPORTER="none",
               INFERSIGHT_GPU="off", PYTHONPATH=str(ROOT))  # fmt: skip
    cmd = [gunicorn, "-w", "2", "-b", f"127.0.0.1:{port}", "-c", "tests/apps/gunicorn_conf.py",
           "--max-requests", "15", "tests.apps.mp_app:app"]  # fmt: skip
    if preload:
        cmd.insert(1, "--preload")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait(f"http://127.0.0.1:{port}/work", 30)
        session = requests.Session()
        for _ in range(59):  # + 1 from _wait = 60, across worker recycling (--max-requests 15)
            assert session.get(f"http://127.0.0.1:{port}/work", timeout=5).status_code == 200
        time.sleep(0.5)  # the workers' background flush interval is 0.1 s
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        proc.terminate()
        out = proc.communicate(timeout=15)[0].decode(errors="replace")
    count = re.search(r'infersight_stage_duration_seconds_count\{model="mp",stage="model"\} (\S+)', text)
    assert count, out[-2000:]
    assert float(count.group(1)) == 60.0
    req = re.findall(r'infersight_request_duration_seconds_count\{[^}]*endpoint="/work"[^}]*\} (\S+)', text)
    assert sum(float(v) for v in req) == 60.0
