"""Configuration: one explicit object whose defaults come from the environment.

Every environment variable is read when ``Config.from_env()`` runs, never at import time.
A bad value raises ``ConfigError`` naming the setting and the variable it came from.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from . import _otlp_settings

__all__ = ["Config", "ConfigError", "ModelConfig"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_GPU_MODES = ("auto", "on", "off")
_TRACES_EXPORTERS = ("otlp", "console", "none")
_OTLP_PROTOCOLS = ("grpc", "http/protobuf")
_OTLP_ENCODERS = ("fast", "stock")
_METRICS_EXPORTERS = ("prometheus", "otlp")


class ConfigError(ValueError):
    """A setting has a bad value. ``setting`` names it (and ``source`` the env var, if any)."""

    def __init__(self, setting: str, message: str, source: str | None = None) -> None:
        self.setting = setting
        self.source = source
        where = f"{setting} (from ${source})" if source else setting
        super().__init__(f"infersight: invalid {where}: {message}")


_MODEL_KEYS = ("version", "slo_p99_seconds", "endpoints")


@dataclass(frozen=True)
class ModelConfig:
    """What infersight knows of one model: its version, its P99 objective, and the endpoints
    that serve it (``/scorer.Scorer/Score``; a trailing ``*`` matches a prefix), which label a
    request that names no model (a custom gRPC servicer, a route without a pipeline)."""

    version: str = ""
    slo_p99_seconds: float | None = None
    endpoints: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        endpoints = self.endpoints
        if isinstance(endpoints, str) or not isinstance(endpoints, (list, tuple)):
            raise ConfigError("endpoints", f"must be a list of endpoint names, got {endpoints!r}")
        for endpoint in endpoints:
            if not isinstance(endpoint, str) or not _endpoint_key(endpoint):
                raise ConfigError("endpoints", f"each must be a non-empty string, got {endpoint!r}")
        object.__setattr__(self, "endpoints", tuple(endpoints))
        if self.slo_p99_seconds is not None:
            slo = self.slo_p99_seconds
            if isinstance(slo, bool) or not isinstance(slo, (int, float)):
                raise ConfigError("slo_p99_seconds", f"must be a number, got {slo!r}")
            if not math.isfinite(slo) or slo <= 0:
                raise ConfigError("slo_p99_seconds", f"must be a positive number, got {slo!r}")


@dataclass(frozen=True)
class Config:
    """All of infersight's settings. ``Config.from_env(**overrides)`` is the usual way in.

    Environment variables (the OTel ones keep their standard meaning):

    ========================================  ==================================================
    ``OTEL_SERVICE_NAME``                     service name on every span (``service``)
    ``OTEL_SDK_DISABLED``                     ``true``: no spans (metrics stay; they aren't OTel's)
    ``OTEL_TRACES_EXPORTER``                  ``otlp`` (default), ``console``, a list (``otlp,console``)
                                              or ``none``
    ``OTEL_PYTHON_EXCLUDED_URLS``             routes with no span and no latency sample (and the
                                              per-framework ``OTEL_PYTHON_FLASK_EXCLUDED_URLS``...;
                                              default: health probes, see ``_excluded_urls``)
    ``OTEL_EXPORTER_OTLP_PROTOCOL``           ``grpc`` (default) or ``http/protobuf``
    ``OTEL_EXPORTER_OTLP_ENDPOINT``           read by the OTLP exporter itself
    ``INFERSIGHT_OTLP_ENCODER``               ``fast`` (default): infersight's OTLP/gRPC span encoder;
                                              ``stock``: the OTel exporter's own
    ``OTEL_TRACES_SAMPLER`` / ``_ARG``        read by the OTel SDK's tracer provider
    ``OTEL_EXPORTER_OTLP_HEADERS``,           read by the OTLP exporter (``_TRACES_`` variants win);
    ``_COMPRESSION``, ``_CERTIFICATE``,       checked here: a file that isn't there, a header that
    ``_CLIENT_KEY``, ``_CLIENT_CERTIFICATE``  doesn't parse fail start-up (``_otlp_settings``)
    ``INFERSIGHT_MODELS``                     JSON: ``{"name": {"version": "2", "slo_p99_seconds": 0.1,
                                              "endpoints": ["/scorer.Scorer/Score"]}}``
    ``INFERSIGHT_METRICS``                    expose Prometheus metrics (default true)
    ``INFERSIGHT_METRICS_EXPORTER``           ``prometheus`` (default: served for scraping), ``otlp``
                                              (pushed to the collector) or ``prometheus,otlp``
    ``OTEL_METRIC_EXPORT_INTERVAL``           milliseconds between OTLP metric pushes (15000)
    ``OTEL_EXPORTER_OTLP_METRICS_PROTOCOL``   ``grpc`` or ``http/protobuf`` for metrics (default:
                                              ``OTEL_EXPORTER_OTLP_PROTOCOL``); the exporter reads
                                              ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`` and the rest
    ``INFERSIGHT_METRICS_PORT``               port of the metrics server for non-Flask apps (9464; 0: off)
    ``INFERSIGHT_METRICS_ADDR``               its bind address (0.0.0.0)
    ``INFERSIGHT_METRICS_PATH``               route added to Flask apps (``/metrics``; empty: off)
    ``INFERSIGHT_EXEMPLARS``                  attach trace exemplars to histograms (true)
    ``INFERSIGHT_SERVER_TIMING``              answer with a ``Server-Timing`` header (gRPC: trailer) (true)
    ``INFERSIGHT_TRACES``                     emit spans (true)
    ``INFERSIGHT_TRACES_KEEP_RATIO``          share of fast, successful requests whose spans are
                                              exported (1.0); errors and slow ones always are
    ``INFERSIGHT_TRACES_KEEP_SLOWER_THAN``    seconds over which a request's spans are always
                                              exported (0.5), as is any over its model's P99 SLO
    ``INFERSIGHT_MAX_LABEL_VALUES``           distinct values per traffic label before ``other`` (100)
    ``INFERSIGHT_QUEUE_SIZE``                 request records buffered for the background worker (20000)
    ``INFERSIGHT_FLUSH_INTERVAL``             seconds between background flushes (0.1)
    ``INFERSIGHT_SHUTDOWN_TIMEOUT``           seconds shutdown may spend flushing (3)
    ``INFERSIGHT_STAGE_CPU_TIME``             thread CPU time of each stage beside its wall time (true)
    ``INFERSIGHT_GIL_PROBE``                  a thread that measures how late it gets the GIL (true)
    ``INFERSIGHT_GPU``                        ``auto`` (default), ``on`` or ``off``
    ``INFERSIGHT_GPU_INTERVAL``               GPU sampler period in seconds (1.0)
    ``INFERSIGHT_GPU_SLOW_INTERVAL``          seconds between reads of the slow GPU set: power,
                                              temperature, clocks, ECC, processes (10)
    ``INFERSIGHT_GPU_SPAN_SNAPSHOTS``         GPM snapshot at model-stage boundaries (false)
    ``INFERSIGHT_GPU_HOURLY_COST``            price of a GPU-hour: ``2.5``, or by GPU name,
                                              ``H100=4.1,A10G=1.2,*=2`` (unset: no cost metrics)
    ``INFERSIGHT_CUDA_EVENTS``                time model stages with CUDA events (true)
    ``INFERSIGHT_NVTX``                       NVTX ranges around stages (false)
    ``INFERSIGHT_DRIFT``                      run the drift monitor (false)
    ``INFERSIGHT_DRIFT_INTERVAL``             seconds between drift runs (60)
    ``INFERSIGHT_DRIFT_WINDOW``               samples per drift window (5000)
    ``INFERSIGHT_DRIFT_SAMPLE_RATE``          share of requests captured for drift (1.0)
    ``INFERSIGHT_DRIFT_REFERENCE_SIZE``       first N samples become the reference (1000)
    ``INFERSIGHT_DRIFT_DIR``                  where references and reports are kept
    ``INFERSIGHT_DRIFT_THRESHOLD``            share of drifted features that flags drift (0.5)
    ========================================  ==================================================
    """

    service: str = "inference-server"
    models: Mapping[str, ModelConfig] = field(default_factory=dict)
    traces: bool = True
    traces_keep_ratio: float = 1.0
    traces_keep_slower_than_s: float = 0.5
    overhead_budget: float = 0.0  # share of process CPU for infersight's threads; 0: no budget
    traces_exporter: str = "otlp"  # comma-separated, as OTEL_TRACES_EXPORTER
    sdk_disabled: bool = False
    otlp_protocol: str = "grpc"
    otlp_encoder: str = "fast"
    metrics: bool = True
    metrics_exporter: str = "prometheus"  # comma-separated: prometheus, otlp
    # OTel's default is 60 s; 15 s keeps the collector's copy as fresh as a usual scrape.
    metrics_export_interval_s: float = 15.0
    otlp_metrics_protocol: str = "grpc"
    metrics_port: int = 9464
    metrics_addr: str = "0.0.0.0"
    metrics_path: str = "/metrics"
    exemplars: bool = True
    server_timing: bool = True
    max_label_values: int = 100
    queue_size: int = 20000
    # 1 s saved CPU in a busy server (server_load.py's infersight-flush1) but added ~16 MiB of
    # RSS (memory.py), past the 30 MB budget: docs/worker.md.
    flush_interval_s: float = 0.1
    shutdown_timeout_s: float = 3.0
    # Two thread_time_ns() calls per stage: benchmarks/stage_cpu.py measures them.
    stage_cpu_time: bool = True
    # 200 short wake-ups a second (5 ms sleeps): benchmarks/stage_cpu.py measures the cost.
    gil_probe: bool = True
    gpu: str = "auto"
    gpu_interval_s: float = 1.0
    # Each NVML query costs ~0.2 ms of CPU on a GSP GPU: what changes slowly is read less often.
    gpu_slow_interval_s: float = 10.0
    # Off by default: two NVML calls per model stage on the request path (41-51 us each on an H200).
    gpu_span_snapshots: bool = False
    # Price per GPU-hour by GPU-name pattern ("*": any GPU); a number means {"*": number}.
    gpu_hourly_cost: Mapping[str, float] = field(default_factory=dict)
    cuda_events: bool = True
    nvtx: bool = False
    drift: bool = False
    drift_interval_s: float = 60.0
    drift_window: int = 5000
    drift_sample_rate: float = 1.0
    drift_reference_size: int = 1000
    drift_dir: str = ""
    drift_threshold: float = 0.5

    def __post_init__(self) -> None:
        models = {}
        for name, model in dict(self.models).items():
            if not isinstance(name, str) or not name:
                raise ConfigError("models", f"model names must be non-empty strings, got {name!r}")
            models[name] = _model_config(name, model)
        object.__setattr__(self, "models", models)
        _check_endpoints(models)
        object.__setattr__(self, "gpu_hourly_cost", _hourly_costs(self.gpu_hourly_cost))
        object.__setattr__(self, "traces_exporter", _exporter_list(self.traces_exporter))
        object.__setattr__(self, "metrics_exporter", _metrics_exporter_list(self.metrics_exporter))
        _check_choice("otlp_metrics_protocol", self.otlp_metrics_protocol, _OTLP_PROTOCOLS)
        _check_choice("otlp_protocol", self.otlp_protocol, _OTLP_PROTOCOLS)
        _check_choice("otlp_encoder", self.otlp_encoder, _OTLP_ENCODERS)
        _check_choice("gpu", self.gpu, _GPU_MODES)
        _check_range("metrics_port", self.metrics_port, 0, 65535)
        _check_range("max_label_values", self.max_label_values, 1, 100_000)
        _check_range("queue_size", self.queue_size, 1, 10_000_000)
        _check_range("drift_window", self.drift_window, 2, 10_000_000)
        _check_range("drift_reference_size", self.drift_reference_size, 2, 10_000_000)
        positive = ("flush_interval_s", "metrics_export_interval_s", "gpu_interval_s", "gpu_slow_interval_s")
        for name in (*positive, "drift_interval_s"):
            _check_positive(name, getattr(self, name))
        _check_range("shutdown_timeout_s", self.shutdown_timeout_s, 0, 300)
        _check_range("drift_sample_rate", self.drift_sample_rate, 0, 1)
        _check_range("traces_keep_ratio", self.traces_keep_ratio, 0, 1)
        _check_positive("traces_keep_slower_than_s", self.traces_keep_slower_than_s)
        _check_range("overhead_budget", self.overhead_budget, 0, 1)
        _check_range("drift_threshold", self.drift_threshold, 0, 1)
        if self.metrics_path and not self.metrics_path.startswith("/"):
            raise ConfigError("metrics_path", f"must start with '/', got {self.metrics_path!r}")
        if not self.service:
            raise ConfigError("service", "must not be empty")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        """Build a config from ``environ`` (default ``os.environ``); keyword arguments win."""
        env = os.environ if environ is None else environ
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise ConfigError(sorted(unknown)[0], f"unknown setting; known: {', '.join(sorted(known))}")
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}  # setting -> the variable its value came from
        for name, (var, parse) in _ENV.items():
            raw = env.get(var)
            # Empty means unset (the OTel convention), except where empty is a documented value.
            if raw is None or (raw.strip() == "" and name not in _EMPTY_IS_A_VALUE):
                continue
            sources[name] = var
            try:
                values[name] = parse(raw.strip())
            except ConfigError:
                raise
            except (ValueError, TypeError, RecursionError) as exc:  # RecursionError: deeply nested JSON
                raise ConfigError(name, f"{raw!r} is not valid: {exc}", var) from None
        protocol_var = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
        if env.get(protocol_var, "").strip():
            values["otlp_protocol"] = env[protocol_var].strip()
            sources["otlp_protocol"] = protocol_var
        protocol_var = "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"
        if env.get(protocol_var, "").strip():
            values["otlp_metrics_protocol"] = env[protocol_var].strip()
            sources["otlp_metrics_protocol"] = protocol_var
        values.update(overrides)
        try:
            config = cls(**values)
        except ConfigError as exc:
            # Name the env var the bad value came from, when it did ("models.m.slo_p99_seconds"
            # came from INFERSIGHT_MODELS).
            setting = exc.setting.split(".", 1)[0]
            if exc.source is None and setting in sources and setting not in overrides:
                raise ConfigError(exc.setting, str(exc).split(": ", 2)[-1], sources[setting]) from None
            raise
        if config.spans_on and "otlp" in config.trace_exporters:
            try:
                _otlp_settings.check(env, config.otlp_protocol)  # the exporter's own: headers, TLS files
            except _otlp_settings.Problem as problem:
                raise ConfigError(problem.setting, problem.message, problem.var) from None
        if config.pushes_metrics:
            try:
                _otlp_settings.check(env, config.otlp_metrics_protocol, "METRICS")
            except _otlp_settings.Problem as problem:
                raise ConfigError(problem.setting, problem.message, problem.var) from None
        return config

    def with_overrides(self, **overrides: Any) -> Config:
        return replace(self, **overrides)

    @property
    def trace_exporters(self) -> tuple[str, ...]:
        """The exporters spans go to (empty for ``none``)."""
        return tuple(n for n in self.traces_exporter.split(",") if n != "none")

    @property
    def serves_metrics(self) -> bool:
        """Metrics are served for scraping (a ``/metrics`` route or the metrics port)."""
        return self.metrics and "prometheus" in self.metrics_exporter.split(",")

    @property
    def pushes_metrics(self) -> bool:
        """Metrics are pushed over OTLP to the collector."""
        return self.metrics and "otlp" in self.metrics_exporter.split(",")

    @property
    def spans_on(self) -> bool:
        return self.traces and not self.sdk_disabled

    def model(self, name: str) -> ModelConfig | None:
        return self.models.get(name)

    def model_for_endpoint(self, endpoint: str) -> str | None:
        """The model whose ``endpoints`` name this endpoint (exactly, else the longest prefix)."""
        exact, prefixes = self._endpoint_index
        key = _endpoint_key(endpoint)
        name = exact.get(key)
        if name is None:
            for prefix, model in prefixes:
                if key.startswith(prefix):
                    return model
        return name

    @functools.cached_property
    def _endpoint_index(self) -> tuple[dict[str, str], list[tuple[str, str]]]:
        exact: dict[str, str] = {}
        prefixes: list[tuple[str, str]] = []
        for name, model in self.models.items():
            for endpoint in model.endpoints:
                key = _endpoint_key(endpoint)
                if key.endswith("*"):
                    prefixes.append((key[:-1], name))
                else:
                    exact[key] = name
        prefixes.sort(key=lambda item: -len(item[0]))
        return exact, prefixes


def _endpoint_key(endpoint: str) -> str:
    """gRPC names a method ``/pkg.Service/Method`` on the wire and ``pkg.Service/Method`` in our
    records: both match."""
    return endpoint.strip().lstrip("/")


def _check_endpoints(models: Mapping[str, ModelConfig]) -> None:
    owner: dict[str, str] = {}
    for name, model in models.items():
        for endpoint in model.endpoints:
            key = _endpoint_key(endpoint)
            other = owner.setdefault(key, name)
            if other != name:
                raise ConfigError(f"models.{name}.endpoints", f"{endpoint!r} is already mapped to model {other!r}")


def _model_config(name: str, value: Any) -> ModelConfig:
    if isinstance(value, ModelConfig):
        return value
    if not isinstance(value, Mapping):
        raise ConfigError(f"models.{name}", f"must be a mapping with {'/'.join(_MODEL_KEYS)}, got {value!r}")
    extra = set(value) - set(_MODEL_KEYS)
    if extra:
        raise ConfigError(f"models.{name}", f"unknown keys {sorted(extra)}; allowed: {', '.join(_MODEL_KEYS)}")
    try:
        version = value.get("version")
        return ModelConfig(
            version="" if version is None else str(version),  # JSON null: no version
            slo_p99_seconds=value.get("slo_p99_seconds"),
            endpoints=value.get("endpoints", ()),
        )
    except ConfigError as exc:
        raise ConfigError(f"models.{name}.{exc.setting}", str(exc).split(": ", 2)[-1]) from None


def _hourly_costs(value: Any) -> dict[str, float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = {"*": value}
    if not isinstance(value, Mapping):
        raise ConfigError("gpu_hourly_cost", f"must be a number or a mapping of GPU name to price, got {value!r}")
    out: dict[str, float] = {}
    for pattern, price in value.items():
        if not isinstance(pattern, str) or not pattern.strip():
            raise ConfigError("gpu_hourly_cost", f"GPU name patterns must be non-empty strings, got {pattern!r}")
        if isinstance(price, bool) or not isinstance(price, (int, float)) or not math.isfinite(price) or price < 0:
            raise ConfigError("gpu_hourly_cost", f"price for {pattern!r} must be a number >= 0, got {price!r}")
        out[pattern.strip()] = float(price)
    return out


def _parse_hourly_cost(raw: str) -> dict[str, float]:
    """``2.5`` (any GPU) or ``H100=4.1,A10G=1.2,*=2`` (by a part of the NVML name)."""
    if "=" not in raw:
        return {"*": _parse_float(raw)}
    out: dict[str, float] = {}
    for item in raw.split(","):
        pattern, sep, price = item.partition("=")
        if not sep or not pattern.strip():
            raise ValueError(f"expected NAME=PRICE, got {item.strip()!r}")
        out[pattern.strip()] = _parse_float(price.strip())
    return out


def _parse_bool(raw: str) -> bool:
    low = raw.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError("expected one of true/false/1/0/yes/no/on/off")


def _parse_models(raw: str) -> dict[str, Any]:
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError("expected a JSON object {model: {version, slo_p99_seconds, endpoints}}")
    return value


def _parse_float(raw: str) -> float:
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def _exporter_list(value: str) -> str:
    names = list(dict.fromkeys(n.strip().lower() for n in str(value).split(",") if n.strip()))
    if not names:
        raise ConfigError("traces_exporter", f"{value!r} names no exporter; use none for no spans")
    for name in names:
        _check_choice("traces_exporter", name, _TRACES_EXPORTERS)
    if "none" in names and len(names) > 1:
        raise ConfigError("traces_exporter", f"{value!r}: none can't be combined with other exporters")
    return ",".join(names)


def _metrics_exporter_list(value: str) -> str:
    names = list(dict.fromkeys(n.strip().lower() for n in str(value).split(",") if n.strip()))
    if not names:
        raise ConfigError("metrics_exporter", f"{value!r} names no exporter; INFERSIGHT_METRICS=false turns them off")
    for name in names:
        _check_choice("metrics_exporter", name, _METRICS_EXPORTERS)
    return ",".join(names)


def _parse_millis(raw: str) -> float:
    """OTel's interval variables are in milliseconds; the setting is in seconds."""
    millis = _parse_float(raw)
    if 0 < millis < 1e-300:  # it would read as 0 seconds: say so, not "got 0.0"
        raise ValueError(f"{millis!r} ms is too small to be an interval")
    return millis / 1000


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(name, f"{value!r} is not one of {', '.join(choices)}")


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ConfigError(name, f"must be a number in [{low}, {high}], got {value!r}")


