"""Generate the infersight Grafana dashboards (grafana-dashboards/dashboards/*.json) from code.

Four dashboards, linked to each other and keeping their variables: the inference overview,
the stage drill-down, GPU, and drift. Every metric name comes from ``infersight.conventions``;
queries use raw metrics (histogram_quantile over ``_bucket``) so the panels work without the
recording rules in prometheus-rules/.

    python grafana-dashboards/generate.py            rewrite the JSON files
    python grafana-dashboards/generate.py --check    exit 1 and name each stale file
    python grafana-dashboards/generate.py --output-dir DIR [--check]

The JSON is written with sorted keys, indent 2 and a trailing newline, so a regeneration
of unchanged code is byte-identical (tests/test_dashboards.py checks it).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import heatmap, prometheus, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import heatmap as hm
from grafana_foundation_sdk.models import prometheus as pm

from infersight.conventions import METRIC, TRITON, MetricSpec

HERE = Path(__file__).resolve().parent
OUTPUT_DIR = HERE / "dashboards"
TAG = "infersight"

# Panels and variables query whichever Prometheus the `datasource` variable points at.
DS = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")

# Label matchers, by which labels a metric carries (conventions.py). `instance` is added by
# the scrape; `version` exists only on the request histogram and the per-version gauges.
REQ = 'model=~"$model", version=~"$version", instance=~"$instance"'
MODEL = 'model=~"$model", instance=~"$instance"'
INST = 'instance=~"$instance"'
GPU = 'uuid=~"$gpu", instance=~"$instance"'
RATE = "$__rate_interval"


@dataclass(frozen=True)
class DashboardSpec:
    uid: str
    title: str
    description: str
    build: Callable[[], Iterable[Any]]  # yields row titles (str) and panel builders
    extra_variables: tuple[Callable[[], db.QueryVariable], ...] = ()  # beyond datasource/model/version/instance


# --- PromQL helpers -------------------------------------------------------------------


def bucket(spec: MetricSpec) -> str:
    return f"{spec.name}_bucket"


def hsum(spec: MetricSpec) -> str:
    return f"{spec.name}_sum"


def hcount(spec: MetricSpec) -> str:
    return f"{spec.name}_count"


def quantile(q: float, spec: MetricSpec, sel: str, by: str = "") -> str:
    """The q-quantile of a histogram over the rate interval, per ``by`` labels (all together if empty)."""
    labels = f"{by}, le" if by else "le"
    return f"histogram_quantile({q}, sum by ({labels}) (rate({bucket(spec)}{{{sel}}}[{RATE}])))"


def rate(sample: str, sel: str, by: str) -> str:
    return f"sum by ({by}) (rate({sample}{{{sel}}}[{RATE}]))"


def mean(spec: MetricSpec, sel: str, by: str) -> str:
    return f"{rate(hsum(spec), sel, by)} / {rate(hcount(spec), sel, by)}"


def gauge(spec: MetricSpec, sel: str, by: str = "", agg: str = "max") -> str:
    grouping = f" by ({by}) " if by else ""
    return f"{agg}{grouping}({spec.name}{{{sel}}})"


def heatmap_expr(spec: MetricSpec, sel: str) -> str:
    return f"sum by (le) (rate({bucket(spec)}{{{sel}}}[{RATE}]))"


# --- panel helpers --------------------------------------------------------------------


def target(
    expr: str, legend: str = "", *, exemplar: bool = False, fmt: pm.PromQueryFormat | None = None, instant: bool = False
) -> prometheus.Dataquery:
    query = prometheus.Dataquery().expr(expr).datasource(DS).legend_format(legend or "__auto")
    query = query.editor_mode(pm.QueryEditorMode.CODE).exemplar(exemplar)
    if fmt is not None:
        query = query.format(fmt)
    return query.instant() if instant else query.range()


def _finish(
    panel: Any, title: str, description: str, unit: str, targets: Iterable[prometheus.Dataquery], span: int, height: int
) -> Any:
    panel = panel.title(title).description(description).unit(unit).datasource(DS).span(span).height(height)
    for ref, query in zip("ABCDEFGH", targets, strict=False):
        panel = panel.with_target(query.ref_id(ref))
    return panel


def _legend(table_mode: bool = True) -> cb.VizLegendOptions:
    legend = cb.VizLegendOptions().show_legend(True).placement(common.LegendPlacement.BOTTOM)
    if table_mode:
        return legend.display_mode(common.LegendDisplayMode.TABLE).calcs(["mean", "max", "lastNotNull"])
    return legend.display_mode(common.LegendDisplayMode.LIST)


def ts(
    title: str,
    description: str,
    unit: str,
    *targets: prometheus.Dataquery,
    span: int = 12,
    height: int = 8,
    stack: bool = False,
    bars: bool = False,
    step: bool = False,
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .legend(_legend())
        .tooltip(cb.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI).sort(common.SortOrder.DESCENDING))
    )
    panel = panel.line_width(1).fill_opacity(10).show_points(common.VisibilityMode.NEVER)
    if step:
        panel = panel.line_interpolation(common.LineInterpolation.STEP_AFTER)
    if bars:
        panel = panel.draw_style(common.GraphDrawStyle.BARS).fill_opacity(80)
    if stack:
        panel = panel.stacking(cb.StackingConfig().mode(common.StackingMode.NORMAL).group("A"))
    return _finish(panel, title, description, unit, targets, span, height)  # type: ignore[no-any-return]


def stat_panel(
    title: str,
    description: str,
    unit: str,
    *targets: prometheus.Dataquery,
    span: int = 6,
    height: int = 4,
    mappings: list[Any] | None = None,
) -> stat.Panel:
    panel = stat.Panel().graph_mode(common.BigValueGraphMode.AREA).color_mode(common.BigValueColorMode.VALUE)
    panel = panel.reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    if mappings:
        panel = panel.mappings(mappings)
    return _finish(panel, title, description, unit, targets, span, height)  # type: ignore[no-any-return]


def heat(
    title: str,
    description: str,
    unit: str,
    query: prometheus.Dataquery,
    span: int = 12,
    height: int = 8,
    cell_unit: str = "ops",
) -> heatmap.Panel:
    """A heatmap of pre-bucketed Prometheus histograms (no client-side calculation); a cell is
    observations per second in that bucket."""
    panel = heatmap.Panel().calculate(False).y_axis(heatmap.YAxisConfig().unit(unit))
    panel = panel.show_tooltip().show_y_histogram().show_legend()
    panel = panel.color(
        heatmap.HeatmapColorOptions()
        .mode(hm.HeatmapColorMode.SCHEME)
        .scheme("Spectral")
        .scale(hm.HeatmapColorScale.EXPONENTIAL)
        .exponent(0.5)
        .steps(64)
    )
    panel = panel.cell_values(heatmap.CellValues().unit(cell_unit)).exemplars_color("rgba(255,0,255,0.7)")
    panel = panel.rows_frame(heatmap.RowsHeatmapOptions().layout(common.HeatmapCellLayout.LE))
    return _finish(panel, title, description, unit, [query], span, height)  # type: ignore[no-any-return]


def state(
    title: str, description: str, mappings: list[Any], *targets: prometheus.Dataquery, span: int = 12, height: int = 6
) -> statetimeline.Panel:
    panel = statetimeline.Panel().mappings(mappings).show_value(common.VisibilityMode.NEVER).merge_values(True)
    panel = panel.legend(_legend(table_mode=False))
    return _finish(panel, title, description, "none", targets, span, height)  # type: ignore[no-any-return]


def table_panel(
    title: str,
    description: str,
    unit: str,
    *targets: prometheus.Dataquery,
    span: int = 12,
    height: int = 8,
    rename: dict[str, str] | None = None,
) -> table.Panel:
    """An instant table: queries merged on their labels, the Time column hidden."""
    panel = table.Panel().show_header(True).with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
    panel = panel.with_transformation(
        dm.DataTransformerConfig(
            id_val="organize", options={"excludeByName": {"Time": True}, "renameByName": rename or {}}
        )
    )
    return _finish(panel, title, description, unit, targets, span, height)  # type: ignore[no-any-return]


def on_right(panel: Any, ref: str, unit: str) -> Any:
    """Query ``ref`` in another unit on the right axis (e.g. latency next to payload size)."""
    return panel.override_by_query(
        ref,
        [
            dm.DynamicConfigValue(id_val="unit", value=unit),
            dm.DynamicConfigValue(id_val="custom.axisPlacement", value="right"),
        ],
    )


def drill_to(panel: Any, uid: str, title: str) -> Any:
    """Clicking a series opens dashboard ``uid`` for that series' model, same time range and
    instance (a data link; the dashboard links at the top keep every variable as it is)."""
    keep = "&".join(("${__url_time_range}", "${instance:queryparam}", "${datasource:queryparam}"))
    url = f"/d/{uid}?{keep}&var-model=${{__field.labels.model}}"
    return panel.data_links([db.DashboardLink(title).type(dm.DashboardLinkType.LINK).url(url)])


def dashed(panel: Any, ref: str, color: str = "red") -> Any:
    """Draw query ``ref`` as a dashed fixed-colour line (an objective, a limit)."""
    return panel.override_by_query(
        ref,
        [
            dm.DynamicConfigValue(id_val="custom.lineStyle", value={"dash": [10, 10], "fill": "dash"}),
            dm.DynamicConfigValue(id_val="color", value={"fixedColor": color, "mode": "fixed"}),
            dm.DynamicConfigValue(id_val="custom.fillOpacity", value=0),
        ],
    )


def flag_mappings(zero: str, one: str, zero_color: str = "green", one_color: str = "red") -> list[Any]:
    """Text and colour for a 0/1 gauge."""
    return [
        dm.ValueMap(
            options={
                "0": dm.ValueMappingResult(text=zero, color=zero_color, index=0),
                "1": dm.ValueMappingResult(text=one, color=one_color, index=1),
            }
        )
    ]


# --- dashboards -----------------------------------------------------------------------


def overview() -> Iterable[Any]:
    req_rate = rate(hcount(METRIC.REQUEST_DURATION), REQ, "model")
    err_rate = rate(hcount(METRIC.REQUEST_DURATION), REQ + ', outcome="error"', "model")
    # `or ... * 0` keeps a model with no errors at 0 instead of dropping it from the ratio.
    err_ratio = f"({err_rate} or {req_rate} * 0) / {req_rate}"
    yield "At a glance"
    yield stat_panel(
        "Requests per second",
        "How much traffic do the selected models serve right now?",
        "reqps",
        target(f"sum({rate(hcount(METRIC.REQUEST_DURATION), REQ, 'instance')})", "total"),
    )
    yield stat_panel(
        "Error ratio",
        "What share of requests failed over the rate interval?",
        "percentunit",
        target(f"sum({err_rate} or {req_rate} * 0) / sum({req_rate})", "errors"),
    )
    yield stat_panel(
        "P99 latency",
        "How slow is the slowest 1% of requests, all selected models together?",
        "s",
        target(quantile(0.99, METRIC.REQUEST_DURATION, REQ), "p99"),
    )
    yield stat_panel(
        "In-flight requests",
        "How many requests are being served at this moment?",
        "short",
        target(gauge(METRIC.REQUESTS_IN_FLIGHT, INST, agg="sum"), "in flight"),
    )

    yield "Traffic and errors"
    yield ts(
        "Requests per second by model",
        "Which models get the traffic, and did it change?",
        "reqps",
        target(req_rate, "{{model}}"),
    )
    yield ts(
        "Error ratio by model",
        "Which model is failing requests, and since when?",
        "percentunit",
        target(err_ratio, "{{model}}"),
    )

    yield "Latency against the objective"
    latency = ts(
        "Latency P50 / P95 / P99 by model, with the P99 objective",
        "Is each model within its P99 latency objective (dashed line), and is the tail diverging from the median?",
        "s",
        target(quantile(0.5, METRIC.REQUEST_DURATION, REQ, "model"), "{{model}} p50"),
        target(quantile(0.95, METRIC.REQUEST_DURATION, REQ, "model"), "{{model}} p95"),
        target(quantile(0.99, METRIC.REQUEST_DURATION, REQ, "model"), "{{model}} p99", exemplar=True),
        target(gauge(METRIC.MODEL_SLO_P99, MODEL, "model"), "{{model}} P99 objective"),
        span=24,
        height=9,
    )
    yield drill_to(dashed(latency, "D"), "infersight-stages", "Stages of ${__field.labels.model}")
    yield heat(
        "Request latency heatmap (click an exemplar for its trace)",
        "Where do request latencies fall, and which trace is behind an outlier? Exemplars link to Jaeger.",
        "s",
        target(heatmap_expr(METRIC.REQUEST_DURATION, REQ), "{{le}}", exemplar=True, fmt=pm.PromQueryFormat.HEATMAP),
        cell_unit="reqps",
    )
    over = rate(METRIC.REQUESTS_OVER_SLO.sample_name, MODEL, "model")
    yield ts(
        "Requests over the P99 objective",
        "How many requests per second miss their model's objective (the error budget the burn-rate alerts spend)?",
        "reqps",
        target(over, "{{model}}"),
    )

    yield "Where the time goes"
    yield ts(
        "P99 per stage (stacked)",
        "Which stage (preprocess, model, postprocess) makes requests slow?",
        "s",
        target(quantile(0.99, METRIC.STAGE_DURATION, MODEL, "stage"), "{{stage}}"),
        stack=True,
        bars=True,
    )
    yield ts(
        "In-flight requests by instance",
        "Is an instance saturated (requests piling up)?",
        "short",
        target(gauge(METRIC.REQUESTS_IN_FLIGHT, INST, "instance", "sum"), "{{instance}}"),
    )

    yield from triton_rows()

    yield "Outgoing calls (the client's side)"
    yield ts(
        "Outgoing call P99: total against network",
        "For the calls this server makes (requests, httpx, gRPC channels): is a slow call slow in the "
        "network (client time minus the callee's Server-Timing total) or in the callee?",
        "s",
        target(
            quantile(0.99, METRIC.CLIENT_REQUEST_DURATION, INST, "target, endpoint"), "{{target}}{{endpoint}} total"
        ),
        target(
            quantile(0.99, METRIC.CLIENT_NETWORK, INST, "target, endpoint"),
            "{{target}}{{endpoint}} network",
            exemplar=True,
        ),
    )
    yield ts(
        "Outgoing calls per second by outcome",
        "How often does this server call out, and how many calls fail?",
        "reqps",
        target(rate(hcount(METRIC.CLIENT_REQUEST_DURATION), INST, "target, outcome"), "{{target}} {{outcome}}"),
    )

    yield "Telemetry health"
    yield ts(
        "infersight internal errors and drops",
        "Is infersight itself losing data (errors swallowed, spans dropped, labels collapsed)?",
        "ops",
        target(rate(METRIC.SDK_ERRORS.sample_name, INST, "component"), "error: {{component}}"),
        target(rate(METRIC.SPANS_DROPPED.sample_name, INST, "reason"), "dropped: {{reason}}"),
        target(rate(METRIC.LABEL_OVERFLOW.sample_name, INST, "label"), "overflow: {{label}}"),
    )
    yield ts(
        "Records processed",
        "Is the telemetry pipeline keeping up with traffic?",
        "ops",
        target(rate(METRIC.RECORDS_PROCESSED.sample_name, INST, "instance"), "records: {{instance}}"),
        target(rate(METRIC.SPANS_EXPORTED.sample_name, INST, "instance"), "spans exported: {{instance}}"),
    )
    yield ts(
        "infersight's own CPU share",
        "How much of the server's CPU do infersight's worker and export threads use (INFERSIGHT_OVERHEAD_BUDGET)?",
        "percentunit",
        target(f"max by (instance) ({METRIC.OVERHEAD_CPU_RATIO.name}{{{INST}}})", "{{instance}}"),
    )


def triton_rows() -> Iterable[Any]:
    """Triton Inference Server's own metrics (job triton), for models no infersight runs in."""
    tsel = 'model=~"$model"'
    success = rate(TRITON.SUCCESS, tsel, "model")

    def per_request(counter: str) -> str:
        return f"{rate(counter, tsel, 'model')} / {success} / 1e6"

    def p99(summary: str) -> str:
        return f'max by (model) ({summary}{{{tsel}, quantile="0.99"}}) / 1e6'

    yield "Triton Inference Server"
    yield ts(
        "Triton: requests and failures per second by model",
        "How much traffic do Triton's models serve, and how much of it fails (by Triton's reason)?",
        "reqps",
        target(success, "{{model}} success"),
        target(rate(TRITON.FAILURE, tsel, "model, reason"), "{{model}} failed: {{reason}}"),
    )
    yield ts(
        "Triton: mean time per request by stage (stacked)",
        "Is a Triton model's time spent queueing, copying inputs, computing or copying outputs?",
        "s",
        *(target(per_request(c), "{{model}} " + stage) for stage, c in TRITON.STAGE_DURATION_US.items()),
        stack=True,
        bars=True,
    )
    latency = ts(
        "Triton: P99 by stage, and the request's against the objective",
        "Is a Triton model within its P99 objective (dashed), and which of its stages has the slow tail? "
        "Quantiles from Triton's summaries (--metrics-config summary_latencies=true).",
        "s",
        target(p99(TRITON.REQUEST_SUMMARY_US), "{{model}} request p99"),
        target(per_request(TRITON.REQUEST_DURATION_US), "{{model}} request mean"),
        *(target(p99(summary), "{{model}} " + stage + " p99") for stage, summary in TRITON.STAGE_SUMMARY_US.items()),
        target(gauge(METRIC.MODEL_SLO_P99, tsel, "model"), "{{model}} P99 objective"),
    )
    yield dashed(latency, chr(ord("A") + len(TRITON.STAGE_SUMMARY_US) + 2))
    yield ts(
        "Triton: batch size and pending requests",
        "Does Triton's dynamic batcher batch (requests per execution), and do requests pile up?",
        "short",
        target(
            f"{rate(TRITON.INFERENCES, tsel, 'model')} / {rate(TRITON.EXECUTIONS, tsel, 'model')}", "{{model}} batch"
        ),
        target(gauge_raw(TRITON.PENDING, tsel, "model"), "{{model}} pending"),
    )


