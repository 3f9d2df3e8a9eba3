"""Fixtures for the GPU tests: a fake NVML routed into infersight, and clean log-once state."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest

from infersight import _errors, get_runtime
from infersight.gpu import sampler as sampler_module
from infersight.gpu.sampler import Sampler
from infersight.gpu.testing import FakeNVML, use_fake_nvml
from infersight.testing import Captured, capture

StartGpu = Callable[..., AbstractContextManager[Captured]]


@pytest.fixture(autouse=True)
def _fresh_log_once_state() -> Iterator[None]:
    sampler_module._told_no_gpu = False
    _errors.reset()
    yield
    _errors.reset()


@pytest.fixture
def fake() -> FakeNVML:
    return FakeNVML(1)


@pytest.fixture
def gpu_telemetry(fake: FakeNVML) -> StartGpu:
    """``with gpu_telemetry(**settings) as t``: infersight with gpu="on" over ``fake``.

    The sampler ticks once at start and then every 60 s (never, in a test): tests call
    ``current_sampler().sample_once()`` themselves, so values are deterministic.
    """

    @contextmanager
    def start(**settings: Any) -> Iterator[Captured]:
        settings.setdefault("gpu", "on")
        settings.setdefault("gpu_interval_s", 60.0)
        settings.setdefault("gpu_span_snapshots", True)  # off by default; these tests cover it
        with use_fake_nvml(fake), capture(**settings) as captured:
            yield captured

    return start


@pytest.fixture
def current_sampler() -> Callable[[], Sampler]:
    """The running runtime's GPU sampler."""

    def get() -> Sampler:
        rt = get_runtime()
        assert rt is not None
        sampler = rt.gpu
        assert isinstance(sampler, Sampler)
        return sampler

    return get
