"""``infersight top``: a live terminal table of latency per model and stage, RPS, errors, SLO,
each model's share of its GPU with its GPU-seconds and cost per 1000 requests, GPU
utilization, the outgoing calls of an instrumented client (their P99, the network's part of it,
and which layer holds most of it) and firing alerts.

Two sources, with the same table:

* ``--prometheus URL``: PromQL over a recent window (``--window``), alerts from
  ``/api/v1/alerts``;
* ``--metrics-url URL``: a server's ``/metrics`` read directly, twice, rates and quantiles
  computed from the difference (no Prometheus needed).

Fetching (``PrometheusSource``, ``MetricsSource``) is apart from drawing (``render``), so each
can be tested alone. Plain ANSI: no curses.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import traceview
from .conventions import METRIC, OUTCOME_ERROR, OUTSIDE_STAGES, STAGES, TRITON

__all__ = [
    "Alert",
    "Call",
    "History",
    "Means",
    "MetricsSource",
    "PrometheusSource",
    "Row",
    "Snapshot",
    "bucket_quantile",
    "diagnose",
    "main",
    "render",
    "sparkline",
]

QUANTILES = (0.5, 0.95, 0.99)
_REQ = METRIC.REQUEST_DURATION.name
_STAGE = METRIC.STAGE_DURATION.name
_SLO = METRIC.MODEL_SLO_P99.name
_GPU_UTIL = METRIC.GPU_UTILIZATION.name
_GPU_SECONDS = METRIC.MODEL_GPU_SECONDS.sample_name
_GPU_PRICE = METRIC.GPU_HOURLY_COST.name
_CLIENT = METRIC.CLIENT_REQUEST_DURATION.name
_NETWORK = METRIC.CLIENT_NETWORK.name
NETWORK_SHARE = 0.5  # the network holds more than this share of a call's P99: top says "network"

NAN = float("nan")


@dataclass
class Row:
    """One line of the table. Latencies in seconds; NaN when nothing was observed."""

    p50: float = NAN
    p95: float = NAN
    p99: float = NAN
    rps: float = 0.0
    error_ratio: float = NAN
    slo_p99: float | None = None
    gpu_share: float = NAN  # of the GPU time all models took on its GPU (the largest, on several)
    gpu_seconds_per_1k: float = NAN
    cost_per_1k: float = NAN  # at the configured price per GPU-hour

    def set_quantile(self, q: float, value: float) -> None:
        setattr(self, {0.5: "p50", 0.95: "p95", 0.99: "p99"}[q], value)

    @property
    def over_slo(self) -> bool:
        return self.slo_p99 is not None and not math.isnan(self.p99) and self.p99 > self.slo_p99


@dataclass
class Call:
    """Outgoing calls to one target and endpoint, from an instrumented client."""

    p50: float = NAN
    p99: float = NAN
    # The client's time minus the server's Server-Timing total; for a Triton model, the
    # client's P99 minus Triton's own P99 for it.
    network_p99: float = NAN
    rps: float = 0.0

    @property
    def layer(self) -> str:
        """Which layer holds most of the P99: "network" or "server" ("" when unknown)."""
        if math.isnan(self.p99) or math.isnan(self.network_p99) or self.p99 <= 0:
            return ""
        return "network" if self.network_p99 > NETWORK_SHARE * self.p99 else "server"


@dataclass
class Alert:
    name: str
    state: str  # "firing" or "pending"
    labels: dict[str, str]
    active_at: str = ""


@dataclass
class Snapshot:
    source: str
    window: str
    models: dict[str, Row] = field(default_factory=dict)
    stages: dict[tuple[str, str], Row] = field(default_factory=dict)
    gpus: dict[str, float] = field(default_factory=dict)  # "0 (name)" -> utilization 0-1
    calls: dict[tuple[str, str], Call] = field(default_factory=dict)  # (target, endpoint) -> outgoing calls
    alerts: list[Alert] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # what could not be fetched
    notes: dict[Any, str] = field(default_factory=dict)  # model or (model, stage) -> "waiting", "payload x4.0"
    gil_p99: float = NAN  # the GIL probe's P99 lateness (seconds), over all processes read
    taken_at: float = field(default_factory=time.time)


class Source(Protocol):
    def snapshot(self) -> Snapshot: ...


SPARK = "\u2581\u2582\u2583\u2584\u2585\u2586\u2587\u2588"  # lower one eighth block .. full block
SPARK_LEN = 12  # frames a sparkline shows


def sparkline(values: Sequence[float], width: int = SPARK_LEN) -> str:
    """The last ``width`` values as block characters, scaled from 0 to their largest; a gap
    where a value is NaN (nothing observed in that frame)."""
    shown = list(values)[-width:]
    finite = [v for v in shown if not math.isnan(v)]
    top = max(finite, default=0.0)
    out = []
    for v in shown:
        if math.isnan(v):
            out.append(" ")
        elif top <= 0:
            out.append(SPARK[0])
        else:
            out.append(SPARK[min(len(SPARK) - 1, int(v / top * (len(SPARK) - 1) + 0.5))])
    return "".join(out)


class History:
    """P99 per model and per (model, stage), one value per frame, the last ``size`` frames."""

    def __init__(self, size: int = SPARK_LEN) -> None:
        self.size = size
        self._series: dict[Any, list[float]] = {}
        self.frames = 0

    def add(self, snap: Snapshot) -> None:
        values: dict[Any, float] = {m: r.p99 for m, r in snap.models.items()}
        values.update({k: r.p99 for k, r in snap.stages.items()})
        for key in set(self._series) | set(values):
            # A key first seen now gets NaN for the frames before it.
            series = self._series.setdefault(key, [NAN] * min(self.frames, self.size))
            series.append(values.get(key, NAN))
            del series[: -self.size]
        self.frames += 1

    def series(self, key: Any) -> list[float]:
        return list(self._series.get(key, []))


def bucket_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float:
    """The ``q`` quantile of a cumulative histogram ``[(le, count), ...]``, interpolated inside
    the bucket like PromQL's ``histogram_quantile``. NaN when the histogram is empty."""
    ordered = sorted(buckets)
    if not ordered or ordered[-1][0] != math.inf:
        return NAN
    total = ordered[-1][1]
    if total <= 0:
        return NAN
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for le, count in ordered:
        if count >= rank:
            if le == math.inf:
                # Past the last finite bound: that bound is the best we can say.
                return prev_le
            if count == prev_count:
                return le
            return prev_le + (le - prev_le) * (rank - prev_count) / (count - prev_count)
        prev_le, prev_count = le, count
    return prev_le