def gauge_raw(name: str, sel: str, by: str) -> str:
    return f"sum by ({by}) ({name}{{{sel}}})"


def stages() -> Iterable[Any]:
    yield "Stage latency"
    stage_p99 = ts(
        "Stage P99 by model and stage",
        "Which stage of which model has the slowest tail?",
        "s",
        target(quantile(0.99, METRIC.STAGE_DURATION, MODEL, "model, stage"), "{{model}} / {{stage}}", exemplar=True),
    )
    yield drill_to(stage_p99, "infersight-gpu", "GPU view of ${__field.labels.model}")
    yield ts(
        "Stage P50 by model and stage",
        "Is a stage slow for everyone (median) or only in the tail?",
        "s",
        target(quantile(0.5, METRIC.STAGE_DURATION, MODEL, "model, stage"), "{{model}} / {{stage}}"),
    )

    yield "Queueing and batching"
    yield ts(
        "Queue wait P99",
        "Do requests wait for a batch slot before running (server saturated)?",
        "s",
        target(quantile(0.99, METRIC.QUEUE_WAIT, MODEL, "model"), "{{model}} p99", exemplar=True),
        target(quantile(0.5, METRIC.QUEUE_WAIT, MODEL, "model"), "{{model}} p50"),
    )
    yield ts(
        "Time to first byte P99 (streamed responses)",
        "How long streamed responses (server-sent events, token streams) take to send their first chunk.",
        "s",
        target(quantile(0.99, METRIC.TIME_TO_FIRST_BYTE, MODEL, "model"), "{{model}} p99", exemplar=True),
        target(quantile(0.5, METRIC.TIME_TO_FIRST_BYTE, MODEL, "model"), "{{model}} p50"),
    )
    yield heat(
        "Batch size distribution",
        "How full are executed batches (requests per batch)?",
        "short",
        target(heatmap_expr(METRIC.BATCH_SIZE, MODEL), "{{le}}", fmt=pm.PromQueryFormat.HEATMAP),
    )
    yield ts(
        "Mean and P99 batch size",
        "Did the batcher start running smaller or larger batches?",
        "short",
        target(mean(METRIC.BATCH_SIZE, MODEL, "model"), "{{model}} mean"),
        target(quantile(0.99, METRIC.BATCH_SIZE, MODEL, "model"), "{{model}} p99"),
    )

    yield "Inputs"
    payload = ts(
        "Payload size P99 against request latency P99",
        "Do slow requests follow larger payloads (bytes, left) - latency P99 on the right axis?",
        "bytes",
        target(quantile(0.99, METRIC.PAYLOAD_SIZE, MODEL, "model, direction"), "{{model}} {{direction}}"),
        target(quantile(0.99, METRIC.REQUEST_DURATION, REQ, "model"), "{{model}} latency p99"),
    )
    yield on_right(payload, "B", "s")
    yield ts(
        "Input tokens P50 / P99",
        "Are inputs getting longer (tokens per input of text pipelines)?",
        "short",
        target(quantile(0.5, METRIC.INPUT_TOKENS, MODEL, "model"), "{{model}} p50"),
        target(quantile(0.99, METRIC.INPUT_TOKENS, MODEL, "model"), "{{model}} p99"),
    )

    yield "Errors"
    errors = rate(METRIC.ERRORS.sample_name, MODEL, "model, stage, exception_type")
    yield ts(
        "Errors by stage and exception type",
        "Which stage raises which exception, and how often?",
        "ops",
        target(errors, "{{model}} / {{stage}}: {{exception_type}}"),
    )
    yield table_panel(
        "Errors over the range",
        "Which exceptions dominate over the whole time range?",
        "short",
        target(
            f"sort_desc(sum by (model, stage, exception_type) "
            f"(increase({METRIC.ERRORS.sample_name}{{{MODEL}}}[$__range])))",
            fmt=pm.PromQueryFormat.TABLE,
            instant=True,
        ),
        rename={"Value": "errors"},
    )

    yield "Cold start"
    yield ts(
        "Model load and first request",
        "How long did each model version take to load, and to serve its first request (cold start)?",
        "s",
        target(gauge(METRIC.MODEL_LOAD_DURATION, REQ, "model, version"), "{{model}} {{version}} load"),
        target(gauge(METRIC.FIRST_REQUEST_DURATION, REQ, "model, version"), "{{model}} {{version}} first request"),
        step=True,
    )
    yield ts(
        "Cold start by phase",
        "Where did the last cold start go: process start, imports, model load (files read, moved to the device,"
        " warm-up) or the first request? The trace named cold_start shows the same as a tree.",
        "s",
        target(gauge(METRIC.COLD_START, REQ, "model, phase"), "{{model}} {{phase}}"),
        step=True,
    )
    yield from diagnosis()


