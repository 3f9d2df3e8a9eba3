"""Span names, event names and attribute keys are written once, in conventions.py: the package
holds no such string literal anywhere else."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

from infersight.conventions import ATTR

PACKAGE = Path(__file__).resolve().parent.parent / "sdk" / "infersight"

# Namespaces of attribute keys: ours and OTel's, those in use and the likely next ones.
_NAMESPACES = {value.split(".")[0] for key, value in vars(ATTR).items() if key.isupper()} | {
    "exception",
    "gen_ai",
    "gpu",
    "http",
    "model",
    "net",
    "network",
    "rpc",
    "server",
    "url",
}
# "infersight.gpu.sm_active" or an f-string's "infersight.gpu." head; not a module ("infersight._runtime").
_DOTTED = re.compile(rf"^({'|'.join(sorted(_NAMESPACES))})(\.[a-z][a-z0-9_]*)+\.?$")
# Calls whose first argument is a span or event name: any literal there is a name.
_NAME_CALLS = {"Event", "add_event", "start_as_current_span", "start_request", "start_span", "start_stage"}
# Calls whose first argument may be an attribute key.
_KEY_CALLS = {"get", "pop", "set_attr", "set_attribute", "setdefault"}
# Literals in files the lead owns right now; each entry must still be there (the test says
# when one goes), and the next change to that file replaces it with ATTR.
_PENDING: set[tuple[str, str]] = set()


def _text(node: ast.expr | None) -> str | None:
    """A literal string, or the literal head of an f-string, also as ``"...".strip()``."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return _text(node.func.value)
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values:
        head = node.values[0]
        if isinstance(head, ast.Constant) and isinstance(head.value, str):
            return head.value
    return None


def _callee(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def literals(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, literal) for each name or key written as a literal."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            keys: list[ast.expr | None] = list(node.keys)
        elif isinstance(node, ast.Subscript):
            keys = [node.slice]
        elif isinstance(node, ast.Call) and _callee(node) in _KEY_CALLS and node.args:
            keys = [node.args[0]]
        elif isinstance(node, ast.Call) and _callee(node) in _NAME_CALLS:
            names = [node.args[0]] if node.args else []
            names += [kw.value for kw in node.keywords if kw.arg == "name"]
            for name in names:
                text = _text(name)
                if text is not None and re.search("[A-Za-z]", text):
                    yield name.lineno, text
            continue
        else:
            continue
        for key in keys:
            text = _text(key)
            if key is not None and text is not None and _DOTTED.match(text):
                yield key.lineno, text


def _found() -> set[tuple[str, int, str]]:
    found = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "conventions.py" and path.parent == PACKAGE:
            continue
        for line, text in literals(ast.parse(path.read_text(), str(path))):
            found.add((str(path.relative_to(PACKAGE)), line, text))
    return found


def test_no_span_name_or_attribute_key_literal_outside_conventions() -> None:
    found = _found()
    left = sorted(f"{path}:{line}: {text!r}" for path, line, text in found if (path, text) not in _PENDING)
    assert left == [], "use conventions.SPAN / EVENT / ATTR instead of:\n" + "\n".join(left)
    gone = _PENDING - {(path, text) for path, _, text in found}
    assert not gone, f"no longer in the code: remove {sorted(gone)} from _PENDING"


def test_the_scan_finds_each_kind_of_literal() -> None:
    code = """
Event("exception", {"exception.type": t})
attrs["http.route"] = r
st.set_attr("infersight.batch.size", 3)
attrs[f"infersight.gpu.{name}"] = v
start_request(f"pipeline {task}".strip(), endpoint=e)
start_stage("tokenize")
_errors.report("gpu.sampler", exc)
sys.modules.get("infersight._runtime")
attrs[ATTR.HTTP_ROUTE] = r
start_request(name, endpoint=e)
"""
    assert [text for _, text in sorted(literals(ast.parse(code)))] == [
        "exception",
        "exception.type",
        "http.route",
        "infersight.batch.size",
        "infersight.gpu.",
        "pipeline ",
        "tokenize",
    ]
