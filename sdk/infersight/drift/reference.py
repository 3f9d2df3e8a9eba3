"""Reference data: what a model's recent window is compared with.

It comes from a file (CSV or Parquet), from the API (a DataFrame or a list of dicts), or from
the first ``drift_reference_size`` samples captured after start. Once complete it is saved as
``<drift_dir>/<model>/reference.parquet`` (its feature columns, typed) and reloaded at start,
so a restart or a redeploy keeps comparing with the same data.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .features import FeatureKind, RawSample, Row
from .storage import model_dir, write_atomic

__all__ = [
    "META_FILE",
    "REFERENCE_FILE",
    "ReferenceData",
    "frame_from_rows",
    "kinds_of",
    "load_reference",
    "raw_samples",
    "save_reference",
    "saved_models",
]

REFERENCE_FILE = "reference.parquet"
META_FILE = "meta.json"


def frame_from_rows(rows: Sequence[Row], kinds: Mapping[str, FeatureKind]) -> pd.DataFrame:
    """A typed frame: numeric columns float64 (bad values NaN), categorical ones object."""
    frame = pd.DataFrame.from_records(list(rows))
    out: dict[str, pd.Series] = {}
    for column in frame.columns:
        kind = kinds.get(column)
        if kind == "numeric":
            out[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
        elif kind == "categorical":
            series = frame[column].astype(object)
            out[column] = series.where(series.notna(), None)
    return pd.DataFrame(out, index=frame.index)


def kinds_of(frame: pd.DataFrame) -> dict[str, FeatureKind]:
    """Column kinds of a saved reference, from its dtypes."""
    kinds: dict[str, FeatureKind] = {}
    for column in frame.columns:
        dtype = frame[column].dtype
        numeric = pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
        kinds[str(column)] = "numeric" if numeric else "categorical"
    return kinds


class ReferenceData:
    """A model's reference: a typed frame once complete; rows while being collected."""

    def __init__(self) -> None:
        self.frame: pd.DataFrame | None = None
        self.kinds: dict[str, FeatureKind] = {}
        self.collecting: list[Row] = []
        self.source = ""  # "file", "api", "captured"
        self.raw: list[RawSample] | None = None  # given by the API, extracted in background
        self.loaded_from_disk = False

    @property
    def ready(self) -> bool:
        return self.frame is not None

    def set_frame(self, frame: pd.DataFrame, kinds: Mapping[str, FeatureKind], source: str) -> None:
        self.frame = frame
        self.kinds = dict(kinds)
        self.collecting = []
        self.raw = None
        self.source = source


def raw_samples(data: Any) -> list[RawSample]:
    """Reference data given to ``set_reference`` as raw samples, extracted like captured ones.

    ``data``: a DataFrame, a list of dicts (features; prediction columns named
    ``prediction_<field>``), a list of strings (the inputs of a text pipeline), or a path to a
    ``.csv`` or ``.parquet`` file.
    """
    if isinstance(data, (str, Path)):
        data = _read_file(Path(data))
    if isinstance(data, pd.DataFrame):
        rows = data.to_dict(orient="records")
        return [("c", {str(k): v for k, v in row.items()}, None) for row in rows]
    if isinstance(data, Sequence) and not isinstance(data, (str, bytes)):
        out: list[RawSample] = []
        for item in data:
            if isinstance(item, str):
                out.append(("p", item, None))
            elif isinstance(item, Mapping):
                out.append(("c", dict(item), None))
            else:
                raise TypeError(f"reference rows must be dicts or strings, got {type(item).__name__}")
        return out
    raise TypeError(
        "reference data must be a pandas DataFrame, a list of dicts or strings, or a path to a "
        f".csv or .parquet file; got {type(data).__name__}"
    )


def _read_file(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return pd.read_csv(path)
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    raise ValueError(f"reference file must be .csv or .parquet, got {path}")


def save_reference(root: Path, model: str, frame: pd.DataFrame) -> Path:
    folder = model_dir(root, model)
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    path = folder / REFERENCE_FILE
    write_atomic(path, buf.getvalue())
    write_atomic(folder / META_FILE, json.dumps({"model": model}).encode())
    return path


def load_reference(root: Path, model: str) -> pd.DataFrame | None:
    path = model_dir(root, model) / REFERENCE_FILE
    if not path.exists():
        return None
    return pd.read_parquet(path)


def saved_models(root: Path) -> list[str]:
    """Models with a folder under ``root`` (a saved reference or report), by their meta file."""
    names: list[str] = []
    if not root.is_dir():
        return names
    for meta in sorted(root.glob(f"*/{META_FILE}")):
        try:
            name = json.loads(meta.read_text()).get("model")
        except (OSError, ValueError):
            continue
        if isinstance(name, str) and name:
            names.append(name)
    return names