def diagnosis() -> Iterable[Any]:
    """Computing or waiting per stage, the GIL, and the time outside the stages (docs/diagnosis.md)."""
    yield "Computing or waiting"
    yield ts(
        "Stage mean wall time and CPU time",
        "Did a stage compute more (CPU grew with wall time) or wait more (locks, I/O, the GIL, a GPU sync)?",
        "s",
        target(mean(METRIC.STAGE_DURATION, MODEL, "model, stage"), "{{model}} / {{stage}} wall"),
        target(mean(METRIC.STAGE_CPU, MODEL, "model, stage"), "{{model}} / {{stage}} cpu"),
    )
    yield ts(
        "Time outside the stages P99 / P50",
        "Do requests queue for a worker thread, or spend longer in the framework, outside every stage?",
        "s",
        target(quantile(0.99, METRIC.OUTSIDE_STAGES, MODEL, "model"), "{{model}} p99", exemplar=True),
        target(quantile(0.5, METRIC.OUTSIDE_STAGES, MODEL, "model"), "{{model}} p50"),
    )
    yield ts(
        "GIL wait P99 by instance",
        "How late does a thread get the GIL back (probe after a 5 ms sleep)? Over 5 ms: GIL contention.",
        "s",
        target(quantile(0.99, METRIC.GIL_WAIT, INST, "instance"), "{{instance}}"),
    )


