"""Shared fixtures: a locally built tiny model, an OTLP trace sink.

tools/ goes on ``sys.path`` here: the loopback stack (tools/stack) is shared with the demo."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tools"), str(ROOT / "examples")]

from stack import OtlpSink, cache_dir, running_sink  # noqa: E402

# Never reach a model hub from tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small DistilBERT sentiment model built locally (cached across runs outside the repo)."""
    from build_model import build

    cache = cache_dir()
    # v4: real vocabulary, no token_type_ids, max length 512
    return build(cache / "models" / "tiny-sentiment-v4" / "tiny-sentiment")


@pytest.fixture
def telemetry() -> Iterator[object]:
    """infersight initialised with a fresh registry and an in-memory span exporter."""
    from infersight.testing import capture

    with capture() as captured:
        yield captured


@pytest.fixture
def sink() -> Iterator[OtlpSink]:
    """An OTLP gRPC trace endpoint on loopback, standing in for Tempo or a collector."""
    with running_sink() as s:
        yield s