def _check_positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(name, f"must be a positive number, got {value!r}")


# INFERSIGHT_METRICS_PATH="" turns the Flask route off (README), so empty is not "unset" there.
_EMPTY_IS_A_VALUE = frozenset({"metrics_path"})

_ENV: dict[str, tuple[str, Any]] = {
    "service": ("OTEL_SERVICE_NAME", str),
    "traces_exporter": ("OTEL_TRACES_EXPORTER", lambda s: s.lower()),
    "sdk_disabled": ("OTEL_SDK_DISABLED", _parse_bool),
    "otlp_protocol": ("OTEL_EXPORTER_OTLP_PROTOCOL", str),
    "otlp_encoder": ("INFERSIGHT_OTLP_ENCODER", lambda s: s.strip().lower()),
    "models": ("INFERSIGHT_MODELS", _parse_models),
    "traces": ("INFERSIGHT_TRACES", _parse_bool),
    "traces_keep_ratio": ("INFERSIGHT_TRACES_KEEP_RATIO", _parse_float),
    "traces_keep_slower_than_s": ("INFERSIGHT_TRACES_KEEP_SLOWER_THAN", _parse_float),
    "overhead_budget": ("INFERSIGHT_OVERHEAD_BUDGET", _parse_float),
    "metrics": ("INFERSIGHT_METRICS", _parse_bool),
    "metrics_exporter": ("INFERSIGHT_METRICS_EXPORTER", str),
    "metrics_export_interval_s": ("OTEL_METRIC_EXPORT_INTERVAL", _parse_millis),
    "otlp_metrics_protocol": ("OTEL_EXPORTER_OTLP_PROTOCOL", str),
    "metrics_port": ("INFERSIGHT_METRICS_PORT", int),
    "metrics_addr": ("INFERSIGHT_METRICS_ADDR", str),
    "metrics_path": ("INFERSIGHT_METRICS_PATH", str),
    "exemplars": ("INFERSIGHT_EXEMPLARS", _parse_bool),
    "server_timing": ("INFERSIGHT_SERVER_TIMING", _parse_bool),
    "max_label_values": ("INFERSIGHT_MAX_LABEL_VALUES", int),
    "queue_size": ("INFERSIGHT_QUEUE_SIZE", int),
    "flush_interval_s": ("INFERSIGHT_FLUSH_INTERVAL", _parse_float),
    "shutdown_timeout_s": ("INFERSIGHT_SHUTDOWN_TIMEOUT", _parse_float),
    "stage_cpu_time": ("INFERSIGHT_STAGE_CPU_TIME", _parse_bool),
    "gil_probe": ("INFERSIGHT_GIL_PROBE", _parse_bool),
    "gpu": ("INFERSIGHT_GPU", lambda s: s.lower()),
    "gpu_interval_s": ("INFERSIGHT_GPU_INTERVAL", _parse_float),
    "gpu_slow_interval_s": ("INFERSIGHT_GPU_SLOW_INTERVAL", _parse_float),
    "gpu_span_snapshots": ("INFERSIGHT_GPU_SPAN_SNAPSHOTS", _parse_bool),
    "gpu_hourly_cost": ("INFERSIGHT_GPU_HOURLY_COST", _parse_hourly_cost),
    "cuda_events": ("INFERSIGHT_CUDA_EVENTS", _parse_bool),
    "nvtx": ("INFERSIGHT_NVTX", _parse_bool),
    "drift": ("INFERSIGHT_DRIFT", _parse_bool),
    "drift_interval_s": ("INFERSIGHT_DRIFT_INTERVAL", _parse_float),
    "drift_window": ("INFERSIGHT_DRIFT_WINDOW", int),
    "drift_sample_rate": ("INFERSIGHT_DRIFT_SAMPLE_RATE", _parse_float),
    "drift_reference_size": ("INFERSIGHT_DRIFT_REFERENCE_SIZE", int),
    "drift_dir": ("INFERSIGHT_DRIFT_DIR", str),
    "drift_threshold": ("INFERSIGHT_DRIFT_THRESHOLD", _parse_float),
}
