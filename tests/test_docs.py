"""Generated docs are current, and the README's commands exist."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_metrics_doc_is_current() -> None:
    result = subprocess.run([sys.executable, "tools/gen_metrics_doc.py", "--check"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stdout


def test_readme_first_screen_names_the_two_commands() -> None:
    first_screen = "\n".join((ROOT / "README.md").read_text().splitlines()[:40])
    assert "make demo" in first_screen
    assert "make test" in first_screen
    makefile = (ROOT / "Makefile").read_text()
    assert "\ndemo:" in makefile and "\ntest:" in makefile
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_make_demo_runs_the_repo_tool_from_any_cwd(tmp_path: Path) -> None:
    recipe = (ROOT / "Makefile").read_text().split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    assert "tools/demo.py" in recipe and "infersight.demo" not in recipe, recipe
    # The tool finds the checkout's SDK, examples and stack launcher by itself.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    argv = [sys.executable, str(ROOT / "tools" / "demo.py"), "--help"]
    result = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "--fault-at" in result.stdout and "--duration" in result.stdout