# ---- Prometheus --------------------------------------------------------------------------


def _http_json(url: str, timeout_s: float) -> Any:
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        return json.load(resp)


class PrometheusSource:
    """PromQL over ``window`` against a Prometheus server."""

    def __init__(self, url: str, window: str = "1m", timeout_s: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.window = window
        self.timeout_s = timeout_s

    def query(self, expr: str) -> list[tuple[dict[str, str], float]]:
        """Instant query; one ``(labels, value)`` per series."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        body = _http_json(url, self.timeout_s)
        if body.get("status") != "success":
            raise RuntimeError(f"query failed: {body.get('error', body)}")
        return [(r["metric"], float(r["value"][1])) for r in body["data"]["result"]]

    def expressions(self) -> dict[str, str]:
        """Every query the table is built from, by purpose (exposed for tests and docs)."""
        w = self.window
        exprs: dict[str, str] = {}
        for q in QUANTILES:
            exprs[f"model_p{q}"] = f"histogram_quantile({q}, sum by (model, le) (rate({_REQ}_bucket[{w}])))"
            exprs[f"stage_p{q}"] = f"histogram_quantile({q}, sum by (model, stage, le) (rate({_STAGE}_bucket[{w}])))"
        exprs["model_rps"] = f"sum by (model) (rate({_REQ}_count[{w}]))"
        exprs["model_errors"] = f'sum by (model) (rate({_REQ}_count{{outcome="{OUTCOME_ERROR}"}}[{w}]))'
        exprs["stage_rps"] = f"sum by (model, stage) (rate({_STAGE}_count[{w}]))"
        by_call = "target, endpoint"
        exprs["call_p0.5"] = f"histogram_quantile(0.5, sum by ({by_call}, le) (rate({_CLIENT}_bucket[{w}])))"
        exprs["call_p0.99"] = f"histogram_quantile(0.99, sum by ({by_call}, le) (rate({_CLIENT}_bucket[{w}])))"
        exprs["call_network_p0.99"] = f"histogram_quantile(0.99, sum by ({by_call}, le) (rate({_NETWORK}_bucket[{w}])))"
        exprs["call_rps"] = f"sum by ({by_call}) (rate({_CLIENT}_count[{w}]))"
        for key, triton in _triton_expressions(w).items():
            exprs[key] = f"{exprs[key]}\nor\n{triton}"
        exprs["slo"] = f"max by (model) ({_SLO})"
        exprs["gpu"] = f"max by (gpu, name) ({_GPU_UTIL})"
        per_model = f"sum by (model, uuid) (rate({_GPU_SECONDS}[{w}]))"
        requests = f"sum by (model) (rate({_REQ}_count[{w}]))"
        exprs["gpu_share"] = f"max by (model) ({per_model} / on (uuid) group_left sum by (uuid) ({per_model}))"
        exprs["gpu_seconds_per_1k"] = f"1000 * sum by (model) ({per_model}) / {requests}"
        exprs["gpu_cost_per_1k"] = (
            f"1000 * sum by (model) ({per_model} * on (uuid) group_left max by (uuid) ({_GPU_PRICE} / 3600))"
            f" / {requests}"
        )
        return exprs

    def alerts(self) -> list[Alert]:
        body = _http_json(f"{self.url}/api/v1/alerts", self.timeout_s)
        out = []
        for a in body.get("data", {}).get("alerts", []):
            labels = dict(a.get("labels", {}))
            out.append(Alert(labels.pop("alertname", "?"), a.get("state", "?"), labels, a.get("activeAt", "")))
        return out

    def snapshot(self) -> Snapshot:
        snap = Snapshot(source=f"prometheus {self.url}", window=self.window)
        exprs = self.expressions()
        results: dict[str, list[tuple[dict[str, str], float]]] = {}
        unreachable = False
        for key, expr in exprs.items():
            results[key] = []
            if unreachable:
                continue
            try:
                results[key] = self.query(expr)
            except urllib.error.HTTPError as exc:  # an answer (a query it refused): the others may pass
                snap.problems.append(f"{key}: {exc}")
            except OSError as exc:  # refused or timed out: the other queries would be too
                snap.problems.append(f"prometheus {self.url} unreachable: {exc}")
                unreachable = True
            except Exception as exc:
                snap.problems.append(f"{key}: {exc}")
        for labels, value in results["model_rps"]:
            snap.models.setdefault(labels.get("model", "?"), Row()).rps = value
        for labels, value in results["model_errors"]:
            row = snap.models.setdefault(labels.get("model", "?"), Row())
            row.error_ratio = value / row.rps if row.rps > 0 else NAN
        for row in snap.models.values():
            if math.isnan(row.error_ratio) and row.rps > 0:
                row.error_ratio = 0.0
        for labels, value in results["stage_rps"]:
            snap.stages.setdefault((labels.get("model", "?"), labels.get("stage", "?")), Row()).rps = value
        for q in QUANTILES:
            for labels, value in results[f"model_p{q}"]:
                snap.models.setdefault(labels.get("model", "?"), Row()).set_quantile(q, value)
            for labels, value in results[f"stage_p{q}"]:
                pair = (labels.get("model", "?"), labels.get("stage", "?"))
                snap.stages.setdefault(pair, Row()).set_quantile(q, value)
        for labels, value in results["slo"]:
            snap.models.setdefault(labels.get("model", "?"), Row()).slo_p99 = value
        for key, attr in (("call_rps", "rps"), ("call_p0.5", "p50"), ("call_p0.99", "p99")):
            for labels, value in results[key]:
                call = snap.calls.setdefault((labels.get("target", "?"), labels.get("endpoint", "?")), Call())
                setattr(call, attr, value)
        for labels, value in results["call_network_p0.99"]:
            known = snap.calls.get((labels.get("target", "?"), labels.get("endpoint", "?")))
            if known is not None:  # a call whose network time is known has a client time too
                known.network_p99 = value
        for labels, value in results["gpu"]:
            snap.gpus[f"{labels.get('gpu', '?')} ({labels.get('name', '')})"] = value
        for key, attr in (
            ("gpu_share", "gpu_share"),
            ("gpu_seconds_per_1k", "gpu_seconds_per_1k"),
            ("gpu_cost_per_1k", "cost_per_1k"),
        ):
            for labels, value in results[key]:
                setattr(snap.models.setdefault(labels.get("model", "?"), Row()), attr, value)
        if not unreachable:
            _prometheus_diagnose(self, snap)
            try:
                snap.alerts = self.alerts()
            except Exception as exc:
                snap.problems.append(f"alerts: {exc}")
        return snap


def _triton_expressions(w: str) -> dict[str, str]:
    """Triton's models (``TRITON``): its counters over the window; its quantiles from its summaries
    (``summary_latencies=true``), a sliding window of Triton's, the slowest replica's."""
    requests = f'{{__name__=~"{TRITON.SUCCESS}|{TRITON.FAILURE}"}}'
    success = f"sum by (model) (rate({TRITON.SUCCESS}[{w}]))"
    exprs = {
        "model_rps": f"sum by (model) (rate({requests}[{w}]))",
        "model_errors": f"sum by (model) (rate({TRITON.FAILURE}[{w}]))",
    }
    stage_rps: list[str] = []
    quantiles: dict[float, list[str]] = {q: [] for q in QUANTILES}
    for stage, summary in TRITON.STAGE_SUMMARY_US.items():
        stage_rps.append(f'label_replace({success}, "stage", "{stage}", "", "")')
        for q in QUANTILES:
            value = f'max by (model) ({summary}{{quantile="{q}"}}) / 1e6'
            quantiles[q].append(f'label_replace({value}, "stage", "{stage}", "", "")')
    exprs["stage_rps"] = " or ".join(stage_rps)
    for q in QUANTILES:
        exprs[f"model_p{q}"] = f'max by (model) ({TRITON.REQUEST_SUMMARY_US}{{quantile="{q}"}}) / 1e6'
        exprs[f"stage_p{q}"] = " or ".join(quantiles[q])
    # Calls to a Triton model (no Server-Timing): the client's latency against Triton's own for
    # the model, which the call's endpoint names: the smaller of the P99s' gap and the means'
    # (as prometheus-rules/network.rules.yaml does, which says why).
    re = TRITON.CLIENT_ENDPOINT_MODEL_RE
    by = "target, endpoint, model"

    def client(suffix: str) -> str:
        series = f'rate({_CLIENT}_{suffix}{{endpoint=~"{re}"}}[{w}])'
        labels = f"{by}, le" if suffix == "bucket" else by
        return f'sum by ({labels}) (label_replace({series}, "model", "$1$2", "endpoint", "{re}"))'

    triton_p99 = f'max by (model) ({TRITON.REQUEST_SUMMARY_US}{{quantile="0.99"}}) / 1e6'
    triton_mean = f"sum by (model) (rate({TRITON.REQUEST_DURATION_US}[{w}])) / {success} / 1e6"
    p99_gap = f"(histogram_quantile(0.99, {client('bucket')}) - on (model) group_left {triton_p99})"
    mean_gap = f"({client('sum')} / {client('count')} - on (model) group_left max by (model) ({triton_mean}))"
    exprs["call_network_p0.99"] = f"max by (target, endpoint) (clamp_min({p99_gap} < {mean_gap} or {mean_gap}, 0))"
    return exprs


# ---- /metrics, read directly -------------------------------------------------------------

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse_metrics(text: str) -> Samples:
    """Prometheus text exposition -> ``{(sample name, sorted labels): value}``."""
    from prometheus_client.parser import text_string_to_metric_families

    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return out


def _delta(new: Samples, old: Samples | None) -> Samples:
    if old is None:
        return dict(new)
    out: Samples = {}
    for key, value in new.items():
        before = old.get(key, 0.0)
        out[key] = value - before if value >= before else value  # a reset: the process restarted
    return out


def _sum_by(
    samples: Samples, name: str, by: Iterable[str], where: dict[str, str] | None = None
) -> dict[tuple[str, ...], float]:
    keys = tuple(by)
    out: dict[tuple[str, ...], float] = {}
    for (sample, labels), value in samples.items():
        if sample != name:
            continue
        d = dict(labels)
        if where and any(d.get(k) != v for k, v in where.items()):
            continue
        group = tuple(d.get(k, "") for k in keys)
        out[group] = out.get(group, 0.0) + value
    return out


def _quantiles(samples: Samples, bucket_name: str, by: tuple[str, ...]) -> dict[tuple[str, ...], list[float]]:
    grouped = _sum_by(samples, bucket_name, (*by, "le"))
    per: dict[tuple[str, ...], list[tuple[float, float]]] = {}
    for key, count in grouped.items():
        per.setdefault(key[:-1], []).append((float(key[-1]), count))
    return {k: [bucket_quantile(q, b) for q in QUANTILES] for k, b in per.items()}


class MetricsSource:
    """A server's ``/metrics``, read twice: rates and quantiles over the time between reads."""

    def __init__(self, url: str, interval_s: float = 2.0, timeout_s: float = 5.0) -> None:
        self.url = url
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._last: tuple[float, Samples] | None = None
        self._first: Means | None = None

    def scrape(self) -> Samples:
        req = urllib.request.Request(self.url, headers={"Accept": "text/plain;version=0.0.4"})
        with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
            return parse_metrics(resp.read().decode("utf-8"))

    def snapshot(self) -> Snapshot:
        if self._last is None:
            self._last = (time.monotonic(), self.scrape())
            time.sleep(self.interval_s)
        now, samples = time.monotonic(), self.scrape()
        then, before = self._last
        self._last = (now, samples)
        snap = build_snapshot(samples, before, now - then, f"metrics {self.url}")
        means = means_from_samples(samples, before, snap)
        self._first = self._first or means  # the baseline: the first window top read
        diagnose(snap, means, self._first)
        return snap


def build_snapshot(samples: Samples, before: Samples | None, elapsed_s: float, source: str) -> Snapshot:
    """The table from two reads of ``/metrics`` taken ``elapsed_s`` apart."""
    snap = Snapshot(source=source, window=f"{elapsed_s:.1f}s")
    d = _delta(samples, before)
    per_s = 1.0 / elapsed_s if elapsed_s > 0 else 0.0
    counts = _sum_by(d, f"{_REQ}_count", ("model",))
    errors = _sum_by(d, f"{_REQ}_count", ("model",), {"outcome": OUTCOME_ERROR})
    for (model,), count in counts.items():
        row = snap.models.setdefault(model, Row())
        row.rps = count * per_s
        row.error_ratio = errors.get((model,), 0.0) / count if count > 0 else NAN
    for (model,), qs in _quantiles(d, f"{_REQ}_bucket", ("model",)).items():
        row = snap.models.setdefault(model, Row())
        row.p50, row.p95, row.p99 = qs
    for (model, stage), count in _sum_by(d, f"{_STAGE}_count", ("model", "stage")).items():
        snap.stages.setdefault((model, stage), Row()).rps = count * per_s
    for (model, stage), qs in _quantiles(d, f"{_STAGE}_bucket", ("model", "stage")).items():
        row = snap.stages.setdefault((model, stage), Row())
        row.p50, row.p95, row.p99 = qs
    for (model,), value in _sum_by(samples, _SLO, ("model",)).items():
        snap.models.setdefault(model, Row()).slo_p99 = value
    for (gpu, name), value in _sum_by(samples, _GPU_UTIL, ("gpu", "name")).items():
        snap.gpus[f"{gpu} ({name})"] = value
    _gpu_use(snap, samples, d, counts)
    pair = ("target", "endpoint")
    for (target, endpoint), count in _sum_by(d, f"{_CLIENT}_count", pair).items():
        snap.calls.setdefault((target, endpoint), Call()).rps = count * per_s
    for (target, endpoint), qs in _quantiles(d, f"{_CLIENT}_bucket", pair).items():
        call = snap.calls.setdefault((target, endpoint), Call())
        call.p50, call.p99 = qs[0], qs[2]
    for (target, endpoint), qs in _quantiles(d, f"{_NETWORK}_bucket", pair).items():
        if (target, endpoint) in snap.calls:
            snap.calls[(target, endpoint)].network_p99 = qs[2]
    return snap


def _gpu_use(snap: Snapshot, samples: Samples, d: Samples, counts: dict[tuple[str, ...], float]) -> None:
    """Each model's share of its GPU, GPU-seconds and cost per 1000 requests, over the window."""
    seconds = _sum_by(d, _GPU_SECONDS, ("model", "uuid"))
    per_gpu: dict[str, float] = {}
    for (_, uuid), value in seconds.items():
        per_gpu[uuid] = per_gpu.get(uuid, 0.0) + value
    prices: dict[str, float] = {}
    for (sample, labels), value in samples.items():
        if sample == _GPU_PRICE:
            uuid = dict(labels).get("uuid", "")
            prices[uuid] = max(prices.get(uuid, 0.0), value)
    used: dict[str, float] = {}
    cost: dict[str, float] = {}
    for (model, uuid), value in seconds.items():
        row = snap.models.setdefault(model, Row())
        if per_gpu[uuid] > 0:
            share = value / per_gpu[uuid]
            row.gpu_share = share if math.isnan(row.gpu_share) else max(row.gpu_share, share)
        used[model] = used.get(model, 0.0) + value
        if uuid in prices:
            cost[model] = cost.get(model, 0.0) + value * prices[uuid] / 3600
    for model, value in used.items():
        count = counts.get((model,), 0.0)
        if count > 0:
            row = snap.models[model]
            row.gpu_seconds_per_1k = 1000 * value / count
            if model in cost:
                row.cost_per_1k = 1000 * cost[model] / count


class CombinedSource:
    """Numbers from one source, alerts from a Prometheus."""

    def __init__(self, numbers: Source, alerts: PrometheusSource) -> None:
        self.numbers, self.alerts_from = numbers, alerts

    def snapshot(self) -> Snapshot:
        snap = self.numbers.snapshot()
        try:
            snap.alerts = self.alerts_from.alerts()
        except Exception as exc:
            snap.problems.append(f"alerts: {exc}")
        return snap


# ---- Drawing -----------------------------------------------------------------------------

_RED, _YELLOW, _GREEN, _DIM, _BOLD, _RESET = "\x1b[31m", "\x1b[33m", "\x1b[32m", "\x1b[2m", "\x1b[1m", "\x1b[0m"
CLEAR = "\x1b[H\x1b[2J"


def _ms(seconds: float | None) -> str:
    if seconds is None or math.isnan(seconds):
        return "-"
    ms = seconds * 1000
    if ms >= 1000:
        return f"{seconds:.2f}s"
    return f"{ms:.1f}ms" if ms < 100 else f"{ms:.0f}ms"


def _pct(ratio: float) -> str:
    return "-" if math.isnan(ratio) else f"{ratio * 100:.1f}%"


def _num(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.3g}" if value < 1000 else f"{value:.0f}"


def _stage_order(stage: str) -> tuple[int, str]:
    return (STAGES.index(stage), "") if stage in STAGES else (len(STAGES), stage)


def _call_name(target: str, endpoint: str, width: int = 37) -> str:
    """``host:port/path`` for HTTP, ``host:port service/Method`` for gRPC; cut from the left when
    long, since the end (the route, or the model a Triton call names) tells calls apart."""
    where = f"{target}{endpoint}" if endpoint.startswith("/") else f"{target} {endpoint}"
    return where if len(where) <= width else "…" + where[-(width - 1) :]


def render(snap: Snapshot, color: bool = False, width: int = 100, history: History | None = None) -> str:
    """The table as text (ANSI colours when ``color``); with ``history``, a sparkline of each
    row's P99 over the last frames beside its P99."""

    def paint(text: str, code: str) -> str:
        return f"{code}{text}{_RESET}" if color else text

    clock = time.strftime("%H:%M:%S", time.localtime(snap.taken_at))
    lines = [paint(f"infersight top  {snap.source}  window {snap.window}", _BOLD) + f"  {clock}", ""]
    trend_w = SPARK_LEN + 2 if history is not None else 0

    def trend(key: Any) -> str:
        return f"  {sparkline(history.series(key)):<{SPARK_LEN}}" if history is not None else ""

    header = (
        f"{'MODEL / stage':<28}{'P50':>9}{'P95':>9}{'P99':>9}{'  P99 trend' if trend_w else '':<{trend_w}}"
        f"{'SLO P99':>9}  {'':<6}{'RPS':>8}{'ERR':>8}"
        f"{'GPU%':>7}{'GPU-s/1k':>10}{'COST/1k':>9}"
    )
    lines.append(paint(header, _BOLD))
    if not snap.models and not snap.stages:
        lines.append(paint("  (no data, see below)" if snap.problems else "  (no requests seen yet)", _DIM))
    for model in sorted(set(snap.models) | {m for m, _ in snap.stages}):
        row = snap.models.get(model, Row())
        model_stages = sorted((k for k in snap.stages if k[0] == model), key=lambda k: _stage_order(k[1]))
        if row.rps == 0 and math.isnan(row.p99) and row.slo_p99 is None and not model_stages:
            continue  # e.g. health checks: no model, no traffic in the window
        if row.slo_p99 is None:
            status = ""
        elif math.isnan(row.p99):
            status = paint(f"{'-':<6}", _DIM)
        elif row.over_slo:
            status = paint(f"{'OVER':<6}", _RED)
        else:
            status = paint(f"{'ok':<6}", _GREEN)
        p99 = _ms(row.p99)
        p99_cell = paint(f"{p99:>9}", _RED) if row.over_slo else f"{p99:>9}"
        err = _pct(row.error_ratio)
        err_cell = paint(f"{err:>8}", _RED) if not math.isnan(row.error_ratio) and row.error_ratio > 0 else f"{err:>8}"
        share = "-" if math.isnan(row.gpu_share) else f"{row.gpu_share * 100:.0f}%"
        lines.append(
            f"{model[:27]:<28}{_ms(row.p50):>9}{_ms(row.p95):>9}{p99_cell}{trend(model)}"
            f"{_ms(row.slo_p99):>9}  {status or ' ' * 6}{row.rps:>8.1f}{err_cell}"
            f"{share:>7}{_num(row.gpu_seconds_per_1k):>10}{_num(row.cost_per_1k):>9}" + _note(snap, model)
        )
        for m, stage in model_stages:
            st = snap.stages[(m, stage)]
            lines.append(
                paint(
                    f"  {stage[:25]:<26}{_ms(st.p50):>9}{_ms(st.p95):>9}{_ms(st.p99):>9}{trend((m, stage))}"
                    f"{'':>9}  {'':<6}{st.rps:>8.1f}"
                    + (f"{'':>34}{note}" if (note := _note(snap, (m, stage))) else ""),  # under the models' notes
                    _DIM,
                )
            )
    if not math.isnan(snap.gil_p99):
        lines.append("")
        lines.append(_gil_line(snap.gil_p99))
    calls = [(key, call) for key, call in sorted(snap.calls.items()) if call.rps > 0 or not math.isnan(call.p99)]
    if calls:
        lines.append("")
        lines.append(paint(f"{'OUTGOING CALLS':<40}{'P50':>9}{'P99':>9}{'NET P99':>9}{'RPS':>8}  MOST OF P99", _BOLD))
        for (target, endpoint), call in calls:
            where = _call_name(target, endpoint)
            layer = call.layer
            verdict = paint(layer, _RED) if layer == "network" else layer
            lines.append(
                f"  {where:<38}{_ms(call.p50):>9}{_ms(call.p99):>9}{_ms(call.network_p99):>9}"
                f"{call.rps:>8.1f}  {verdict}"
            )
    if snap.gpus:
        lines.append("")
        busy = (f"{name}: {util * 100:.0f}% busy" for name, util in sorted(snap.gpus.items()))
        lines.append("GPU  " + "   ".join(busy))
    lines.append("")
    firing = [a for a in snap.alerts if a.state == "firing"]
    pending = [a for a in snap.alerts if a.state != "firing"]
    lines.append(paint(f"ALERTS  {len(firing)} firing, {len(pending)} pending", _BOLD))
    for alert in firing + pending:
        shown = ("model", "severity", "gpu", "stage", "layer", "target")
        labels = " ".join(f"{k}={v}" for k, v in sorted(alert.labels.items()) if k in shown)
        text = f"  {alert.state.upper():<8}{alert.name:<34}{labels}"
        lines.append(paint(text, _RED if alert.state == "firing" else _YELLOW))
    for problem in snap.problems[:3]:
        lines.append(paint(f"! {problem}"[:width], _YELLOW))
    return "\n".join(line if len(line) < width * 2 else line[: width * 2] for line in lines)


# ---- Command line ------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prometheus", help="Prometheus base URL, e.g. http://127.0.0.1:9090")
    parser.add_argument("--metrics-url", help="a server's /metrics, e.g. http://127.0.0.1:8000/metrics")
    parser.add_argument("--window", default="1m", help="PromQL rate window (default 1m)")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between frames")
    parser.add_argument("--once", action="store_true", help="print one frame and exit")
    parser.add_argument("--count", type=int, default=0, help="stop after this many frames (0: never)")
    parser.add_argument("--no-color", action="store_true")
    parser.add_argument(
        "--jaeger",
        default=traceview.DEFAULT_JAEGER_URL,
        help=f"Jaeger query URL, for the t key's trace (default {traceview.DEFAULT_JAEGER_URL})",
    )


def make_source(args: argparse.Namespace) -> Source:
    if args.metrics_url:
        numbers = MetricsSource(args.metrics_url, interval_s=args.interval)
        return CombinedSource(numbers, PrometheusSource(args.prometheus)) if args.prometheus else numbers
    return PrometheusSource(args.prometheus or "http://127.0.0.1:9090", window=args.window)


KEYS_HELP = "t: slowest recent trace   q: quit   (any key: back to the table)"


def trace_frame(args: argparse.Namespace, color: bool) -> str:
    """What the ``t`` key shows: the slowest recent exemplar trace the backend holds."""
    if not args.prometheus:
        return "the slowest trace needs --prometheus (its exemplars name the traces)"
    try:
        found = traceview.slowest_stored_trace(args.prometheus, args.jaeger, window_s=_seconds(args.window) * 5)
    except (OSError, RuntimeError, ValueError) as exc:
        return f"could not fetch the slowest trace: {exc}"
    if found is None:
        return f"no recent exemplar's trace is in {args.jaeger} (sampled out, or no traffic yet)"
    exemplar, trace = found
    title = f"slowest recent request ({_ms(exemplar.value)})"
    return traceview.render_waterfall(trace, color=color, title=title)


def _seconds(window: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    for unit in sorted(units, key=len, reverse=True):
        if window.endswith(unit) and window[: -len(unit)].replace(".", "", 1).isdigit():
            return float(window[: -len(unit)]) * units[unit]
    return 60.0


class _Keys:
    """Single key presses from a terminal (cbreak mode, restored on close); none elsewhere."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self._saved: Any = None
        if stream is not None and hasattr(stream, "isatty") and stream.isatty():
            try:
                import termios
                import tty

                self._saved = termios.tcgetattr(stream.fileno())
                tty.setcbreak(stream.fileno())
            except (ImportError, OSError):
                self._saved = None

    @property
    def active(self) -> bool:
        return self._saved is not None

    def wait(self, timeout_s: float) -> str | None:
        """A key pressed within ``timeout_s``, or None (after sleeping that long)."""
        if not self.active:
            time.sleep(timeout_s)
            return None
        import select

        ready, _, _ = select.select([self.stream], [], [], timeout_s)
        return os.read(self.stream.fileno(), 1).decode(errors="replace") if ready else None

    def close(self) -> None:
        if self._saved is not None:
            import termios

            termios.tcsetattr(self.stream.fileno(), termios.TCSADRAIN, self._saved)
            self._saved = None


def run(args: argparse.Namespace, out: Any = None, keys_from: Any = None) -> int:
    out = out or sys.stdout
    source = make_source(args)
    tty = hasattr(out, "isatty") and out.isatty()
    color = tty and not args.no_color
    frames = 1 if args.once else args.count
    shown = 0
    history = History()
    keys = _Keys(sys.stdin if keys_from is None and tty and not args.once else keys_from)
    showing_trace = False
    try:
        while True:
            if not showing_trace:
                try:
                    snap = source.snapshot()
                except OSError as exc:  # the server is down or restarting: say so, keep going
                    snap = Snapshot(source=str(getattr(source, "url", "")), window="-", problems=[str(exc)])
                history.add(snap)
                failed = bool(snap.problems) and not snap.models and not snap.stages
                # --once: one frame has no trend, and scripts parse its columns.
                frame = render(snap, color=color, history=None if args.once else history)
                if keys.active:
                    frame += "\n\n" + KEYS_HELP
                out.write((CLEAR if tty and not args.once else "") + frame + "\n")
                out.flush()
                shown += 1
                if frames and shown >= frames:
                    return 1 if failed else 0
            key = keys.wait(args.interval)
            if key == "q":
                return 0
            if key in ("t", "T") and not showing_trace:
                out.write((CLEAR if tty else "") + trace_frame(args, color) + "\n\n(any key: back)\n")
                out.flush()
                showing_trace = True
            elif key is not None:
                showing_trace = False
    except KeyboardInterrupt:
        return 0
    finally:
        keys.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="infersight top", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


# ---- Diagnosis: computing or waiting, GIL contention, payload changes --------------------

_STAGE_CPU = METRIC.STAGE_CPU.name
_OUTSIDE = METRIC.OUTSIDE_STAGES.name
_GIL = METRIC.GIL_WAIT.name
_PAYLOAD = METRIC.PAYLOAD_SIZE.name
_TOKENS = METRIC.INPUT_TOKENS.name
GREW = 1.2  # a stage's mean wall time this many times its baseline (and 1 ms more) "grew"
WAITING_BELOW = 0.5  # CPU grew by less than this share of the wall-time growth: waiting
GIL_CONTENDED_S = 0.005  # the probe's P99 lateness above which top says "GIL contention"
CHANGED = 1.5  # payload or token means this many times the baseline (or 1/this) are noted
TIMES = "\N{MULTIPLICATION SIGN}"


@dataclass
class Means:
    """Mean seconds per stage (wall and thread CPU), payload bytes and tokens per model, in one window."""

    wall: dict[tuple[str, str], float] = field(default_factory=dict)
    cpu: dict[tuple[str, str], float] = field(default_factory=dict)
    payload: dict[str, float] = field(default_factory=dict)
    tokens: dict[str, float] = field(default_factory=dict)


def _ratio(sums: dict[tuple[str, ...], float], counts: dict[tuple[str, ...], float]) -> dict[tuple[str, ...], float]:
    return {k: v / counts[k] for k, v in sums.items() if counts.get(k, 0.0) > 0}


def means_from_samples(samples: Samples, before: Samples | None, snap: Snapshot) -> Means:
    """The means over the window, and the outside-stages row and GIL P99 put into ``snap``."""
    d = _delta(samples, before)
    pair = ("model", "stage")
    means = Means(
        wall=_ratio(_sum_by(d, f"{_STAGE}_sum", pair), _sum_by(d, f"{_STAGE}_count", pair)),  # type: ignore[arg-type]
        cpu=_ratio(_sum_by(d, f"{_STAGE_CPU}_sum", pair), _sum_by(d, f"{_STAGE_CPU}_count", pair)),  # type: ignore[arg-type]
    )
    for name, into in ((_PAYLOAD, means.payload), (_TOKENS, means.tokens)):
        for (model,), value in _ratio(
            _sum_by(d, f"{name}_sum", ("model",)), _sum_by(d, f"{name}_count", ("model",))
        ).items():
            into[model] = value
    for (model,), qs in _quantiles(d, f"{_OUTSIDE}_bucket", ("model",)).items():
        row = snap.stages.setdefault((model, OUTSIDE_STAGES), Row())
        row.p50, row.p95, row.p99 = qs
        row.rps = snap.models.get(model, Row()).rps  # one observation per request with stages
    gil = _quantiles(d, f"{_GIL}_bucket", ())
    if gil:
        snap.gil_p99 = gil[()][2]
    return means


def diagnose(snap: Snapshot, now: Means, before: Means | None) -> None:
    """Notes for ``render``: per stage its CPU share of wall time, and "waiting" or "computing"
    when its wall time grew against ``before``; per model "payload xN" / "tokens xN"."""
    contended = not math.isnan(snap.gil_p99) and snap.gil_p99 > GIL_CONTENDED_S
    for key, wall in now.wall.items():
        cpu = now.cpu.get(key)
        if cpu is None or wall <= 0:
            continue
        note = f"cpu {min(cpu / wall, 1.0) * 100:.0f}%"
        was_wall = before.wall.get(key) if before else None
        was_cpu = before.cpu.get(key) if before else None
        if was_wall is not None and was_cpu is not None and wall > was_wall * GREW + 0.001:
            if cpu - was_cpu < WAITING_BELOW * (wall - was_wall):
                note += ", waiting" + (" (GIL contention)" if contended else "")
            else:
                note += ", computing"
        snap.notes[key] = note
    if before is None:
        return
    for what, current, baseline in (("payload", now.payload, before.payload), ("tokens", now.tokens, before.tokens)):
        for model, value in current.items():
            was = baseline.get(model)
            if was and value > 0 and (value / was > CHANGED or was / value > CHANGED):
                old = snap.notes.get(model)
                snap.notes[model] = (old + ", " if old else "") + f"{what} {TIMES}{value / was:.1f}"


def _note(snap: Snapshot, key: Any) -> str:
    note = snap.notes.get(key)
    return f"  {note}" if note else ""


def _gil_line(p99: float) -> str:
    verdict = "GIL contention" if p99 > GIL_CONTENDED_S else "no GIL contention"
    return f"GIL  probe P99 {_ms(p99)} late: {verdict}"


def _prometheus_means(source: PrometheusSource, snap: Snapshot, offset: str) -> Means:
    w, means = source.window, Means()

    def mean(metric: str, by: str) -> list[tuple[dict[str, str], float]]:
        sums = f"sum by ({by}) (rate({metric}_sum[{w}]{offset}))"
        return source.query(f"{sums} / sum by ({by}) (rate({metric}_count[{w}]{offset}))")

    for labels, value in mean(_STAGE, "model, stage"):
        means.wall[(labels.get("model", "?"), labels.get("stage", "?"))] = value
    for labels, value in mean(_STAGE_CPU, "model, stage"):
        means.cpu[(labels.get("model", "?"), labels.get("stage", "?"))] = value
    for labels, value in mean(_PAYLOAD, "model"):
        means.payload[labels.get("model", "?")] = value
    for labels, value in mean(_TOKENS, "model"):
        means.tokens[labels.get("model", "?")] = value
    return means


def _median_baselines(source: PrometheusSource, before: Means) -> None:
    """A model with no hour of history (a fresh deployment) gets, as the alert's note does, the
    median over the last hour of its windowed means as the payload and token baseline."""
    w = source.window
    for metric, into in ((_PAYLOAD, before.payload), (_TOKENS, before.tokens)):
        mean = f"sum by (model) (rate({metric}_sum[{w}])) / sum by (model) (rate({metric}_count[{w}]))"
        for labels, value in source.query(f"quantile_over_time(0.5, ({mean})[1h:15s])"):
            into.setdefault(labels.get("model", "?"), value)


def _prometheus_diagnose(source: PrometheusSource, snap: Snapshot) -> None:
    """Now against an hour ago (as the alert InferenceSLOBreachByStage does), plus the
    outside-stages row and the GIL probe's P99."""
    w = source.window
    try:
        for q in QUANTILES:
            expr = f"histogram_quantile({q}, sum by (model, le) (rate({_OUTSIDE}_bucket[{w}])))"
            for labels, value in source.query(expr):
                snap.stages.setdefault((labels.get("model", "?"), OUTSIDE_STAGES), Row()).set_quantile(q, value)
        for _, value in source.query(f"histogram_quantile(0.99, sum by (le) (rate({_GIL}_bucket[{w}])))"):
            snap.gil_p99 = value
        before = _prometheus_means(source, snap, " offset 1h")
        _median_baselines(source, before)
        diagnose(snap, _prometheus_means(source, snap, ""), before)
    except Exception as exc:
        snap.problems.append(f"diagnosis: {exc}")
