"""The shared live stack (tests/e2e/live_stack.py): started once per session, always stopped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support import stack

from .live_stack import LiveStack, live_stack


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[LiveStack]:
    missing = [b for b in ("prometheus", "promtool", "alertmanager") if stack.find_binary(b) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (tools/setup.sh installs them)")
    with live_stack(tmp_path_factory.mktemp("e2e"), tiny_model_dir) as running:
        yield running
