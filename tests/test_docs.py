"""Generated docs are current, the README's commands exist, and the docs speak to users: links
resolve, named scripts exist, and no commit hash stands in for an explanation."""

from __future__ import annotations

import datetime as dt
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]

# "commit 1a2b3c4", "from 6d8ab01", and any bare 7-12 digit hex word with both letters and digits
# (not a decimal fraction's tail such as the 570635776e of 1.570635776e+09).
_NAMED_HASH = re.compile(r"\b(commit|at|from|of) [0-9a-f]{7,12}\b")
_BARE_HASH = re.compile(r"(?<![\w.])(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,12}(?!\w)")
_FENCE = re.compile(r"^```.*?^```", re.M | re.S)
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_SCRIPT = re.compile(r"\b((?:benchmarks|examples|tests)/[\w/.-]+\.py)\b")


def commit_hashes(text: str) -> list[str]:
    return [m.group(0) for m in _NAMED_HASH.finditer(text)] + [m.group(0) for m in _BARE_HASH.finditer(text)]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in _FENCE.sub("", markdown).splitlines():
        if m := re.match(r"#{1,6} (.+)", line):
            slug = _slug(m.group(1))
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def test_metrics_doc_is_current() -> None:
    result = subprocess.run(
        [sys.executable, "tools/gen_metrics_doc.py", "--check"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout


def test_readme_first_screen_names_the_two_commands() -> None:
    first_screen = "\n".join((ROOT / "README.md").read_text().splitlines()[:40])
    assert "make demo" in first_screen
    assert "make test" in first_screen
    makefile = (ROOT / "Makefile").read_text()
    assert "\ndemo:" in makefile and "\ntest:" in makefile
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_hash_check_finds_hashes_and_spares_numbers() -> None:
    assert commit_hashes("against the previous commit 6d8ab01's SDK") == ["commit 6d8ab01", "6d8ab01"]
    assert commit_hashes("a checkout of a9cfd52") == ["of a9cfd52", "a9cfd52"]
    assert commit_hashes("(fee3d9e)") == ["fee3d9e"]
    assert commit_hashes("1.570635776e+09 bytes, 24004 spans, 0.9567587753463098, GPU-efce…5d95, defaced") == []


def test_docs_name_no_commit_hashes() -> None:
    found = {str(p.relative_to(ROOT)): hashes for p in DOCS if (hashes := commit_hashes(p.read_text()))}
    assert not found, f"docs explain changes in words, not by revision: {found}"


def test_doc_links_resolve() -> None:
    broken = []
    for doc in DOCS:
        for target in _LINK.findall(_FENCE.sub("", doc.read_text())):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            file = (doc.parent / path).resolve() if path else doc
            if not file.exists():
                broken.append(f"{doc.name}: {target} (no such file)")
            elif anchor and file.suffix == ".md" and anchor not in anchors(file.read_text()):
                broken.append(f"{doc.name}: {target} (no such heading)")
    assert not broken, broken


def test_scripts_named_in_docs_exist() -> None:
    named = {(doc.name, script) for doc in DOCS for script in _SCRIPT.findall(doc.read_text())}
    missing = sorted(f"{doc}: {script}" for doc, script in named if not (ROOT / script).exists())
    assert not missing, missing


def _bench_runner() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "benchmarks" / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_page_names_the_machine_not_the_checkout() -> None:
    run = _bench_runner()
    assert run.machine_label(2, "x86_64", virtual=True, gpus=[], load=5.9) == "2-core x86-64 VM, shared"
    h200 = run.machine_label(16, "x86_64", virtual=False, gpus=["NVIDIA H200"], load=0.2)
    assert h200 == "16-core x86-64 host with one NVIDIA H200"
    page = "\n".join(run.header(run.this_machine(0.0), 0.0, dt.date(2026, 11, 26)))
    assert f"{os.cpu_count()}-core" in page and "2026-11-26" in page
    assert not commit_hashes(page)
    assert "rev-parse" not in (ROOT / "benchmarks" / "run.py").read_text()


def test_make_demo_runs_the_repo_tool_from_any_cwd(tmp_path: Path) -> None:
    recipe = (ROOT / "Makefile").read_text().split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    assert "tools/demo.py" in recipe and "infersight.demo" not in recipe, recipe
    # The tool finds the checkout's SDK, examples and stack launcher by itself.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    argv = [sys.executable, str(ROOT / "tools" / "demo.py"), "--help"]
    result = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "--fault-at" in result.stdout and "--duration" in result.stdout
