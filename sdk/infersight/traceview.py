"""One trace in the terminal: fetched from the trace backend, drawn as a waterfall.

``infersight trace <id>`` and the ``t`` key of ``infersight top`` use it. Each span is a bar
on a shared time axis; a stage span's bar is split into the time its thread ran on a CPU
(``infersight.stage.cpu_s``) and the time it waited (locks, I/O, the GIL, a GPU sync), and
its GPU figures follow when the span carries them.

Fetching is apart from drawing: ``fetch_trace`` reads Jaeger's query API (``/api/v3/traces``,
OTLP JSON), ``parse_traces`` turns OTLP JSON (Jaeger's, Tempo's, or an exporter's file) into
``Trace`` objects, and ``render_waterfall`` is a pure function of a ``Trace``, so each can be
tested alone. ``slowest_exemplars`` asks Prometheus for the slowest recent requests' trace ids.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .conventions import ATTR, METRIC

__all__ = [
    "DEFAULT_JAEGER_URL",
    "Exemplar",
    "Span",
    "Trace",
    "TraceNotFound",
    "fetch_trace",
    "find_traces",
    "parse_traces",
    "render_waterfall",
    "slowest_exemplars",
    "slowest_stored_trace",
]

DEFAULT_JAEGER_URL = "http://127.0.0.1:16686"
SPAN_KIND_SERVER = 2  # OTLP's SpanKind enum
STATUS_ERROR = 2
CPU, WAIT, SPAN_BAR = "\u2588", "\u2591", "\u2588"  # full block, light shade
# A span's GPU time figures, shown first; its other numeric infersight.gpu.* attributes are
# the counters (ratios shown as %, rates as numbers). The wall time is the span's own.
_GPU_TIMES = ((ATTR.GPU_SECONDS, "gpu"), (ATTR.GPU_BUSY_SECONDS, "kernels"))
_GPU_SKIPPED = {ATTR.GPU_WALL_SECONDS, *(key for key, _ in _GPU_TIMES)}


class TraceNotFound(LookupError):
    """The backend answered, and holds no trace of that id."""


@dataclass(frozen=True)
class Span:
    trace_id: str
    span_id: str
    parent_id: str  # "" for a root
    name: str
    service: str
    kind: int
    start_ns: int
    end_ns: int
    attributes: Mapping[str, Any] = field(default_factory=dict)
    error: bool = False

    @property
    def duration_s(self) -> float:
        return max(0, self.end_ns - self.start_ns) / 1e9

    def number(self, key: str) -> float | None:
        value = self.attributes.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return float(value)


@dataclass
class Trace:
    trace_id: str
    spans: list[Span]

    @property
    def start_ns(self) -> int:
        return min(s.start_ns for s in self.spans)

    @property
    def end_ns(self) -> int:
        return max(s.end_ns for s in self.spans)

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9

    @property
    def root(self) -> Span:
        """The earliest span whose parent is not in the trace (the request span, normally)."""
        ids = {s.span_id for s in self.spans}
        roots = [s for s in self.spans if s.parent_id not in ids] or self.spans
        return min(roots, key=lambda s: (s.start_ns, -s.end_ns))

    def tree(self) -> list[tuple[int, Span]]:
        """Every span once, depth first, children by start time: ``(depth, span)``."""
        ids = {s.span_id for s in self.spans}
        children: dict[str, list[Span]] = {}
        for s in self.spans:
            children.setdefault(s.parent_id if s.parent_id in ids else "", []).append(s)
        out: list[tuple[int, Span]] = []
        seen: set[str] = set()
        stack = [(0, s) for s in sorted(children.get("", []), key=_order, reverse=True)]
        while stack:
            depth, span = stack.pop()
            if span.span_id in seen:  # a malformed trace: a cycle or a repeated id
                continue
            seen.add(span.span_id)
            out.append((depth, span))
            stack += [(depth + 1, c) for c in sorted(children.get(span.span_id, []), key=_order, reverse=True)]
        return out


def _order(span: Span) -> tuple[int, int]:
    return (span.start_ns, -span.end_ns)


# ---- OTLP JSON ---------------------------------------------------------------------------


def _value(v: Mapping[str, Any]) -> Any:
    """An OTLP JSON AnyValue -> Python (int64 comes as a string in proto3 JSON)."""
    if "stringValue" in v:
        return v["stringValue"]
    if "intValue" in v:
        return int(v["intValue"])
    if "doubleValue" in v:
        return float(v["doubleValue"])
    if "boolValue" in v:
        return bool(v["boolValue"])
    if "arrayValue" in v:
        return [_value(x) for x in v["arrayValue"].get("values", [])]
    return None


def _attrs(items: Iterable[Mapping[str, Any]] | None) -> dict[str, Any]:
    return {a["key"]: _value(a.get("value") or {}) for a in items or ()}


def _resource_spans(doc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Jaeger v3 wraps OTLP in ``result``; Tempo uses ``batches`` (v1) or ``trace`` (v2)."""
    for key in ("result", "trace", "data"):
        inner = doc.get(key)
        if isinstance(inner, Mapping):
            return _resource_spans(inner)
    spans = doc.get("resourceSpans", doc.get("batches"))
    return list(spans) if isinstance(spans, list) else []


