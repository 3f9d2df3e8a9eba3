"""The drift monitor: cheap capture on the request path, everything else in one background thread.

Request path (``capture``, ``capture_pipeline``): a sampling draw, a dict lookup and a deque
append. Background thread, every ``min(drift_interval_s, 1 s)``: drain the raw samples into
feature rows (tokenizing texts in one batch), fill the reference if it is still being
collected, keep the last ``drift_window`` rows; every ``drift_interval_s``: one evidently run
per model with new rows, metrics, and the HTML report on disk.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from random import random
from typing import Any

import pandas as pd

from .. import _errors
from .._cardinality import LabelLimiter
from ..config import Config
from .analysis import DriftResult, InsufficientData, analyze
from .buffer import SampleBuffer
from .exporter import DriftMetrics
from .features import FeatureKind, RawSample, Row, extract
from .pages import ModelStatus, Page, ReportPages
from .reference import (
    REFERENCE_FILE,
    ReferenceData,
    frame_from_rows,
    kinds_of,
    load_reference,
    raw_samples,
    save_reference,
    saved_models,
)
from .storage import default_drift_dir, model_dir

__all__ = ["DriftMonitor"]

logger = logging.getLogger("infersight")
_MAX_ALIASES = 10_000  # raw model names remembered; past that, unseen names take the slow path


class DriftMonitor:
    """Owns the buffers, references, the thread, the metrics and the ``/drift`` pages.

    ``metrics`` may be None (metrics off); ``html=False`` skips the HTML report (faster runs).
    ``pages`` is where the ``/drift`` pages go (the runtime's ``Exposition.pages``).
    Tests call ``run_once()`` instead of starting the thread.
    """

    def __init__(
        self,
        config: Config,
        *,
        metrics: DriftMetrics | None = None,
        limiter: LabelLimiter | None = None,
        html: bool = True,
        pages: dict[str, Page] | None = None,
    ) -> None:
        self.config = config
        self.root = Path(config.drift_dir).expanduser() if config.drift_dir else default_drift_dir(config.service)
        self.metrics = metrics
        self.html = html
        self.pages = ReportPages(self.root, {} if pages is None else pages)
        self._rate = config.drift_sample_rate
        self._limiter = limiter or LabelLimiter(config.max_label_values)
        self._buffers: dict[str, SampleBuffer] = {}  # by bounded model label
        self._aliases: dict[str, SampleBuffer] = {}  # by the name the caller used
        self._references: dict[str, ReferenceData] = {}
        self._ran: set[str] = set()
        self._lock = threading.Lock()  # buffer and reference creation
        self._work = threading.Lock()  # one drain/run at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loaded_saved = False

    # ---- request path -------------------------------------------------------------------

    def capture(self, model: str, features: Mapping[str, Any], prediction: Mapping[str, Any] | None = None) -> None:
        """Keep one sample of a custom model (sampled at ``drift_sample_rate``). Never raises."""
        if self._rate < 1.0 and random() >= self._rate:
            return
        try:
            buf = self._aliases.get(model) or self._buffer(model)
            # Shallow copies: callers often reuse their dicts.
            buf.add(("c", dict(features), dict(prediction) if prediction else None))
        except Exception as exc:
            _errors.report("drift.capture", exc)

    def capture_pipeline(self, model: str, pipeline: Any, inputs: Any, outputs: Any) -> None:
        """Keep a transformers pipeline call; its tokenizer is used later, in the background."""
        if self._rate < 1.0 and random() >= self._rate:
            return
        try:
            buf = self._aliases.get(model) or self._buffer(model)
            if not buf.tokenizer_seen:
                buf.tokenizer_seen = True
                tokenizer = getattr(pipeline, "tokenizer", None)
                if tokenizer is not None and buf.schema.tokenizer is None:
                    buf.schema.tokenizer = tokenizer
            # Only text inputs are read later: don't hold images or audio arrays in the buffer.
            buf.add(("p", inputs if _textual(inputs) else None, outputs))
        except Exception as exc:
            _errors.report("drift.capture", exc)

    def _buffer(self, model: str) -> SampleBuffer:
        """Slow path, once per model name: bound the label, create the buffer."""
        with self._lock:
            label = self._limiter.bound("model", str(model))
            buf = self._buffers.get(label)
            if buf is None:
                window = self.config.drift_window
                buf = SampleBuffer(label, window, pending=window)
                self._buffers[label] = buf
            if len(self._aliases) < _MAX_ALIASES:
                self._aliases[model] = buf
            return buf

    # ---- API -----------------------------------------------------------------------------

    def declare(
        self,
        model: str,
        numeric: Iterable[str] = (),
        categorical: Iterable[str] = (),
        text: Iterable[str] = (),
        tokenizer: Any = None,
    ) -> None:
        """Name a custom model's features by kind (undeclared ones are inferred from values)."""
        self._buffer(model).schema.declare(numeric, categorical, text, tokenizer)

    def set_reference(self, model: str, data: Any) -> None:
        """Use ``data`` (DataFrame, list of dicts or texts, or a .csv/.parquet path) as the
        model's reference. Extracted and saved in the background; replaces any saved one."""
        samples = raw_samples(data)
        buf = self._buffer(model)
        with self._lock:
            ref = ReferenceData()
            ref.raw = samples
            ref.source = "file" if isinstance(data, (str, Path)) else "api"
            ref.loaded_from_disk = True  # don't let a stale saved file override it
            self._references[buf.model] = ref

    def reset_reference(self, model: str) -> None:
        """Forget the reference; the next ``drift_reference_size`` samples become the new one."""
        buf = self._buffer(model)
        with self._lock:
            ref = ReferenceData()
            ref.loaded_from_disk = True
            self._references[buf.model] = ref
        try:
            (model_dir(self.root, buf.model) / REFERENCE_FILE).unlink(missing_ok=True)
        except OSError as exc:
            _errors.report("drift.reference", exc)

    def reference(self, model: str) -> pd.DataFrame | None:
        """The model's complete reference frame, if there is one yet."""
        buf = self._aliases.get(model) or self._buffer(model)
        ref = self._references.get(buf.model)
        return ref.frame if ref is not None else None

    def window_rows(self, model: str) -> list[Row]:
        buf = self._aliases.get(model) or self._buffer(model)
        return list(buf.window)

    # ---- background ----------------------------------------------------------------------

    def start(self) -> None:
        self.pages.install()
        if self._thread is None or not self._thread.is_alive():
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._loop, name="infersight-drift", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float | None = None) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            # An evidently run can't be interrupted: wait a bounded time, then leave the daemon.
            thread.join(self.config.shutdown_timeout_s if timeout_s is None else timeout_s)
        self._thread = None
        self.pages.uninstall()

    def after_fork_in_child(self) -> None:
        """A forked worker starts empty (its parent's samples are the parent's) and gets its
        own thread; locks are new, since the parent's thread may have held them at fork."""
        self._lock = threading.Lock()
        self._work = threading.Lock()
        self.pages.after_fork()
        for buf in self._buffers.values():
            buf.clear()
            buf.schema.after_fork()
        was_running = self._thread is not None
        self._thread = None
        if was_running:
            self.start()

    def _loop(self) -> None:
        interval = self.config.drift_interval_s
        tick = min(interval, 1.0)
        next_run = time.monotonic() + interval
        while not self._stop.wait(tick):
            try:
                self.collect()
                if time.monotonic() >= next_run:
                    self.run_all()
                    next_run = time.monotonic() + interval  # after the run: no back-to-back runs
            except Exception as exc:
                _errors.report("drift", exc)

    def run_once(self) -> dict[str, DriftResult | None]:
        """Drain and run every model now (what the thread does each interval)."""
        self.collect()
        return self.run_all(force=True)

    def collect(self) -> None:
        """Raw samples -> feature rows, into the window and a reference being collected."""
        with self._work:
            self._load_saved()
            for buf in list(self._buffers.values()):
                if self.metrics is not None:
                    self.metrics.model_seen(buf.model)
                    self.metrics.add_captured(buf.model, buf.take_captured())
                self.pages.track(buf.model)
                ref = self._reference_of(buf)
                if not buf.pending:
                    continue
                rows = extract(buf.schema, buf.drain())
                if not ref.ready and ref.raw is None:
                    self._collect_reference(buf, ref, rows)
                buf.extend(rows)

    def _load_saved(self) -> None:
        """Once: models with a saved reference or report get their pages back after a restart."""
        if self._loaded_saved:
            return
        self._loaded_saved = True
        try:
            for model in saved_models(self.root):
                self.pages.track(model)
        except Exception as exc:
            _errors.report("drift.reference", exc)

    def _reference_of(self, buf: SampleBuffer) -> ReferenceData:
        with self._lock:
            ref = self._references.get(buf.model)
            if ref is None:
                ref = self._references[buf.model] = ReferenceData()
        if not ref.loaded_from_disk:
            ref.loaded_from_disk = True
            try:
                frame = load_reference(self.root, buf.model)
            except Exception as exc:
                self._error(buf.model, "reference_error", exc)
                frame = None
            if frame is not None:
                kinds = kinds_of(frame)
                buf.schema.adopt(kinds)
                ref.set_frame(frame, kinds, "file")
        if ref.raw is not None and (buf.tokenizer_seen or not _needs_tokenizer(ref.raw)):
            self._materialise(buf, ref)
        return ref

    def _materialise(self, buf: SampleBuffer, ref: ReferenceData) -> None:
        """Reference data from the API, extracted now the model's tokenizer (if any) is known."""
        raw, ref.raw = ref.raw or [], None
        rows = extract(buf.schema, raw)
        kinds = {c: k for c, k in buf.schema.columns().items() if any(c in r for r in rows)}
        self._complete_reference(buf, ref, rows, kinds, ref.source or "api")

    def _collect_reference(self, buf: SampleBuffer, ref: ReferenceData, rows: list[Row]) -> None:
        need = self.config.drift_reference_size - len(ref.collecting)
        ref.collecting.extend(rows[:need])
        if len(ref.collecting) >= self.config.drift_reference_size:
            self._complete_reference(buf, ref, ref.collecting, buf.schema.columns(), "captured")

    def _complete_reference(
        self, buf: SampleBuffer, ref: ReferenceData, rows: list[Row], kinds: dict[str, FeatureKind], source: str
    ) -> None:
        frame = frame_from_rows(rows, kinds)
        ref.set_frame(frame, kinds, source)
        try:
            save_reference(self.root, buf.model, frame)
        except Exception as exc:
            self._error(buf.model, "reference_error", exc)

    def run_all(self, force: bool = False) -> dict[str, DriftResult | None]:
        results: dict[str, DriftResult | None] = {}
        with self._work:
            for buf in list(self._buffers.values()):
                if self._stop.is_set() and not force:
                    break
                if buf.rows_since_run == 0 and buf.model in self._ran and not force:
                    continue  # nothing new: the last verdict stands
                results[buf.model] = self._run(buf)
        return results

    def _run(self, buf: SampleBuffer) -> DriftResult | None:
        model = buf.model
        start = time.perf_counter()
        self._ran.add(model)
        buf.rows_since_run = 0
        schema = buf.schema
        if schema.invalid:
            schema.invalid = 0
            self._error(model, "invalid_values")
        if schema.dropped_features:
            schema.dropped_features = 0
            self._error(model, "too_many_features")
        ref = self._reference_of(buf)
        rows = list(buf.window)
        status = ModelStatus(window=len(rows), reference=_describe(ref, self.config))
        result: DriftResult | None = None
        try:
            if ref.frame is None:
                raise InsufficientData("no_reference", status.reference)
            kinds = {**schema.columns(), **ref.kinds}
            current = frame_from_rows(rows, kinds)
            result = analyze(ref.frame, current, kinds, self.config.drift_threshold, self.html)
        except InsufficientData as exc:
            self._error(model, exc.reason)
            status.verdict = f"no verdict: {exc}"
        except Exception as exc:
            self._error(model, "evidently_error", exc)
            status.verdict = f"no verdict: evidently failed ({type(exc).__name__})"
        seconds = time.perf_counter() - start
        status.finished = time.time()
        if self._stop.is_set() and self._thread is None:
            return result  # shut down during the run: the registry and pages are gone
        if self.metrics is not None:
            if result is not None:
                self.metrics.publish(model, result, seconds)
            else:
                self.metrics.no_verdict(model, len(rows), seconds)
        if result is not None:
            status.share = result.share
            status.verdict = "DRIFT" if result.detected else "no drift"
        try:
            self.pages.update(model, status, result.html if result is not None else None)
        except Exception as exc:
            self._error(model, "report_error", exc)
        return result

    def _error(self, model: str, reason: str, exc: BaseException | None = None) -> None:
        if exc is not None:
            _errors.report(f"drift.{reason}", exc)
        if self.metrics is not None:
            self.metrics.error(model, reason)


def _textual(inputs: Any) -> bool:
    if isinstance(inputs, (str, Mapping)):
        return True
    if isinstance(inputs, (list, tuple)):
        return not inputs or isinstance(inputs[0], (str, Mapping))
    return False


def _needs_tokenizer(raw: list[RawSample]) -> bool:
    return any(kind == "p" for kind, _, _ in raw)


def _describe(ref: ReferenceData, config: Config) -> str:
    if ref.frame is not None:
        return f"{len(ref.frame)} samples ({ref.source})"
    if ref.raw is not None:
        return "given, waiting for the model's first sample"
    return f"collecting {len(ref.collecting)}/{config.drift_reference_size}"
