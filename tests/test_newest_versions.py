"""The compat probes and the coexistence tests, run again on the NEWEST released OpenTelemetry
SDK, instrumentations and prometheus_client (tools/build-newest-env.sh: a second small env,
cached outside the repo). An upgrade that moves an internal infersight reaches fails here before
users install it; the main env keeps the versions constraints.txt pins."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "tools" / "build-newest-env.sh"


def _newest_python() -> str:
    try:
        out = subprocess.run(["bash", str(BUILD)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        pytest.skip(f"{BUILD.name} did not build the newest-versions env within 15 min")
    if out.returncode != 0:
        pytest.skip(f"{BUILD.name} could not build the newest-versions env: {out.stderr.strip()[-1500:]}")
    return out.stdout.strip().splitlines()[-1]


def test_compat_and_coexistence_pass_on_the_newest_releases() -> None:
    python = _newest_python()
    tests = ["tests/test_compat.py", *sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("tests/test_coexistence*.py"))]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT / "sdk"),
        "HOME": os.environ.get("HOME", "/tmp"),
    }
    argv = [python, "-m", "pytest", *tests, "-q", "-x", "-rs", "-p", "no:cacheprovider"]
    out = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    versions = Path(python).parents[1] / "versions.txt"
    pinned = versions.read_text() if versions.exists() else ""
    assert out.returncode == 0, f"on the newest versions:\n{pinned}\n{out.stdout[-5000:]}\n{out.stderr[-2000:]}"
    assert " passed" in out.stdout, out.stdout[-2000:]
    # Every probe ran: a library missing from the newest env would skip its probe unseen. The
    # probes of the libraries that have an env of their own run there instead: Ray's
    # (tests/test_ray_serve.py), LitServe's and BentoML's (tests/test_litserve.py,
    # tests/test_bentoml.py) and tritonclient's (tests/e2e/test_triton_live.py).
    own_env = ("ray_serve.", "litserve.", "bentoml.", "tritonclient.")
    missing = [
        line
        for line in out.stdout.splitlines()
        if "is not installed" in line and not any(f" {prefix}" in line for prefix in own_env)
    ]
    assert not missing, f"add it to {BUILD.name}:\n{out.stdout[-3000:]}"
