"""Shared fixtures: a locally built tiny model, an OTLP trace sink."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.collector import OtlpSink, running_sink

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))

# Never reach a model hub from tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small DistilBERT sentiment model built locally (cached across runs outside the repo)."""
    from build_model import build

    cache = Path(os.environ.get("INFERSIGHT_CACHE", Path.home() / ".cache" / "infersight"))
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