def gpu() -> Iterable[Any]:
    yield "Model stages (same time axis as the GPU panels)"
    yield ts(
        "Stage P99 by model and stage",
        "Does a latency change line up with a change on the GPU below?",
        "s",
        target(quantile(0.99, METRIC.STAGE_DURATION, MODEL, "model, stage"), "{{model}} / {{stage}}", exemplar=True),
        span=24,
        height=7,
    )

    yield from shared_gpu()

    yield "Device"
    yield state(
        "GPU up",
        "Is the sampler reading each GPU (down after an NVML failure)?",
        flag_mappings("down", "up", zero_color="red", one_color="green"),
        target(gauge(METRIC.GPU_UP, GPU, "gpu, uuid"), "GPU {{gpu}}"),
        span=12,
        height=5,
    )
    yield table_panel(
        "Profiling mode",
        "Which kernel-counter source is active per GPU (GPM on Hopper+, else NVML utilization only)?",
        "none",
        target(
            f"{gauge(METRIC.GPU_PROFILING_MODE, GPU, 'gpu, uuid, mode')} > 0",
            fmt=pm.PromQueryFormat.TABLE,
            instant=True,
        ),
        span=12,
        height=5,
    )
    yield ts(
        "Utilization",
        "Is a kernel running (GPU) and is memory busy, share of time?",
        "percentunit",
        target(gauge(METRIC.GPU_UTILIZATION, GPU, "gpu"), "GPU {{gpu}} kernel"),
        target(gauge(METRIC.GPU_MEMORY_UTILIZATION, GPU, "gpu"), "GPU {{gpu}} memory"),
    )
    memory = ts(
        "Memory used / total",
        "Is device memory close to full (this process vs. all)?",
        "bytes",
        target(gauge(METRIC.GPU_MEMORY_USED, GPU, "gpu"), "GPU {{gpu}} used"),
        target(gauge(METRIC.GPU_MEMORY_TOTAL, GPU, "gpu"), "GPU {{gpu}} total"),
        target(gauge(METRIC.GPU_PROCESS_MEMORY, GPU, "gpu", "sum"), "GPU {{gpu}} this process"),
    )
    yield dashed(memory, "B", color="orange")
    yield ts(
        "Power",
        "How much power does each GPU draw (sampled, and from the energy counter)?",
        "watt",
        target(gauge(METRIC.GPU_POWER, GPU, "gpu"), "GPU {{gpu}}"),
        target(rate(METRIC.GPU_ENERGY.sample_name, GPU, "gpu"), "GPU {{gpu}} from energy"),
    )
    yield ts(
        "Temperature",
        "Is a GPU running hot (and likely to throttle)?",
        "celsius",
        target(gauge(METRIC.GPU_TEMPERATURE, GPU, "gpu"), "GPU {{gpu}}"),
    )
    yield ts(
        "SM and memory clocks",
        "Did the clocks drop (throttling, power capping)?",
        "hertz",
        target(gauge(METRIC.GPU_SM_CLOCK, GPU, "gpu"), "GPU {{gpu}} SM"),
        target(gauge(METRIC.GPU_MEMORY_CLOCK, GPU, "gpu"), "GPU {{gpu}} memory"),
    )
    yield state(
        "Clock throttle reasons",
        "Which throttle reason is active when clocks drop?",
        flag_mappings("inactive", "active"),
        target(gauge(METRIC.GPU_THROTTLE, GPU, "gpu, reason"), "GPU {{gpu}} {{reason}}"),
    )
    yield ts(
        "PCIe throughput",
        "Is host-device transfer a bottleneck (inputs, outputs, weights)?",
        "Bps",
        target(gauge(METRIC.GPU_PCIE_TX, GPU, "gpu"), "GPU {{gpu}} tx"),
        target(gauge(METRIC.GPU_PCIE_RX, GPU, "gpu"), "GPU {{gpu}} rx"),
    )
    yield ts(
        "ECC and XID errors",
        "Is the hardware or driver reporting errors?",
        "short",
        target(
            f"sum by (gpu, type) (increase({METRIC.GPU_ECC_ERRORS.sample_name}{{{GPU}}}[{RATE}]))",
            "GPU {{gpu}} ECC {{type}}",
        ),
        target(
            f"sum by (gpu, xid) (increase({METRIC.GPU_XID_ERRORS.sample_name}{{{GPU}}}[{RATE}]))",
            "GPU {{gpu}} XID {{xid}}",
        ),
        target(rate(METRIC.GPU_SAMPLER_ERRORS.sample_name, INST, "call"), "sampler: {{call}}"),
        bars=True,
    )

    yield "Kernel counters (GPM)"
    yield ts(
        "SM active and occupancy",
        "Are the SMs busy, and with how many warps?",
        "percentunit",
        target(gauge(METRIC.GPU_SM_ACTIVE, GPU, "gpu"), "GPU {{gpu}} SM active"),
        target(gauge(METRIC.GPU_SM_OCCUPANCY, GPU, "gpu"), "GPU {{gpu}} occupancy"),
    )
    yield ts(
        "Tensor cores and DRAM",
        "Is the model using tensor cores, or bound by memory bandwidth?",
        "percentunit",
        target(gauge(METRIC.GPU_TENSOR_ACTIVE, GPU, "gpu"), "GPU {{gpu}} tensor"),
        target(gauge(METRIC.GPU_DRAM_ACTIVE, GPU, "gpu"), "GPU {{gpu}} DRAM"),
    )
    yield ts(
        "FP16 / FP32 / FP64 pipes",
        "Which precision do the kernels run in?",
        "percentunit",
        target(gauge(METRIC.GPU_FP16_ACTIVE, GPU, "gpu"), "GPU {{gpu}} FP16"),
        target(gauge(METRIC.GPU_FP32_ACTIVE, GPU, "gpu"), "GPU {{gpu}} FP32"),
        target(gauge(METRIC.GPU_FP64_ACTIVE, GPU, "gpu"), "GPU {{gpu}} FP64"),
    )
    yield ts(
        "NVLink throughput",
        "Is GPU-to-GPU traffic significant (tensor parallel, all-reduce)?",
        "Bps",
        target(gauge(METRIC.GPU_NVLINK_TX, GPU, "gpu"), "GPU {{gpu}} tx"),
        target(gauge(METRIC.GPU_NVLINK_RX, GPU, "gpu"), "GPU {{gpu}} rx"),
    )

    yield "Per request on the GPU (exemplars link to the model span)"
    yield ts(
        "GPU kernel time vs. stage wall time (P50)",
        "Is a stage waiting on the GPU (kernel time close to wall time) or on the host?",
        "s",
        target(
            quantile(0.5, METRIC.STAGE_GPU_BUSY, MODEL, "model, stage"), "{{model}} / {{stage}} GPU busy", exemplar=True
        ),
        target(quantile(0.5, METRIC.STAGE_DURATION, MODEL, "model, stage"), "{{model}} / {{stage}} wall"),
    )
    yield ts(
        "Share of stage time on the GPU",
        "What share of each stage's wall time do CUDA kernels take?",
        "percentunit",
        target(
            f"{rate(hsum(METRIC.STAGE_GPU_BUSY), MODEL, 'model, stage')} / on (model, stage) "
            f"{rate(hsum(METRIC.STAGE_DURATION), MODEL, 'model, stage')}",
            "{{model}} / {{stage}}",
        ),
    )
    yield heat(
        "GPU kernel time per stage",
        "How is per-request kernel time distributed, and which request is the outlier (exemplars)?",
        "s",
        target(heatmap_expr(METRIC.STAGE_GPU_BUSY, MODEL), "{{le}}", exemplar=True, fmt=pm.PromQueryFormat.HEATMAP),
    )
    yield heat(
        "SM activity per stage",
        "How busy were the SMs during each request's stage (GPM delta or sampler window)?",
        "percentunit",
        target(
            heatmap_expr(METRIC.STAGE_GPU_SM_ACTIVE, MODEL), "{{le}}", exemplar=True, fmt=pm.PromQueryFormat.HEATMAP
        ),
    )


