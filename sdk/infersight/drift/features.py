"""Feature extraction, run by the background thread on the raw samples the request path kept.

A model's samples become rows of numeric and categorical columns:

* declared or inferred numeric features (a value that is not a finite number becomes NaN and
  is counted as invalid), categorical features (strings, bools);
* text features, as three numeric columns ``<name>_length_chars``, ``<name>_tokens`` and
  ``<name>_unk_share`` (token counts come from the model's tokenizer, one batched call per
  drain; without a tokenizer, whitespace words and no unknown-token share);
* the prediction: ``prediction_label`` (categorical), ``prediction_score`` and any other
  numeric fields as ``prediction_<field>``.

A column's kind is fixed the first time it is seen (or when declared), so the reference and
the window always agree on it; at most ``MAX_FEATURES`` columns per model.
"""

from __future__ import annotations

import math
import numbers
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from .. import _errors

__all__ = [
    "MAX_FEATURES",
    "PIPELINE_TEXT",
    "FeatureKind",
    "RawSample",
    "Row",
    "Schema",
    "extract",
    "text_stats",
]

FeatureKind = Literal["numeric", "categorical"]
Row = dict[str, Any]
# ("c", features, prediction) from capture(); ("p", inputs, outputs) from a pipeline call.
RawSample = tuple[str, Any, Any]

MAX_FEATURES = 100
MAX_NAME = 100
MAX_CATEGORY = 200  # characters kept of a categorical value
PIPELINE_TEXT = "text"
_PREDICTION = "prediction"
_OUTPUT_TEXT = "output"
_GENERATED = ("generated_text", "summary_text", "translation_text")
_NAN = float("nan")


class Schema:
    """The kinds of one model's feature columns and what it knows to extract them."""

    def __init__(self) -> None:
        self.numeric: set[str] = set()
        self.categorical: set[str] = set()
        self.text: set[str] = set()
        self.kinds: dict[str, FeatureKind] = {}
        self.tokenizer: Any = None
        self.invalid = 0  # values that were not usable, since the last drift run
        self.dropped_features = 0  # columns refused past MAX_FEATURES, since the last run
        self._lock = threading.Lock()

    def declare(
        self,
        numeric: Iterable[str] = (),
        categorical: Iterable[str] = (),
        text: Iterable[str] = (),
        tokenizer: Any = None,
    ) -> None:
        with self._lock:
            for name in numeric:
                self.numeric.add(name)
                self.kinds[name] = "numeric"
            for name in categorical:
                self.categorical.add(name)
                self.kinds[name] = "categorical"
            self.text.update(text)
            if tokenizer is not None:
                self.tokenizer = tokenizer

    def adopt(self, kinds: Mapping[str, FeatureKind]) -> None:
        """Take the kinds of a loaded reference, so the window is read the same way."""
        with self._lock:
            for name, kind in kinds.items():
                self.kinds.setdefault(name, kind)

    def kind_for(self, column: str, value: Any) -> FeatureKind | None:
        """The column's kind, fixed now from ``value`` if it is new; None if it can't be kept."""
        kind = self.kinds.get(column)
        if kind is not None:
            return kind
        if isinstance(value, (bool, str)):
            kind = "categorical"
        elif isinstance(value, numbers.Real):
            kind = "numeric"
        else:
            return None  # None or an object: decide on a later value
        if len(self.kinds) >= MAX_FEATURES or len(column) > MAX_NAME:
            self.dropped_features += 1
            return None
        self.kinds[column] = kind
        return kind

    def columns(self) -> dict[str, FeatureKind]:
        return dict(self.kinds)

    def after_fork(self) -> None:
        self._lock = threading.Lock()


def _number(value: Any) -> float | None:
    if isinstance(value, numbers.Real):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _category(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value)[:MAX_CATEGORY]


def _put(schema: Schema, row: Row, column: str, value: Any) -> None:
    kind = schema.kind_for(column, value)
    if kind is None:
        if value is not None:
            schema.invalid += 1
        return
    if kind == "numeric":
        number = _number(value)
        if number is None:
            schema.invalid += 1
            row[column] = _NAN
        else:
            row[column] = number
    else:
        category = _category(value)
        if category is None:
            schema.invalid += 1
        row[column] = category


def text_stats(texts: Sequence[str], tokenizer: Any) -> list[tuple[float, float, float | None]]:
    """(characters, tokens, share of unknown tokens or None) per text; one tokenizer call."""
    if not texts:
        return []
    chars = [float(len(t)) for t in texts]
    if tokenizer is not None:
        try:
            encoded = tokenizer(list(texts), add_special_tokens=False, truncation=False, verbose=False)
            ids: list[list[int]] = encoded["input_ids"]
            unk = getattr(tokenizer, "unk_token_id", None)
            out: list[tuple[float, float, float | None]] = []
            for c, tokens in zip(chars, ids, strict=True):
                share = None
                if unk is not None:
                    share = sum(1 for t in tokens if t == unk) / len(tokens) if tokens else 0.0
                out.append((c, float(len(tokens)), share))
            return out
        except Exception as exc:
            _errors.report("drift.tokenizer", exc)
    return [(c, float(len(t.split())), None) for c, t in zip(chars, texts, strict=True)]


