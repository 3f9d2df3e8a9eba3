"""One drift run: the window against the reference, with evidently's ``DataDriftPreset``.

Columns are checked first, so evidently only sees usable ones: present on both sides with at
least ``MIN_SAMPLES`` valid values, and not constant. Per-column results are read from the
snapshot's dict (``ValueDrift`` metrics: column, method, threshold, score); the per-feature
verdict is normalised by ``methods.is_drifted`` so 1 always means drifted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .features import FeatureKind
from .methods import is_drifted

__all__ = ["MIN_SAMPLES", "DriftResult", "FeatureDrift", "InsufficientData", "analyze", "usable_columns"]

MIN_SAMPLES = 30


class InsufficientData(Exception):
    """No verdict can be made; ``reason`` is the ``drift_errors`` label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    method: str  # as evidently names it, e.g. "K-S p_value", "Wasserstein distance (normed)"
    score: float
    threshold: float
    drifted: bool


@dataclass(frozen=True)
class DriftResult:
    features: tuple[FeatureDrift, ...]
    share: float  # drifted features / analysed features
    detected: bool  # share >= the dataset threshold
    window_samples: int
    reference_samples: int
    evidently_share: float | None  # DriftedColumnsCount's own share, for cross-checking
    html: str | None = field(default=None, repr=False)


def _valid(series: pd.Series, kind: FeatureKind) -> pd.Series:
    if kind == "numeric":
        values = pd.to_numeric(series, errors="coerce").replace([np.inf, -np.inf], np.nan)
        return values.dropna()
    return series.dropna()


def usable_columns(
    reference: pd.DataFrame, current: pd.DataFrame, kinds: dict[str, FeatureKind]
) -> dict[str, FeatureKind]:
    """Columns evidently can compare: on both sides, enough valid values, not constant."""
    usable: dict[str, FeatureKind] = {}
    for column, kind in kinds.items():
        if column not in reference.columns or column not in current.columns:
            continue
        ref, cur = _valid(reference[column], kind), _valid(current[column], kind)
        if len(ref) < MIN_SAMPLES or len(cur) < MIN_SAMPLES:
            continue
        if pd.concat([ref, cur]).nunique() < 2:
            continue  # one value everywhere: nothing can drift, and some tests return NaN
        usable[column] = kind
    return usable


def analyze(
    reference: pd.DataFrame, current: pd.DataFrame, kinds: dict[str, FeatureKind], threshold: float, html: bool = True
) -> DriftResult:
    """Run evidently. Raises ``InsufficientData`` when no verdict can be made."""
    if len(current) < MIN_SAMPLES:
        raise InsufficientData("insufficient_data", f"{len(current)} samples in the window")
    if len(reference) < MIN_SAMPLES:
        raise InsufficientData("insufficient_data", f"{len(reference)} reference samples")
    columns = usable_columns(reference, current, kinds)
    if not columns:
        raise InsufficientData("no_usable_features")
    numeric = [c for c, k in columns.items() if k == "numeric"]
    categorical = [c for c, k in columns.items() if k == "categorical"]
    ref, cur = _typed(reference, columns), _typed(current, columns)

    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    report = Report([DataDriftPreset(columns=numeric + categorical, drift_share=threshold)], include_tests=False)
    # errstate is per thread (unlike warnings filters): numpy's 0/0 notes on degenerate
    # correlations stay out of the app's logs without touching other threads.
    with np.errstate(all="ignore"):
        snapshot = report.run(
            Dataset.from_pandas(cur, data_definition=definition), Dataset.from_pandas(ref, data_definition=definition)
        )
    features, evidently_share = _read_snapshot(snapshot.dict())
    if not features:
        raise InsufficientData("no_usable_features", "evidently returned no column results")
    share = sum(f.drifted for f in features) / len(features)
    page = snapshot.get_html_str(as_iframe=False) if html else None
    return DriftResult(tuple(features), share, share >= threshold, len(current), len(reference), evidently_share, page)


def _typed(frame: pd.DataFrame, columns: dict[str, FeatureKind]) -> pd.DataFrame:
    out: dict[str, pd.Series] = {}
    for column, kind in columns.items():
        series = frame[column]
        if kind == "numeric":
            out[column] = pd.to_numeric(series, errors="coerce").replace([np.inf, -np.inf], np.nan)
        else:
            out[column] = series.map(lambda v: None if v is None or v != v else str(v))
    return pd.DataFrame(out)


def _read_snapshot(data: dict[str, Any]) -> tuple[list[FeatureDrift], float | None]:
    """Per-column results from ``Snapshot.dict()`` (evidently 0.7 layout)."""
    features: list[FeatureDrift] = []
    share: float | None = None
    for metric in data.get("metrics", []):
        config = metric.get("config") or {}
        kind = str(config.get("type", ""))
        value = metric.get("value")
        if kind.endswith(":ValueDrift"):
            column, method = config.get("column"), config.get("method")
            threshold = config.get("threshold")
            if column is None or method is None or threshold is None or value is None:
                continue
            score = float(value)
            if math.isnan(score):
                continue
            features.append(
                FeatureDrift(
                    str(column), str(method), score, float(threshold), is_drifted(str(method), score, float(threshold))
                )
            )
        elif kind.endswith(":DriftedColumnsCount") and isinstance(value, dict):
            raw = value.get("share")
            share = float(raw) if raw is not None else None
    return features, share
