"""A drift monitor on a fresh registry and a temporary drift_dir, driven by ``run_once()``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from infersight.config import Config
from infersight.drift import DriftMonitor
from infersight.drift.exporter import DriftMetrics
from infersight.exposition import Exposition
from infersight.metrics import make_metric


class _Rt:
    """The part of ``Runtime`` that DriftMetrics uses."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def make_metric(self, spec: Any, **kwargs: Any) -> Any:
        return make_metric(spec, self.registry, **kwargs)


class Harness:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.registry = CollectorRegistry()
        self.exposition = Exposition(self.registry)
        self.monitors: list[DriftMonitor] = []

    def monitor(self, html: bool = False, **settings: Any) -> DriftMonitor:
        settings.setdefault("drift_dir", str(self.tmp / "drift"))
        settings.setdefault("drift_reference_size", 200)
        settings.setdefault("drift_window", 200)
        cfg = Config(drift=True, traces=False, **settings)
        self.registry = CollectorRegistry()
        self.exposition = Exposition(self.registry)
        mon = DriftMonitor(cfg, metrics=DriftMetrics(_Rt(self.registry)), html=html, pages=self.exposition.pages)
        self.monitors.append(mon)
        return mon

    def value(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path)
    yield h
    for mon in h.monitors:
        mon.stop(timeout_s=5)


Feed = Callable[..., None]


@pytest.fixture
def feed() -> Feed:
    """``feed(monitor, model, n, seed, shifted=False)``: a synthetic request stream."""
    return _feed


WORDS = "good bad movie service fast slow the a was very".split()
OTHER = "quantum blockchain serverless latency kubernetes synergy paradigm".split()


def _feed(monitor: DriftMonitor, model: str, n: int, seed: int, shifted: bool = False) -> None:
    """numeric ``amount`` and ``age``, categorical ``country``, text ``query``, and a prediction."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        if shifted:
            amount = rng.normal(130.0, 20.0)
            country = rng.choice(["fr", "de", "us"], p=[0.8, 0.1, 0.1])
            query = " ".join(rng.choice(OTHER, int(rng.integers(12, 20))))
            label = rng.choice(["yes", "no"], p=[0.9, 0.1])
        else:
            amount = rng.normal(100.0, 20.0)
            country = rng.choice(["fr", "de", "us"])
            query = " ".join(rng.choice(WORDS, int(rng.integers(3, 8))))
            label = rng.choice(["yes", "no"])
        monitor.capture(
            model,
            {"amount": float(amount), "age": int(rng.integers(18, 80)), "country": str(country), "query": query},
            {"label": str(label), "score": float(rng.uniform(0.5, 1.0))},
        )
