"""Synthetic infersight metrics as OpenMetrics text, for backfilling a real Prometheus TSDB.

Every metric in ``infersight.conventions.ALL_METRICS`` gets series for several models,
versions, stages and GPUs over a window (default 1 h at 15 s steps), shaped like a scrape
of a live server: histograms with cumulative buckets, counters that only increase, gauges
that move. Values are deterministic (no randomness), so a failing query is reproducible.

    text = openmetrics(end=int(time.time()))
    backfill(text, tsdb_dir)      # promtool tsdb create-blocks-from openmetrics

The dashboard tests run every panel query against it; end-to-end tests can reuse it.
"""

from __future__ import annotations

import itertools
import math
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from infersight.conventions import (
    ALL_METRICS,
    COLD_START_PHASES,
    METRIC,
    OUTCOME_ERROR,
    OUTCOME_SUCCESS,
    STAGES,
    TRITON,
    MetricSpec,
)

INSTANCE = "model-server:8000"
JOB = "model-server"
# (model, version): two versions of one model, so version filters have something to split.
MODEL_VERSIONS = (("sentiment", "v1"), ("sentiment", "v2"), ("ranker", "v3"))
MODELS = tuple(dict.fromkeys(m for m, _ in MODEL_VERSIONS))
# (gpu index, uuid, name): the first GPU has GPM counters, the second NVML only.
GPUS = (
    ("0", "GPU-00000000-1111-2222-3333-444444444444", "NVIDIA H100 80GB HBM3"),
    ("1", "GPU-55555555-6666-7777-8888-999999999999", "NVIDIA A10G"),
)
# Values for labels that are not tied to another label.
LABEL_VALUES: dict[str, tuple[str, ...]] = {
    "endpoint": ("/predict",),
    "target": ("ranker:8001",),
    "phase": COLD_START_PHASES,
    "outcome": (OUTCOME_SUCCESS, OUTCOME_ERROR),
    "stage": STAGES,
    "exception_type": ("ValueError", "RuntimeError"),
    "direction": ("request", "response"),
    "component": ("exporter", "gpu"),
    "reason": ("queue_full", "insufficient_data"),
    "label": ("model",),
    "call": ("nvmlDeviceGetPowerUsage",),
    "mode": ("gpm", "nvml"),
    "type": ("volatile_corrected",),
    "xid": ("79",),
    "feature": ("text_length", "sentiment_score"),
    "method": ("psi", "wasserstein"),
}
# Median of each positive-valued histogram (lognormal shape); ratio histograms are centred on 0.6.
MEDIANS = {
    METRIC.REQUEST_DURATION.name: 0.08,
    METRIC.STAGE_DURATION.name: 0.02,
    METRIC.QUEUE_WAIT.name: 0.005,
    METRIC.BATCH_SIZE.name: 8.0,
    METRIC.PAYLOAD_SIZE.name: 2048.0,
    METRIC.INPUT_TOKENS.name: 64.0,
    METRIC.STAGE_GPU_BUSY.name: 0.012,
}


@dataclass(frozen=True)
class Window:
    """The sampled time range: ``points`` scrapes ``step`` seconds apart ending at ``end``."""

    end: int
    duration: int = 3600
    step: int = 15

    @property
    def start(self) -> int:
        return self.end - self.duration

    def times(self) -> range:
        return range(self.start, self.end + 1, self.step)


def label_sets(spec: MetricSpec) -> list[dict[str, str]]:
    """Every label combination a metric gets; model/version and gpu/uuid/name stay consistent."""
    axes: list[list[dict[str, str]]] = []
    labels = spec.labels
    if "model" in labels and "version" in labels:
        axes.append([{"model": m, "version": v} for m, v in MODEL_VERSIONS])
    elif "model" in labels:
        axes.append([{"model": m} for m in MODELS])
    if "gpu" in labels:
        gpu_keys = [k for k in ("gpu", "uuid", "name") if k in labels]
        axes.append(
            [dict(zip(gpu_keys, (g[("gpu", "uuid", "name").index(k)] for k in gpu_keys), strict=True)) for g in GPUS]
        )
    for name in labels:
        if name in ("model", "version", "gpu", "uuid", "name"):
            continue
        axes.append([{name: value} for value in LABEL_VALUES[name]])
    combos = []
    for parts in itertools.product(*axes):
        merged: dict[str, str] = {}
        for part in parts:
            merged.update(part)
        combos.append(merged)
    return combos


def _wave(t: int, period: float, phase: float = 0.0) -> float:
    """0..1, smooth, deterministic."""
    return 0.5 + 0.5 * math.sin(2 * math.pi * t / period + phase)


def _series_phase(labels: dict[str, str]) -> float:
    return (sum(map(ord, "".join(sorted(labels.values())))) % 97) / 97 * 2 * math.pi


