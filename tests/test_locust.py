"""The Locust scenario file really drives a server: steady and spike shapes, large and shifted bodies."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask, request
from werkzeug.serving import make_server

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def echo_server() -> Iterator[tuple[str, list[int]]]:
    """A stand-in model server that records body sizes (Locust is what is under test here)."""
    sizes: list[int] = []
    app = Flask("locust-target")

    @app.post("/predict")
    def predict() -> dict[str, str]:
        sizes.append(len(request.get_data()))
        return {"label": "POSITIVE"}

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", sizes
    finally:
        server.shutdown()
        thread.join(5)


@pytest.mark.parametrize("shape", ["steady", "spike"])
def test_locustfile_drives_load(echo_server: tuple[str, list[int]], tmp_path: Path, shape: str) -> None:
    url, sizes = echo_server
    env = dict(
        os.environ,
        LOAD_SHAPE=shape,
        LOAD_LARGE_SHARE="0.3",
        LOAD_LARGE_KB="16",
        LOAD_SHIFT_SHARE="0.3",
        LOAD_WAIT_S="0.05",
        LOAD_SPIKE_MINUTES="0.1",
    )
    locust = Path(sys.executable).parent / "locust"
    result = subprocess.run(
        [
            str(locust),
            "-f",
            "examples/load/locustfile.py",
            "--host",
            url,
            "--headless",
            "-u",
            "4",
            "-r",
            "4",
            "-t",
            "4s",
            "--csv",
            str(tmp_path / "run"),
            "--only-summary",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "run_stats.csv") as f:
        rows = {row["Name"]: row for row in csv.DictReader(f)}
    total = rows["Aggregated"]
    assert int(total["Request Count"]) > 10
    assert int(total["Failure Count"]) == 0
    assert max(sizes) >= 16 * 1024  # some large bodies were sent
