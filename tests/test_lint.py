"""The code gate, in the suite so CI enforces it: ruff check and ruff format everywhere, mypy
--strict on the package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


PATHS = ["sdk", "tests", "benchmarks", "examples", "tools", "grafana-dashboards"]


def _ruff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "ruff"), *args, *PATHS], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_ruff() -> None:
    result = _ruff("check")
    assert result.returncode == 0, result.stdout[-4000:]


def test_ruff_format() -> None:
    result = _ruff("format", "--check")
    assert result.returncode == 0, "run `ruff format` (make lint checks it):\n" + result.stdout[-4000:]


def test_no_format_opt_outs() -> None:
    """``ruff format`` decides the layout everywhere: no line opts out of it."""
    marker = "fmt: " + "skip"
    found = [str(p.relative_to(ROOT)) for d in PATHS for p in (ROOT / d).rglob("*.py") if marker in p.read_text()]
    assert found == []


def test_mypy_strict_on_the_package() -> None:
    result = subprocess.run([str(BIN / "mypy")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:]