def _normal_cdf(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def _bucket_share(spec: MetricSpec, le: float, median: float) -> float:
    """Share of observations at or below ``le``."""
    if spec.buckets and spec.buckets[-1] <= 1.0:  # a 0-1 ratio histogram
        return _normal_cdf((le - 0.6) / 0.2)
    return _normal_cdf(math.log(le / median) / 0.8)


def _flag(spec: MetricSpec, labels: dict[str, str], t: int, window: Window) -> float | None:
    """0/1 gauges: which series are 'on'. None if ``spec`` is not a flag."""
    if spec is METRIC.GPU_UP or spec is METRIC.MODEL_INFO or spec is METRIC.GPU_SAMPLER_UP:
        return 1.0
    if spec is METRIC.GPU_TIME_SLICED:
        return 1.0 if labels["gpu"] == "0" else 0.0
    if spec is METRIC.GPU_PROFILING_MODE:
        active = "gpm" if labels["gpu"] == "0" else "nvml"
        return 1.0 if labels["mode"] == active else 0.0
    if spec is METRIC.GPU_THROTTLE:
        return 1.0 if labels["gpu"] == "0" and _wave(t, 900) > 0.8 else 0.0
    if spec in (METRIC.DRIFT_DETECTED, METRIC.DRIFT_FEATURE_DRIFTED):
        # The first model drifts in the second half of the window.
        return 1.0 if labels["model"] == MODELS[0] and t > window.start + window.duration // 2 else 0.0
    if spec is METRIC.DRIFT_INSUFFICIENT_DATA:
        return 1.0 if labels["model"] == MODELS[-1] else 0.0
    return None


def _gauge(spec: MetricSpec, labels: dict[str, str], t: int, window: Window) -> float:
    flag = _flag(spec, labels, t, window)
    if flag is not None:
        return flag
    w = _wave(t, 1200, _series_phase(labels))
    fixed = {
        METRIC.REQUESTS_IN_FLIGHT: 2 + 6 * w,
        METRIC.MODEL_SLO_P99: 0.25,
        METRIC.MODEL_LOAD_DURATION: 4.5,
        METRIC.FIRST_REQUEST_DURATION: 0.9,
        METRIC.COLD_START: 0.5 + w,
        METRIC.GPU_MEMORY_TOTAL: 80e9,
        METRIC.GPU_MEMORY_USED: 30e9 + 20e9 * w,
        METRIC.GPU_PROCESS_MEMORY: 20e9 + 10e9 * w,
        METRIC.GPU_TORCH_RESERVED: 18e9 + 10e9 * w,
        METRIC.GPU_TORCH_ALLOCATED: 12e9 + 8e9 * w,
        METRIC.GPU_COMPUTE_PROCESSES: 2.0 if labels.get("gpu") == "0" else 1.0,
        METRIC.GPU_HOURLY_COST: 4.0 if labels.get("gpu") == "0" else 1.0,
        METRIC.GPU_POWER: 150 + 200 * w,
        METRIC.GPU_TEMPERATURE: 55 + 20 * w,
        METRIC.GPU_SM_CLOCK: 1.4e9 + 0.58e9 * w,
        METRIC.GPU_MEMORY_CLOCK: 2.6e9,
        METRIC.DRIFT_WINDOW_SAMPLES: 400 + 200 * w,
        METRIC.DRIFT_LAST_RUN: float(t - t % 300),  # a run every 5 minutes
        METRIC.DRIFT_RUN_DURATION: 1.5 + w,
        METRIC.DRIFT_SCORE: 0.05 + 0.3 * w,
        METRIC.DRIFT_SHARE: 0.5 * w,
    }
    if spec in fixed:
        return fixed[spec]
    if spec.name.endswith("_ratio"):
        return 0.2 + 0.7 * w
    if spec.name.endswith("_bytes_per_second"):
        return 1e8 + 4e9 * w
    raise ValueError(f"no synthetic value for gauge {spec.name}; add one to tests/support/synthetic.py")


def _rate_per_s(spec: MetricSpec, labels: dict[str, str], t: int) -> float:
    """Events per second behind a counter or a histogram's count."""
    base = 20.0 if labels.get("model") == MODELS[0] else 8.0
    if labels.get("outcome") == OUTCOME_ERROR or spec.type == "counter":
        base *= 0.05
    if spec is METRIC.GPU_ENERGY:
        base = 250.0  # joules per second = watts
    return base * (0.6 + 0.8 * _wave(t, 1800, _series_phase(labels)))


def _fmt_labels(labels: dict[str, str]) -> str:
    return ",".join(f'{k}="{v}"' for k, v in labels.items())


def _fmt_value(value: float) -> str:
    return repr(float(value)) if not value.is_integer() else str(int(value))


def family_lines(spec: MetricSpec, window: Window) -> Iterator[str]:
    """The OpenMetrics lines of one metric family (TYPE, HELP, then samples)."""
    kind = "gauge" if spec.type == "info" else spec.type
    yield f"# TYPE {spec.name} {kind}"
    yield f"# HELP {spec.name} {spec.help}"
    scrape = {"instance": INSTANCE, "job": JOB}
    for labels in label_sets(spec):
        full = {**labels, **scrape}
        total = 0.0
        for t in window.times():
            total += _rate_per_s(spec, labels, t) * window.step
            if spec.type == "gauge" or spec.type == "info":
                yield f"{spec.name}{{{_fmt_labels(full)}}} {_fmt_value(_gauge(spec, labels, t, window))} {t}"
            elif spec.type == "counter":
                yield f"{spec.name}_total{{{_fmt_labels(full)}}} {_fmt_value(round(total, 3))} {t}"
            else:
                yield from _histogram_lines(spec, full, t, total)


def _histogram_lines(spec: MetricSpec, labels: dict[str, str], t: int, total: float) -> Iterator[str]:
    median = MEDIANS.get(spec.name, 1.0)
    if labels.get("stage") == "model":
        median *= 3  # the model stage dominates, as on a real server
    if labels.get("direction") == "response":
        median /= 8
    count = math.floor(total)
    for le in spec.buckets:
        cumulative = math.floor(count * _bucket_share(spec, le, median))
        yield f"{spec.name}_bucket{{{_fmt_labels({**labels, 'le': _fmt_value(float(le))})}}} {cumulative} {t}"
    yield f"{spec.name}_bucket{{{_fmt_labels({**labels, 'le': '+Inf'})}}} {count} {t}"
    mean = median if spec.buckets[-1] <= 1.0 else median * math.exp(0.8**2 / 2)
    yield f"{spec.name}_count{{{_fmt_labels(labels)}}} {count} {t}"
    yield f"{spec.name}_sum{{{_fmt_labels(labels)}}} {_fmt_value(round(count * mean, 6))} {t}"


# A Triton Inference Server's scrape (job triton): one model, 20 requests/s, 4 per execution.
TRITON_MODEL = {"model": "triton-resnet", "version": "1", "instance": "triton:8002", "job": TRITON.JOB}
TRITON_RPS = 20.0
TRITON_STAGE_US = {"queue": 5000.0, "input": 500.0, "model": 30000.0, "output": 1000.0}  # per request


def triton_lines(window: Window) -> Iterator[str]:
    """Triton's metrics, typed ``unknown`` as in its Prometheus text (its counters have no
    ``_total``), summaries as their quantile samples."""
    per_request = {TRITON.REQUEST_DURATION_US: sum(TRITON_STAGE_US.values())}
    per_request |= {TRITON.STAGE_DURATION_US[stage]: us for stage, us in TRITON_STAGE_US.items()}
    counters = {TRITON.SUCCESS: 1.0, TRITON.INFERENCES: 1.0, TRITON.EXECUTIONS: 0.25, **per_request}
    labels = _fmt_labels(TRITON_MODEL)
    for name in (
        *counters,
        TRITON.FAILURE,
        TRITON.PENDING,
        TRITON.REQUEST_SUMMARY_US,
        *TRITON.STAGE_SUMMARY_US.values(),
    ):
        yield f"# TYPE {name} unknown"
    for i, t in enumerate(window.times()):
        done = TRITON_RPS * window.step * i
        for name, per in counters.items():
            yield f"{name}{{{labels}}} {_fmt_value(done * per)} {t}"
        failed = _fmt_labels({**TRITON_MODEL, "reason": "BACKEND"})
        yield f"{TRITON.FAILURE}{{{failed}}} {_fmt_value(done / 100)} {t}"
        yield f"{TRITON.PENDING}{{{labels}}} {i % 4} {t}"
        summaries = {TRITON.REQUEST_SUMMARY_US: sum(TRITON_STAGE_US.values())}
        summaries |= {TRITON.STAGE_SUMMARY_US[stage]: us for stage, us in TRITON_STAGE_US.items()}
        for name, median in summaries.items():
            for q in TRITON.SUMMARY_QUANTILES:
                quantile = _fmt_labels({**TRITON_MODEL, "quantile": str(q)})
                yield f"{name}{{{quantile}}} {_fmt_value(median * (1 + 4 * q))} {t}"


def openmetrics(end: int, duration: int = 3600, step: int = 15) -> str:
    """OpenMetrics text covering every metric in conventions, and Triton's, over ``[end - duration, end]``."""
    window = Window(end, duration, step)
    lines = [line for spec in ALL_METRICS for line in family_lines(spec, window)]
    lines += triton_lines(window)
    return "\n".join([*lines, "# EOF", ""])


def backfill(text: str, tsdb_dir: Path, promtool: str = "promtool", timeout: float = 120.0) -> None:
    """Write ``text`` into TSDB blocks under ``tsdb_dir`` (created if missing)."""
    tsdb_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".om.txt", delete=False) as handle:
        handle.write(text)
        source = Path(handle.name)
    try:
        proc = subprocess.run(
            [promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(tsdb_dir)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    finally:
        source.unlink(missing_ok=True)
    if proc.returncode != 0:
        raise RuntimeError(f"promtool backfill failed ({proc.returncode}): {proc.stderr[-2000:]}")