def shared_gpu() -> Iterable[Any]:
    """Who uses each GPU, what it costs, and whether a neighbour took it (GPUNoisyNeighbour)."""
    seconds = METRIC.MODEL_GPU_SECONDS.sample_name
    per_model = rate(seconds, f"{MODEL}, {GPU}", "model, uuid")
    per_gpu = rate(seconds, GPU, "uuid")  # every model, so the shares of the selected ones are true
    requests = rate(hcount(METRIC.REQUEST_DURATION), MODEL, "model")
    price = f"max by (uuid) ({METRIC.GPU_HOURLY_COST.name}{{{GPU}}} / 3600)"
    yield "Shared GPU: who uses it, what it costs"
    yield ts(
        "GPU share per model",
        "Which model takes each GPU's time? Each model's GPU-seconds over all models' on that GPU "
        "(measured with CUDA events, or estimated; see the span's infersight.gpu.seconds_source).",
        "percentunit",
        target(f"{per_model} / on (uuid) group_left {per_gpu}", "{{model}} on {{uuid}}"),
        stack=True,
    )
    slo = ts(
        "P99 per model, against its objective",
        "Did a model's latency rise when another model's GPU share rose (left)?",
        "s",
        target(quantile(0.99, METRIC.REQUEST_DURATION, REQ, "model"), "{{model}} P99"),
        target(gauge(METRIC.MODEL_SLO_P99, MODEL, "model"), "{{model}} objective"),
    )
    yield dashed(slo, "B")
    yield ts(
        "GPU-seconds per 1000 requests",
        "How much GPU time does a model spend to serve 1000 requests?",
        "s",
        target(f"1000 * sum by (model) ({per_model}) / {requests}", "{{model}}"),
    )
    yield ts(
        "Cost per 1000 requests",
        "What do 1000 requests of each model cost, at the price per GPU-hour set in "
        "INFERSIGHT_GPU_HOURLY_COST (empty without a price)?",
        "short",
        target(
            f"1000 * sum by (model) ({per_model} * on (uuid) group_left {price}) / {requests}",
            "{{model}}",
        ),
    )
    yield ts(
        "Processes on each GPU",
        "How many processes share each GPU (time-sliced when more than one), and how busy is this one?",
        "short",
        target(gauge(METRIC.GPU_COMPUTE_PROCESSES, GPU, "gpu, uuid"), "GPU {{gpu}} processes"),
        target(gauge(METRIC.GPU_TIME_SLICED, GPU, "gpu, uuid"), "GPU {{gpu}} time-sliced"),
        target(gauge(METRIC.GPU_PROCESS_SM_UTILIZATION, GPU, "gpu, instance"), "GPU {{gpu}} {{instance}} SM share"),
    )
    memory = ts(
        "Memory pressure: processes and torch's allocator",
        "How close is each process to the device's memory, and how much of torch's reserved memory "
        "holds no tensor (cache, fragmentation)? OOM errors counted on the right.",
        "bytes",
        target(gauge(METRIC.GPU_PROCESS_MEMORY, GPU, "gpu, instance", "sum"), "GPU {{gpu}} {{instance}} process"),
        target(
            gauge(METRIC.GPU_TORCH_RESERVED, GPU, "gpu, instance", "sum"), "GPU {{gpu}} {{instance}} torch reserved"
        ),
        target(
            gauge(METRIC.GPU_TORCH_ALLOCATED, GPU, "gpu, instance", "sum"), "GPU {{gpu}} {{instance}} torch allocated"
        ),
        target(gauge(METRIC.GPU_MEMORY_TOTAL, GPU, "gpu"), "GPU {{gpu}} total"),
        target(f"sum by (gpu) (increase({METRIC.GPU_TORCH_OOMS.sample_name}{{{GPU}}}[{RATE}]))", "GPU {{gpu}} OOMs"),
    )
    yield on_right(memory, "E", "short")
    yield state(
        "GPU sampler up",
        "Is each process's GPU sampler reading its GPUs (down: INFERSIGHT_GPU=on but NVML failed)?",
        flag_mappings("down", "up", zero_color="red", one_color="green"),
        target(gauge(METRIC.GPU_SAMPLER_UP, INST, "instance"), "{{instance}}"),
        height=4,
    )