def parse_traces(doc: Mapping[str, Any]) -> dict[str, Trace]:
    """OTLP JSON (``TracesData``, possibly several traces) -> ``{trace id: Trace}``.

    Ids are lower-case hex as OTLP JSON writes them."""
    by_trace: dict[str, list[Span]] = {}
    for rs in _resource_spans(doc):
        resource = _attrs((rs.get("resource") or {}).get("attributes"))
        service = str(resource.get(ATTR.SERVICE_NAME, ""))
        for ss in rs.get("scopeSpans", rs.get("instrumentationLibrarySpans", [])) or []:
            for s in ss.get("spans", []) or []:
                trace_id = str(s.get("traceId", "")).lower()
                span = Span(
                    trace_id=trace_id,
                    span_id=str(s.get("spanId", "")).lower(),
                    parent_id=str(s.get("parentSpanId", "") or "").lower(),
                    name=str(s.get("name", "")),
                    service=service,
                    kind=_kind(s.get("kind", 0)),
                    start_ns=int(s.get("startTimeUnixNano", 0)),
                    end_ns=int(s.get("endTimeUnixNano", 0)),
                    attributes=_attrs(s.get("attributes")),
                    error=_kind((s.get("status") or {}).get("code", 0)) == STATUS_ERROR,
                )
                by_trace.setdefault(trace_id, []).append(span)
    return {t: Trace(t, spans) for t, spans in by_trace.items()}


def _kind(value: Any) -> int:
    """An enum as proto3 JSON may write it: a number or its name (SPAN_KIND_SERVER, STATUS_CODE_ERROR)."""
    if isinstance(value, int):
        return value
    names = {"SERVER": 2, "CLIENT": 3, "PRODUCER": 4, "CONSUMER": 5, "INTERNAL": 1, "ERROR": 2, "OK": 1}
    text = str(value)
    return int(text) if text.isdigit() else names.get(text.rsplit("_", 1)[-1], 0)


# ---- Fetching ----------------------------------------------------------------------------


def _get_json(url: str, timeout_s: float) -> Any:
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:
        return json.load(resp)


def fetch_trace(jaeger_url: str, trace_id: str, timeout_s: float = 5.0) -> Trace:
    """The trace ``trace_id`` (32 hex digits) from Jaeger's query API.

    Raises ``TraceNotFound`` when Jaeger holds no such trace, ``OSError`` when it is not there."""
    trace_id = trace_id.strip().lower()
    url = f"{jaeger_url.rstrip('/')}/api/v3/traces/{urllib.parse.quote(trace_id)}"
    try:
        doc = _get_json(url, timeout_s)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise TraceNotFound(f"no trace {trace_id} in {jaeger_url}") from None
        raise
    trace = parse_traces(doc).get(trace_id.zfill(32))
    if trace is None or not trace.spans:
        raise TraceNotFound(f"no trace {trace_id} in {jaeger_url}")
    return trace