class _TextJobs:
    """Texts of a drain, tokenized together at the end (one batched call, not one per text)."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.targets: list[tuple[Row, str]] = []

    def add(self, row: Row, prefix: str, text: str) -> None:
        self.texts.append(text)
        self.targets.append((row, prefix))

    def finish(self, schema: Schema) -> None:
        stats = text_stats(self.texts, schema.tokenizer)
        for (row, prefix), (chars, tokens, unk) in zip(self.targets, stats, strict=True):
            _put(schema, row, f"{prefix}_length_chars", chars)
            _put(schema, row, f"{prefix}_tokens", tokens)
            if unk is not None:
                _put(schema, row, f"{prefix}_unk_share", unk)


def _top_prediction(output: Any) -> Mapping[str, Any] | None:
    """A pipeline's output for one input: a dict, or a list of candidate dicts (top_k)."""
    if isinstance(output, Mapping):
        return output
    if isinstance(output, (list, tuple)) and output and all(isinstance(o, Mapping) for o in output):
        scored = [o for o in output if _number(o.get("score")) is not None]
        if scored:
            best: Mapping[str, Any] = max(scored, key=lambda o: _number(o.get("score")) or 0.0)
            return best
        first: Mapping[str, Any] = output[0]
        return first
    return None


def _put_prediction(schema: Schema, row: Row, prediction: Mapping[str, Any]) -> None:
    for key, value in prediction.items():
        column = f"{_PREDICTION}_{key}"
        if key == "label" and column not in schema.kinds:
            schema.kinds.setdefault(column, "categorical")
        if isinstance(value, (Mapping, list, tuple)):
            continue  # nested structures (spans, token lists) are not features
        _put(schema, row, column, value)


def _pipeline_rows(schema: Schema, inputs: Any, outputs: Any, jobs: _TextJobs) -> list[Row]:
    if isinstance(inputs, (list, tuple)):
        items = list(inputs)
        outs = (
            list(outputs) if isinstance(outputs, (list, tuple)) and len(outputs) == len(items) else [None] * len(items)
        )
    else:
        items, outs = [inputs], [outputs]
    rows: list[Row] = []
    for item, out in zip(items, outs, strict=True):
        row: Row = {}
        if isinstance(item, str):
            jobs.add(row, PIPELINE_TEXT, item)
        elif isinstance(item, Mapping):  # {"text": ..., "text_pair": ...}
            for key, value in item.items():
                if isinstance(value, str) and len(str(key)) <= MAX_NAME:
                    jobs.add(row, str(key), value)
        prediction = _top_prediction(out)
        if prediction is not None:
            _put_pipeline_prediction(schema, row, prediction, jobs)
        rows.append(row)
    return rows


def _put_pipeline_prediction(schema: Schema, row: Row, prediction: Mapping[str, Any], jobs: _TextJobs) -> None:
    """A pipeline's label and score; generated text (text2text, summaries, translations) as
    ``output_*`` text columns. Other fields (spans, offsets, words) are not features."""
    if "label" in prediction:
        schema.kinds.setdefault(f"{_PREDICTION}_label", "categorical")
        _put(schema, row, f"{_PREDICTION}_label", prediction["label"])
    if "score" in prediction:
        _put(schema, row, f"{_PREDICTION}_score", prediction["score"])
    for key in _GENERATED:
        text = prediction.get(key)
        if isinstance(text, str):
            jobs.add(row, _OUTPUT_TEXT, text)
            break


def _custom_row(
    schema: Schema, features: Mapping[str, Any], prediction: Mapping[str, Any] | None, jobs: _TextJobs
) -> Row:
    row: Row = {}
    for key, value in features.items():
        name = str(key)
        if name in schema.text:
            if isinstance(value, str):
                jobs.add(row, name, value)
            else:
                schema.invalid += 1
            continue
        _put(schema, row, name, value)
    if prediction:
        _put_prediction(schema, row, prediction)
    return row


def extract(schema: Schema, samples: Iterable[RawSample]) -> list[Row]:
    """Feature rows of raw samples; a sample that can't be read is counted and skipped."""
    jobs = _TextJobs()
    rows: list[Row] = []
    for kind, first, second in samples:
        try:
            if kind == "p":
                rows.extend(_pipeline_rows(schema, first, second, jobs))
            elif isinstance(first, Mapping):
                rows.append(_custom_row(schema, first, second if isinstance(second, Mapping) else None, jobs))
            else:
                schema.invalid += 1
        except Exception as exc:
            schema.invalid += 1
            _errors.report("drift.extract", exc)
    jobs.finish(schema)
    return [row for row in rows if row]
