"""Data and prediction drift, computed with evidently off the request path.

Turned on with ``infersight.init(drift=True)`` (or ``INFERSIGHT_DRIFT=1``). transformers
pipelines are captured automatically; a custom server declares its features once and
captures each request::

    from infersight import drift

    drift.declare("ranker", numeric=["price"], categorical=["country"], text=["query"])
    drift.set_reference("ranker", "reference.parquet")      # optional: else the first N samples
    ...
    drift.capture("ranker", {"price": 9.5, "country": "fr", "query": q},
                  prediction={"label": "click", "score": 0.82})

See docs/drift.md for the metrics, the reference options and the ``/drift`` page.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .analysis import MIN_SAMPLES, DriftResult, FeatureDrift
from .methods import is_drifted, rule_for
from .monitor import DriftMonitor

__all__ = [
    "MIN_SAMPLES",
    "DriftMonitor",
    "DriftResult",
    "FeatureDrift",
    "capture",
    "declare",
    "get_monitor",
    "is_drifted",
    "rule_for",
    "set_reference",
    "setup_drift",
]


def get_monitor() -> DriftMonitor | None:
    """The running monitor, or None when infersight isn't initialised with ``drift=True``."""
    from .._runtime import get_runtime

    rt = get_runtime()
    return rt.drift if rt is not None else None


def _require() -> DriftMonitor:
    monitor = get_monitor()
    if monitor is None:
        raise RuntimeError("infersight drift is off: call infersight.init(drift=True) first")
    return monitor


def declare(
    model: str,
    numeric: Iterable[str] = (),
    categorical: Iterable[str] = (),
    text: Iterable[str] = (),
    tokenizer: Any = None,
) -> None:
    """Declare a custom model's features by kind (optional: undeclared ones are inferred).

    ``text`` features become ``<name>_length_chars``, ``<name>_tokens`` and, with a
    ``tokenizer`` (a transformers tokenizer), ``<name>_unk_share``.
    """
    _require().declare(model, numeric, categorical, text, tokenizer)


def capture(model: str, features: Mapping[str, Any], prediction: Mapping[str, Any] | None = None) -> None:
    """Keep one request's features (and prediction: label, score, confidence...) for drift.

    Costs a few microseconds; a no-op when drift is off; never raises.
    """
    monitor = get_monitor()
    if monitor is not None:
        monitor.capture(model, features, prediction)


def set_reference(model: str, data: Any) -> None:
    """Compare ``model`` with ``data``: a DataFrame, a list of dicts (or of texts, for a text
    pipeline), or a path to a .csv or .parquet file. Saved under ``drift_dir``."""
    _require().set_reference(model, data)


def setup_drift(rt: Any) -> DriftMonitor:
    """Called by ``infersight.init`` when ``config.drift`` is on."""
    from .exporter import DriftMetrics

    config = rt.config
    metrics = DriftMetrics(rt) if config.metrics else None
    limiter = rt.metrics.limiter if rt.metrics is not None else None
    monitor = DriftMonitor(config, metrics=metrics, limiter=limiter, pages=rt.exposition.pages)
    rt.drift = monitor
    monitor.start()
    return monitor