def find_traces(
    jaeger_url: str,
    service: str,
    since: float,
    until: float | None = None,
    min_duration_s: float | None = None,
    limit: int = 100,
    timeout_s: float = 5.0,
) -> dict[str, Trace]:
    """Traces of ``service`` that started between ``since`` and ``until`` (Unix seconds)."""

    def rfc3339(t: float) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"

    params = {
        "query.service_name": service,
        "query.start_time_min": rfc3339(since),
        "query.start_time_max": rfc3339(until if until is not None else time.time() + 60),
        "query.num_traces": str(limit),
    }
    if min_duration_s is not None:
        params["query.duration_min"] = f"{int(min_duration_s * 1e6)}us"
    url = f"{jaeger_url.rstrip('/')}/api/v3/traces?{urllib.parse.urlencode(params)}"
    try:
        return parse_traces(_get_json(url, timeout_s))
    except urllib.error.HTTPError as exc:
        if exc.code == 404:  # "No traces found"
            return {}
        raise


@dataclass(frozen=True)
class Exemplar:
    trace_id: str
    value: float  # seconds
    timestamp: float
    labels: Mapping[str, str]  # the series' labels (model, stage, ...)


def slowest_exemplars(
    prometheus_url: str, window_s: float = 300, metric: str | None = None, timeout_s: float = 5.0
) -> list[Exemplar]:
    """Exemplars of the last ``window_s`` on the request-latency histogram, slowest first."""
    name = metric or f"{METRIC.REQUEST_DURATION.name}_bucket"
    now = time.time()
    params = urllib.parse.urlencode({"query": name, "start": f"{now - window_s:.3f}", "end": f"{now + 1:.3f}"})
    body = _get_json(f"{prometheus_url.rstrip('/')}/api/v1/query_exemplars?{params}", timeout_s)
    if body.get("status") != "success":
        raise RuntimeError(f"query_exemplars failed: {body.get('error', body)}")
    out = []
    for series in body.get("data") or []:
        labels = {k: v for k, v in (series.get("seriesLabels") or {}).items() if k != "le"}
        for e in series.get("exemplars") or []:
            trace_id = (e.get("labels") or {}).get("trace_id")
            if trace_id:
                out.append(Exemplar(trace_id.lower(), float(e["value"]), float(e.get("timestamp", 0)), labels))
    out.sort(key=lambda e: e.value, reverse=True)
    return out


def slowest_stored_trace(
    prometheus_url: str, jaeger_url: str, window_s: float = 300, tries: int = 10, timeout_s: float = 5.0
) -> tuple[Exemplar, Trace] | None:
    """The slowest recent exemplar whose trace the backend holds (sampling may have dropped the
    others); looks at most ``tries`` of them up. None when there is none."""
    seen: set[str] = set()
    for exemplar in slowest_exemplars(prometheus_url, window_s, timeout_s=timeout_s):
        if exemplar.trace_id in seen:
            continue
        seen.add(exemplar.trace_id)
        try:
            return exemplar, fetch_trace(jaeger_url, exemplar.trace_id, timeout_s)
        except TraceNotFound:
            pass
        if len(seen) >= tries:
            break
    return None


# ---- Drawing -----------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    ms = seconds * 1000
    if ms >= 1000:
        return f"{seconds:.2f}s"
    return f"{ms:.1f}ms" if ms < 100 else f"{ms:.0f}ms"