def drift() -> Iterable[Any]:
    yield "Verdict"
    yield state(
        "Drift detected",
        "Has each model's input distribution drifted from its reference?",
        flag_mappings("no drift", "drift"),
        target(gauge(METRIC.DRIFT_DETECTED, MODEL, "model"), "{{model}}"),
        span=12,
        height=6,
    )
    yield ts(
        "Drift share",
        "What share of features drifted (against the dataset threshold)?",
        "percentunit",
        target(gauge(METRIC.DRIFT_SHARE, MODEL, "model"), "{{model}}"),
        step=True,
        height=6,
    )
    yield "Per feature"
    yield table_panel(
        "Per-feature drift score (latest)",
        "Which features drifted, by which method and score?",
        "short",
        target(gauge(METRIC.DRIFT_SCORE, MODEL, "model, feature, method"), fmt=pm.PromQueryFormat.TABLE, instant=True),
        target(
            gauge(METRIC.DRIFT_FEATURE_DRIFTED, MODEL, "model, feature, method"),
            fmt=pm.PromQueryFormat.TABLE,
            instant=True,
        ),
        rename={"Value #A": "score", "Value #B": "drifted"},
    )
    yield ts(
        "Per-feature drift score",
        "How did each feature's drift statistic move over time (see method for its direction)?",
        "short",
        target(gauge(METRIC.DRIFT_SCORE, MODEL, "model, feature, method"), "{{model}} / {{feature}} ({{method}})"),
        step=True,
    )
    yield "Drift runs"
    yield ts(
        "Window samples",
        "How many samples did the last drift window hold?",
        "short",
        target(gauge(METRIC.DRIFT_WINDOW_SAMPLES, MODEL, "model"), "{{model}}"),
        target(
            rate(METRIC.DRIFT_SAMPLES_CAPTURED.sample_name, MODEL, "model") + " * 60", "{{model}} captured per minute"
        ),
        step=True,
        span=8,
    )
    yield state(
        "Insufficient data",
        "Was the last window too small to give a drift verdict?",
        flag_mappings("enough data", "insufficient", one_color="orange"),
        target(gauge(METRIC.DRIFT_INSUFFICIENT_DATA, MODEL, "model"), "{{model}}"),
        span=8,
        height=8,
    )
    yield ts(
        "Last run age and run duration",
        "Are drift runs still happening, and how long do they take?",
        "s",
        target(f"time() - {gauge(METRIC.DRIFT_LAST_RUN, MODEL, 'model')}", "{{model}} age"),
        target(gauge(METRIC.DRIFT_RUN_DURATION, MODEL, "model"), "{{model}} run duration"),
        span=8,
    )
    yield ts(
        "Drift run errors",
        "Are drift runs failing, and why?",
        "short",
        target(
            f"sum by (model, reason) (increase({METRIC.DRIFT_ERRORS.sample_name}{{{MODEL}}}[{RATE}]))",
            "{{model}}: {{reason}}",
        ),
        bars=True,
    )
    yield "Inputs next to drift"
    yield ts(
        "Input tokens P50 / P99",
        "Did input length change when drift was flagged?",
        "short",
        target(quantile(0.5, METRIC.INPUT_TOKENS, MODEL, "model"), "{{model}} p50"),
        target(quantile(0.99, METRIC.INPUT_TOKENS, MODEL, "model"), "{{model}} p99"),
        span=12,
    )
    yield ts(
        "Payload size P50 / P99",
        "Did request or response size change when drift was flagged?",
        "bytes",
        target(quantile(0.5, METRIC.PAYLOAD_SIZE, MODEL, "model, direction"), "{{model}} {{direction}} p50"),
        target(quantile(0.99, METRIC.PAYLOAD_SIZE, MODEL, "model, direction"), "{{model}} {{direction}} p99"),
        span=12,
    )


