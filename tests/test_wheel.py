"""The built wheel ships only what works once installed.

No demo and no code that reads the checkout (examples/, tools/, the rule files, the folder above
the package): those are repo tools. Installed on its own, outside the checkout, the package
imports and ``infersight top --help`` runs.
"""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The checkout's top-level folders besides sdk/: a path into one of them exists only in a checkout.
REPO_DIRS = frozenset(
    p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith((".", "_")) and p.name != "sdk"
)


def _climbs(node: ast.expr) -> int:
    """How many folders up a ``.parent`` / ``.parents[i]`` chain goes (0 when it is not one)."""
    if isinstance(node, ast.Attribute) and node.attr == "parent":
        return 1 + _climbs(node.value)
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and node.value.attr == "parents":
        index = node.slice.value if isinstance(node.slice, ast.Constant) else 99
        return int(index) + 1 + _climbs(node.value.value)
    return 0


def repo_lookups(source: str, depth: int) -> list[str]:
    """What in ``source`` (a module ``depth`` folders deep in the wheel, 1 for infersight/x.py)
    reaches into a checkout: a path into a repo folder, or a climb from ``__file__`` out of the
    package. Docstrings and comments may name repo files; code may not."""
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            parts = node.value.split("/")
            if len(parts) > 1 and parts[0] in REPO_DIRS:
                found.append(f"line {node.lineno}: path {node.value!r}")
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            for side in (node.left, node.right):
                if isinstance(side, ast.Constant) and str(side.value).split("/")[0] in REPO_DIRS:
                    found.append(f"line {node.lineno}: path part {side.value!r}")
        from_file = any(isinstance(n, ast.Name) and n.id == "__file__" for n in ast.walk(node))
        if isinstance(node, ast.Attribute | ast.Subscript) and _climbs(node) > depth and from_file:
            found.append(f"line {node.lineno}: {_climbs(node)} folders up from __file__")
    return found


def test_the_check_finds_what_the_old_demo_did() -> None:
    old = 'ROOT = Path(__file__).resolve().parents[2]\nrules = ROOT / "prometheus-rules"\napp = "examples/app.py"\n'
    assert len(repo_lookups(old, depth=1)) == 3
    inside = '"""Reads prometheus-rules/ in a checkout."""\nHERE = Path(__file__).parent\nX = HERE / "data"\n'
    assert repo_lookups(inside, depth=1) == []
    assert repo_lookups("P = Path(__file__).parent.parent\n", depth=2) == []
    assert repo_lookups("P = Path(__file__).parent.parent\n", depth=1) != []


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # Offline when the build backend is installed (the dev extra has it); else pip fetches it.
    isolation = ["--no-build-isolation"] if importlib.util.find_spec("hatchling") else []
    argv = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--disable-pip-version-check", *isolation]
    result = subprocess.run([*argv, "--wheel-dir", str(out), str(ROOT)], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (built,) = out.glob("infersight-*.whl")
    return built


def test_wheel_has_no_demo_and_no_repo_lookups(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        sources = {n: zf.read(n).decode() for n in names if n.endswith(".py")}
    assert {n.split("/")[0] for n in names} == {"infersight", wheel.name.split("-py")[0] + ".dist-info"}
    assert "infersight/__init__.py" in sources and "infersight/cli.py" in sources
    assert [n for n in names if Path(n).stem == "demo"] == []
    lookups = {n: found for n, source in sources.items() if (found := repo_lookups(source, n.count("/")))}
    assert lookups == {}


def test_installed_wheel_runs_top_outside_the_checkout(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--disable-pip-version-check"]
    result = subprocess.run([*pip, "--target", str(target), str(wheel)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    # -I -S: no PYTHONPATH, no cwd, no .pth files (the dev venv's editable install of the checkout
    # is one); sys.path is the install, then this venv's site-packages for the dependencies only.
    code = """
import contextlib, io, sys
sys.path[:0] = sys.argv[1:3]
from importlib.metadata import entry_points
(script,) = entry_points(group="console_scripts", name="infersight")
for argv in (["top", "--help"], ["--help"]):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        script.load()(argv)
    print(out.getvalue())
print("MODULES", *sorted({getattr(m, "__file__", None) or "" for m in list(sys.modules.values())}), sep="\\n")
print("PATH", *sys.path, sep="\\n")
"""
    deps = sysconfig.get_paths()["purelib"]
    argv = [sys.executable, "-I", "-S", "-c", code, str(target), deps]
    run = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-3000:]
    helps, rest = run.stdout.split("MODULES\n")
    modules, path = rest.split("PATH\n")
    assert "--prometheus" in helps and "--metrics-url" in helps, helps
    assert "demo" not in helps, helps
    assert str(target / "infersight" / "cli.py") in modules.splitlines()
    assert [m for m in modules.splitlines() if m.startswith(str(ROOT))] == []
    assert [p for p in path.splitlines() if p.startswith(str(ROOT))] == []


def test_wheel_ships_its_type_marker_and_licence(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        licences = [n for n in names if n.endswith("/LICENSE")]
        text = zf.read(licences[0]).decode() if licences else ""
    assert "infersight/py.typed" in names
    assert "Apache License" in text and "Version 2.0" in text
