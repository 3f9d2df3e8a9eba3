"""The shared live stack (tests/e2e/live_stack.py): started once for the e2e tests, always stopped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import stack

from .live_stack import LiveStack, live_stack


# Package scope: the stack (its servers, load and in-process trace sink) stops after the last
# e2e test instead of at the end of the session, so it neither loads the CPU nor allocates
# memory under the tests that follow (tests/reliability measures this process's RSS).
@pytest.fixture(scope="package")
def live(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[LiveStack]:
    missing = [b for b in ("prometheus", "promtool", "alertmanager") if stack.find_binary(b) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (tools/setup.sh installs them)")
    with live_stack(tmp_path_factory.mktemp("e2e"), tiny_model_dir) as running:
        yield running


# The tests share one stack, so order matters: the alert rules need >= 1 req/s averaged over
# 5 m, which a fresh Prometheus reaches sooner after the dashboard test's traffic; the alert
# test must come before the traces test, whose deliberately slow requests would otherwise be
# in its 5 m "before the fault" window; drift (shifted inputs) goes last.
ORDER = (
    "test_dashboards_live",
    "test_alerts_live",
    "test_traces_pipeline",
    "test_drift_live",
    "test_fault_matrix_live",  # last: its GIL hog and loads slow the machine down
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        module = item.module.__name__.rsplit(".", 1)[-1] if isinstance(item, pytest.Function) else ""
        return ORDER.index(module) if module in ORDER else -1

    e2e = [i for i in items if "/e2e/" in str(i.path)]
    if e2e:
        first = items.index(e2e[0])
        rest = [i for i in items if i not in e2e]
        items[:] = rest[:first] + sorted(e2e, key=rank) + rest[first:]