def _gpu_variable() -> db.QueryVariable:
    return _query_variable("gpu", "GPU", f"label_values({METRIC.GPU_UP.name}{{{INST}}}, uuid)")


DASHBOARDS = (
    DashboardSpec(
        "infersight-overview",
        "infersight / Inference overview",
        "Traffic, errors and latency per model against its P99 objective.",
        overview,
    ),
    DashboardSpec(
        "infersight-stages",
        "infersight / Stage drill-down",
        "Per-stage latency, queueing, batching, inputs, errors and cold starts.",
        stages,
    ),
    DashboardSpec(
        "infersight-gpu",
        "infersight / GPU",
        "GPU device and kernel counters on the same time axis as model-stage latency.",
        gpu,
        (_gpu_variable,),
    ),
    DashboardSpec(
        "infersight-drift",
        "infersight / Drift",
        "Input drift verdicts per model and feature, next to input size.",
        drift,
    ),
)


def _query_variable(name: str, label: str, query: str) -> db.QueryVariable:
    return (
        db.QueryVariable(name)
        .label(label)
        .datasource(DS)
        .query(query)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
    )


def variables() -> list[Any]:
    count = hcount(METRIC.REQUEST_DURATION)
    return [
        db.DatasourceVariable("datasource").label("Data source").type("prometheus"),
        _query_variable("model", "Model", f"label_values({count}, model)"),
        _query_variable("version", "Version", f'label_values({count}{{model=~"$model"}}, version)'),
        _query_variable("instance", "Instance", f"label_values({count}, instance)"),
    ]