def _gpu_text(span: Span) -> str:
    parts = [f"{label} {_ms(value)}" for key, label in _GPU_TIMES if (value := span.number(key)) is not None]
    for key in sorted(span.attributes):
        value = span.number(key)
        if not key.startswith(ATTR.GPU_PREFIX) or key in _GPU_SKIPPED or value is None:
            continue
        name = key.removeprefix(ATTR.GPU_PREFIX)
        parts.append(f"{name} {value * 100:.0f}%" if 0 <= value <= 1 else f"{name} {value:.3g}")
    return "GPU " + " ".join(parts) if parts else ""


def _detail(span: Span) -> str:
    """What the bar cannot show: CPU/wait split, time outside stages, GPU figures, errors."""
    notes = []
    cpu = span.number(ATTR.STAGE_CPU_SECONDS)
    if cpu is not None and span.duration_s > 0:
        cpu = min(cpu, span.duration_s)
        share = cpu / span.duration_s
        notes.append(f"cpu {_ms(cpu)} ({share * 100:.0f}%) wait {_ms(span.duration_s - cpu)}")
    outside = span.number(ATTR.OUTSIDE_STAGES_SECONDS)
    if outside is not None:
        notes.append(f"outside stages {_ms(outside)}")
    queue = span.number(ATTR.QUEUE_WAIT)
    if queue is not None:
        notes.append(f"queued {_ms(queue)}")
    gpu = _gpu_text(span)
    if gpu:
        notes.append(gpu)
    if span.error:
        notes.append("ERROR")
    return "  ".join(notes)


def _bar(span: Span, t0: int, total_ns: int, width: int) -> str:
    if total_ns <= 0:
        return SPAN_BAR * width
    start = int((span.start_ns - t0) / total_ns * width)
    start = min(max(start, 0), width - 1)
    length = max(1, round((span.end_ns - span.start_ns) / total_ns * width))
    length = min(length, width - start)
    cpu = span.number(ATTR.STAGE_CPU_SECONDS)
    if cpu is None or span.duration_s <= 0:
        body = SPAN_BAR * length
    else:
        busy = round(min(cpu / span.duration_s, 1.0) * length)
        body = CPU * busy + WAIT * (length - busy)
    return " " * start + body + " " * (width - start - length)


def render_waterfall(trace: Trace, width: int = 120, color: bool = False, title: str = "") -> str:
    """``trace`` as text: a header, then one line per span (name indented by depth, a bar on the
    trace's time axis, its duration, and its CPU/wait split and GPU figures when it has them)."""
    if not trace.spans:
        return f"trace {trace.trace_id}: no spans"
    bold, dim, red, reset = ("\x1b[1m", "\x1b[2m", "\x1b[31m", "\x1b[0m") if color else ("", "", "", "")
    root = trace.root
    t0, total = trace.start_ns, trace.end_ns - trace.start_ns
    model = next((str(s.attributes[ATTR.MODEL_NAME]) for s in trace.spans if ATTR.MODEL_NAME in s.attributes), "")
    services = sorted({s.service for s in trace.spans if s.service})
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t0 / 1e9))
    lines = [
        f"{bold}{title or 'trace'} {trace.trace_id}{reset}",
        f"{root.name}  {_ms(trace.duration_s)}  {len(trace.spans)} spans  service {', '.join(services) or '-'}"
        + (f"  model {model}" if model else "")
        + f"  started {started}",
        "",
    ]
    name_w = 30
    bar_w = max(10, min(50, width - name_w - 10 - 40))
    end = _ms(trace.duration_s)
    lines.append(f"{bold}{'span':<{name_w}}|{'0':<{bar_w - len(end)}}{end}|{'took':>9}{reset}")
    for depth, span in trace.tree():
        label = ("  " * depth + span.name)[: name_w - 1]
        detail = _detail(span)
        line = f"{label:<{name_w}}|{_bar(span, t0, total, bar_w)}|{_ms(span.duration_s):>9}"
        if detail:
            line += f"  {detail}"
        lines.append(f"{red}{line}{reset}" if span.error else line)
    lines.append(f"{dim}{CPU} CPU (stage thread on a CPU; other spans: whole span)  {WAIT} waiting{reset}")
    return "\n".join(lines)