def build(spec: DashboardSpec) -> dict[str, Any]:
    dash = (
        db.Dashboard(spec.title)
        .uid(spec.uid)
        .description(spec.description)
        .tags([TAG])
        .time("now-1h", "now")
        .refresh("30s")
        .timezone("browser")
        .editable()
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .annotation(
            db.AnnotationQuery()
            .name("Annotations & Alerts")
            .type("dashboard")
            .icon_color("rgba(0, 211, 255, 1)")
            .datasource(dm.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
        )
    )
    for var in [*variables(), *(make() for make in spec.extra_variables)]:
        dash = dash.with_variable(var)
    for other in DASHBOARDS:
        if other.uid != spec.uid:
            dash = dash.link(
                db.DashboardLink(other.title.removeprefix("infersight / "))
                .type(dm.DashboardLinkType.LINK)
                .url(f"/d/{other.uid}")
                .icon("dashboard")
                .include_vars(True)
                .keep_time(True)
            )
    # The SDK leaves panel ids at 0; number rows and panels in order so the ids are stable.
    for panel_id, item in enumerate(spec.build(), start=1):
        if isinstance(item, str):
            dash = dash.with_row(db.Row(item).id(panel_id))
            continue
        dash = dash.with_panel(item.id(panel_id))
    doc: dict[str, Any] = json.loads(json.dumps(dash.build(), cls=JSONEncoder))
    # The SDK's AnnotationQuery has no builtIn field; without it Grafana adds a second copy.
    doc["annotations"]["list"][0]["builtIn"] = 1
    return doc


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def rendered() -> dict[str, str]:
    """File name -> text of every dashboard."""
    return {f"{spec.uid}.json": render(build(spec)) for spec in DASHBOARDS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="fail if a committed file differs from the code")
    parser.add_argument("--output-dir", type=Path, default=OUTPUT_DIR, help="where the JSON files live")
    args = parser.parse_args(argv)
    out: Path = args.output_dir
    files = rendered()
    if args.check:
        stale = [name for name, text in files.items() if not (out / name).is_file() or (out / name).read_text() != text]
        extra = sorted(p.name for p in out.glob("*.json") if p.name not in files) if out.is_dir() else []
        for name in stale:
            print(f"stale: {out / name} (run: python grafana-dashboards/generate.py)", file=sys.stderr)
        for name in extra:
            print(f"stale: {out / name} is not generated by grafana-dashboards/generate.py", file=sys.stderr)
        return 1 if stale or extra else 0
    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (out / name).write_text(text)
    for path in out.glob("*.json"):
        if path.name not in files:
            path.unlink()  # a dashboard removed from the code
    return 0


if __name__ == "__main__":
    sys.exit(main())
