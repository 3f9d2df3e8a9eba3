"""Every metric, span, attribute and label name infersight emits, defined once.

The rules in ``prometheus-rules/``, the dashboards in ``grafana-dashboards/`` and the
metric table in ``docs/metrics.md`` are generated from or checked against this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "ALL_METRICS",
    "ATTR",
    "EVENT",
    "LATENCY_BUCKETS",
    "METRIC",
    "SERVER_TIMING_HEADER",
    "SERVER_TIMING_TOTAL",
    "SPAN",
    "STAGES",
    "TRITON",
    "MetricSpec",
]

PREFIX = "infersight"

STAGES = ("preprocess", "model", "postprocess")

# From 100 us (a tiny model on a GPU) to 60 s (a batch model on a CPU).
LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.25,
    0.5,
    0.75,
    1.0,
    1.5,
    2.5,
    5.0,
    10.0,
    20.0,
    30.0,
    60.0,
)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
PAYLOAD_BYTES_BUCKETS = (64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216)
TOKEN_BUCKETS = (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
# How late a thread gets the GIL back: from 100 us (idle) to 1 s (a thread that never yields).
GIL_WAIT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
RATIO_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)

MetricType = Literal["counter", "gauge", "histogram"]


@dataclass(frozen=True)
class MetricSpec:
    """One exported metric. ``name`` is the Prometheus family name (no ``_total`` for counters)."""

    name: str
    type: MetricType
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()

    @property
    def sample_name(self) -> str:
        """The name of the sample that queries use (``_total`` for counters)."""
        return f"{self.name}_total" if self.type == "counter" else self.name


def _m(
    name: str, type_: MetricType, help_: str, labels: tuple[str, ...] = (), buckets: tuple[float, ...] = ()
) -> MetricSpec:
    return MetricSpec(f"{PREFIX}_{name}", type_, help_, labels, buckets)


class METRIC:
    """Metric specs. Labels from traffic (model, endpoint) are bounded; see ``Config``."""

    # Requests and stages
    REQUEST_DURATION = _m(
        "request_duration_seconds",
        "histogram",
        "Server-side request latency, from the first byte received to the response returned.",
        ("model", "version", "endpoint", "outcome"),
        LATENCY_BUCKETS,
    )
    STAGE_DURATION = _m(
        "stage_duration_seconds",
        "histogram",
        "Latency of one stage (preprocess, model, postprocess, or a custom stage) of a request.",
        ("model", "stage"),
        LATENCY_BUCKETS,
    )
    STAGE_CPU = _m(
        "stage_cpu_seconds",
        "histogram",
        "CPU time of the stage's thread during the stage; wall time minus this is waiting (locks, I/O, GIL, GPU).",
        ("model", "stage"),
        LATENCY_BUCKETS,
    )
    OUTSIDE_STAGES = _m(
        "outside_stages_seconds",
        "histogram",
        "Part of a request that no stage covers: parsing, the framework, queueing in the server's threads.",
        ("model",),
        LATENCY_BUCKETS,
    )
    GIL_WAIT = _m(
        "gil_wait_seconds",
        "histogram",
        "How late a probe thread woke from a 5 ms sleep: time spent waiting for the GIL (and the CPU).",
        (),
        GIL_WAIT_BUCKETS,
    )
    TIME_TO_FIRST_BYTE = _m(
        "time_to_first_byte_seconds",
        "histogram",
        "Streaming responses: time from the request's first byte to the response's first body chunk.",
        ("model", "version", "endpoint"),
        LATENCY_BUCKETS,
    )
    # Outgoing calls (requests, httpx, gRPC channels): the client's side of the layered view
    CLIENT_REQUEST_DURATION = _m(
        "client_request_duration_seconds",
        "histogram",
        "Client-side latency of an outgoing call, from sending the request to the response returned.",
        ("target", "endpoint", "outcome"),
        LATENCY_BUCKETS,
    )
    CLIENT_NETWORK = _m(
        "client_network_seconds",
        "histogram",
        "Outgoing calls whose response carried Server-Timing: the client's time minus the server's total "
        "(network, plus any queueing outside the server's handler).",
        ("target", "endpoint"),
        LATENCY_BUCKETS,
    )
    REQUESTS_IN_FLIGHT = _m("requests_in_flight", "gauge", "Requests being served now.", ())
    QUEUE_WAIT = _m(
        "queue_wait_seconds",
        "histogram",
        "Time a request waited in the server's queue before its batch started.",
        ("model",),
        LATENCY_BUCKETS,
    )
    BATCH_SIZE = _m("batch_size", "histogram", "Requests per executed batch.", ("model",), BATCH_SIZE_BUCKETS)
    PAYLOAD_SIZE = _m(
        "payload_size_bytes",
        "histogram",
        "Request and response body size.",
        ("model", "direction"),
        PAYLOAD_BYTES_BUCKETS,
    )
    INPUT_TOKENS = _m("input_tokens", "histogram", "Tokens per input of a text pipeline.", ("model",), TOKEN_BUCKETS)
    ERRORS = _m(
        "errors",
        "counter",
        "Exceptions raised by user code, by stage and exception type.",
        ("model", "stage", "exception_type"),
    )
    MODEL_LOAD_DURATION = _m(
        "model_load_duration_seconds",
        "gauge",
        "How long the last load of the model took (cold start).",
        ("model", "version"),
    )
    FIRST_REQUEST_DURATION = _m(
        "first_request_duration_seconds",
        "gauge",
        "Latency of the first request a model served after it loaded.",
        ("model", "version"),
    )
    COLD_START = _m(
        "cold_start_seconds",
        "gauge",
        "The last cold start of a model, by phase: process_start, imports, model_load (read_weights, "
        "to_device, warm_up), first_request, and total.",
        ("model", "phase"),
    )
    MODEL_SLO_P99 = _m(
        "model_slo_p99_seconds",
        "gauge",
        "The model's configured P99 latency objective; alert rules join on it.",
        ("model",),
    )
    REQUESTS_OVER_SLO = _m(
        "requests_over_slo",
        "counter",
        "Requests slower than the model's P99 objective; the error budget of burn-rate alerts.",
        ("model",),
    )
    MODEL_INFO = _m("model_info", "gauge", "1 for each configured or seen model and its version.", ("model", "version"))

    # SDK health
    SDK_ERRORS = _m(
        "sdk_errors", "counter", "Errors inside infersight itself, swallowed so the request goes on.", ("component",)
    )
    SPANS_DROPPED = _m(
        "spans_dropped", "counter", "Spans or request records dropped by infersight before export.", ("reason",)
    )
    SPANS_EXPORTED = _m(
        "spans_exported", "counter", "Spans the exporter delivered (the backend acknowledged them).", ()
    )
    OVERHEAD_CPU_RATIO = _m(
        "overhead_cpu_ratio",
        "gauge",
        "Share of the process's CPU that infersight's worker and span export threads used, over the last second.",
        (),
    )
    RECORDS_PROCESSED = _m(
        "records_processed", "counter", "Request and stage records turned into spans and metrics.", ()
    )
    LABEL_OVERFLOW = _m(
        "label_overflow",
        "counter",
        "Label values collapsed into 'other' because the label hit its cardinality limit.",
        ("label",),
    )

    # GPU device metrics (background sampler)
    GPU_UP = _m(
        "gpu_up", "gauge", "1 while the GPU sampler reads this GPU, 0 after it failed.", ("gpu", "uuid", "name")
    )
    GPU_SAMPLER_ERRORS = _m("gpu_sampler_errors", "counter", "NVML calls that failed, by call.", ("call",))
    GPU_PROFILING_MODE = _m(
        "gpu_profiling_mode",
        "gauge",
        "1 for the active kernel-counter source: 'gpm' (Hopper+) or 'nvml' (utilization only).",
        ("gpu", "uuid", "mode"),
    )
    GPU_UTILIZATION = _m(
        "gpu_utilization_ratio", "gauge", "Share of time a kernel ran (NVML), 0-1.", ("gpu", "uuid", "name")
    )
    GPU_MEMORY_UTILIZATION = _m(
        "gpu_memory_utilization_ratio",
        "gauge",
        "Share of time device memory was read or written (NVML), 0-1.",
        ("gpu", "uuid", "name"),
    )
    GPU_MEMORY_USED = _m("gpu_memory_used_bytes", "gauge", "Device memory in use.", ("gpu", "uuid", "name"))
    GPU_MEMORY_TOTAL = _m("gpu_memory_total_bytes", "gauge", "Device memory in all.", ("gpu", "uuid", "name"))
    GPU_POWER = _m("gpu_power_watts", "gauge", "Power draw.", ("gpu", "uuid", "name"))
    GPU_ENERGY = _m("gpu_energy_joules", "counter", "Energy used since the driver loaded.", ("gpu", "uuid", "name"))
    GPU_TEMPERATURE = _m("gpu_temperature_celsius", "gauge", "GPU core temperature.", ("gpu", "uuid", "name"))
    GPU_SM_CLOCK = _m("gpu_sm_clock_hertz", "gauge", "SM clock.", ("gpu", "uuid", "name"))
    GPU_MEMORY_CLOCK = _m("gpu_memory_clock_hertz", "gauge", "Memory clock.", ("gpu", "uuid", "name"))
    GPU_THROTTLE = _m(
        "gpu_clock_throttle",
        "gauge",
        "1 while this clock-throttle reason is active, else 0.",
        ("gpu", "uuid", "reason"),
    )
    GPU_PCIE_TX = _m("gpu_pcie_tx_bytes_per_second", "gauge", "PCIe transmit rate.", ("gpu", "uuid", "name"))
    GPU_PCIE_RX = _m("gpu_pcie_rx_bytes_per_second", "gauge", "PCIe receive rate.", ("gpu", "uuid", "name"))
    GPU_ECC_ERRORS = _m(
        "gpu_ecc_errors", "counter", "ECC errors since the driver loaded, by type.", ("gpu", "uuid", "type")
    )
    GPU_XID_ERRORS = _m(
        "gpu_xid_errors", "counter", "XID (driver-reported) errors seen, by XID code.", ("gpu", "uuid", "xid")
    )
    GPU_PROCESS_MEMORY = _m(
        "gpu_process_memory_used_bytes", "gauge", "Device memory used by this process.", ("gpu", "uuid")
    )
    GPU_SAMPLER_UP = _m(
        "gpu_sampler_up",
        "gauge",
        "1 while the GPU sampler runs and reads at least one GPU; 0 when INFERSIGHT_GPU=on but it can't.",
        (),
    )
    GPU_COMPUTE_PROCESSES = _m(
        "gpu_compute_processes",
        "gauge",
        "Processes with a CUDA context on this GPU (NVML), this one included.",
        ("gpu", "uuid"),
    )
    GPU_TIME_SLICED = _m(
        "gpu_time_sliced",
        "gauge",
        "1 while more than one process has a CUDA context on this (non-MIG) GPU, so they take turns.",
        ("gpu", "uuid"),
    )
    GPU_PROCESS_SM_UTILIZATION = _m(
        "gpu_process_sm_utilization_ratio",
        "gauge",
        "Share of time this process had a kernel running on this GPU (NVML per-process utilization), 0-1.",
        ("gpu", "uuid"),
    )
    GPU_HOURLY_COST = _m(
        "gpu_hourly_cost",
        "gauge",
        "Configured price of one hour of this GPU (INFERSIGHT_GPU_HOURLY_COST), in your currency.",
        ("gpu", "uuid", "name"),
    )
    GPU_TORCH_ALLOCATED = _m(
        "gpu_torch_allocated_bytes",
        "gauge",
        "Memory held by tensors in torch's CUDA caching allocator (this process).",
        ("gpu", "uuid"),
    )
    GPU_TORCH_RESERVED = _m(
        "gpu_torch_reserved_bytes",
        "gauge",
        "Memory torch's CUDA caching allocator reserved from the device (this process).",
        ("gpu", "uuid"),
    )
    GPU_TORCH_OOMS = _m(
        "gpu_torch_ooms",
        "counter",
        "CUDA out-of-memory errors torch's caching allocator raised (this process).",
        ("gpu", "uuid"),
    )
    MODEL_GPU_SECONDS = _m(
        "model_gpu_seconds",
        "counter",
        "GPU time of each model's model stages: measured (CUDA events), a batch's share, or estimated.",
        ("model", "gpu", "uuid"),
    )
    # GPU kernel-level counters (GPM), normalised like DCGM_FI_PROF_*: ratios 0-1, bytes/s.
    GPU_SM_ACTIVE = _m("gpu_sm_active_ratio", "gauge", "SM active (GPM).", ("gpu", "uuid"))
    GPU_SM_OCCUPANCY = _m("gpu_sm_occupancy_ratio", "gauge", "SM occupancy (GPM).", ("gpu", "uuid"))
    GPU_TENSOR_ACTIVE = _m("gpu_tensor_active_ratio", "gauge", "Any tensor pipe active (GPM).", ("gpu", "uuid"))
    GPU_DRAM_ACTIVE = _m("gpu_dram_active_ratio", "gauge", "DRAM bandwidth utilization (GPM).", ("gpu", "uuid"))
    GPU_FP16_ACTIVE = _m("gpu_fp16_active_ratio", "gauge", "FP16 pipe (GPM).", ("gpu", "uuid"))
    GPU_FP32_ACTIVE = _m("gpu_fp32_active_ratio", "gauge", "FP32 pipe (GPM).", ("gpu", "uuid"))
    GPU_FP64_ACTIVE = _m("gpu_fp64_active_ratio", "gauge", "FP64 pipe (GPM).", ("gpu", "uuid"))
    GPU_NVLINK_TX = _m("gpu_nvlink_tx_bytes_per_second", "gauge", "NVLink transmit (GPM).", ("gpu", "uuid"))
    GPU_NVLINK_RX = _m("gpu_nvlink_rx_bytes_per_second", "gauge", "NVLink receive (GPM).", ("gpu", "uuid"))
    # Per-request GPU figures, with exemplars pointing at the model span.
    STAGE_GPU_BUSY = _m(
        "stage_gpu_busy_seconds",
        "histogram",
        "CUDA kernel time inside a stage (CUDA events), to compare with its wall time.",
        ("model", "stage"),
        LATENCY_BUCKETS,
    )
    STAGE_GPU_SM_ACTIVE = _m(
        "stage_gpu_sm_active_ratio",
        "histogram",
        "SM activity over a stage's duration (GPM delta, or the sampler window around it).",
        ("model", "stage"),
        RATIO_BUCKETS,
    )

    # Drift (background evidently runs)
    DRIFT_SCORE = _m(
        "drift_score",
        "gauge",
        "Per-feature drift statistic as evidently reports it; see 'method' for its direction.",
        ("model", "feature", "method"),
    )
    DRIFT_FEATURE_DRIFTED = _m(
        "drift_feature_drifted",
        "gauge",
        "1 when the feature drifted by its method's threshold, else 0 (higher is worse).",
        ("model", "feature", "method"),
    )
    DRIFT_DETECTED = _m(
        "drift_detected",
        "gauge",
        "1 when the share of drifted features is at or above the dataset threshold.",
        ("model",),
    )
    DRIFT_SHARE = _m("drift_share_ratio", "gauge", "Share of features that drifted, 0-1.", ("model",))
    DRIFT_WINDOW_SAMPLES = _m("drift_window_samples", "gauge", "Samples in the last drift window.", ("model",))
    DRIFT_INSUFFICIENT_DATA = _m(
        "drift_insufficient_data",
        "gauge",
        "1 when the last window was too small or unusable, so no drift verdict was made.",
        ("model",),
    )
    DRIFT_LAST_RUN = _m("drift_last_run_timestamp_seconds", "gauge", "When the last drift run finished.", ("model",))
    DRIFT_RUN_DURATION = _m("drift_run_duration_seconds", "gauge", "How long the last drift run took.", ("model",))
    DRIFT_ERRORS = _m("drift_errors", "counter", "Drift runs that failed, by reason.", ("model", "reason"))
    DRIFT_SAMPLES_CAPTURED = _m(
        "drift_samples_captured", "counter", "Samples captured for drift on the request path.", ("model",)
    )


ALL_METRICS: tuple[MetricSpec, ...] = tuple(v for k, v in vars(METRIC).items() if isinstance(v, MetricSpec))


class SPAN:
    """Span names. Stage spans are named after the stage."""

    PREPROCESS = "preprocess"
    MODEL = "model"
    POSTPROCESS = "postprocess"
    REQUEST = "inference"  # root span for requests not served over HTTP or gRPC
    PIPELINE = "pipeline"  # + " <task>": root span of a pipeline called outside any request
    COLD_START = "cold_start"  # root of a cold start's span tree; its children are named by phase
    INSTRUMENTATION_SCOPE = "infersight"


class EVENT:
    """Span event names."""

    EXCEPTION = "exception"  # OTel semantic conventions


class ATTR:
    """Span attribute names. OTel semantic conventions where one exists."""

    # OTel semantic conventions
    HTTP_REQUEST_METHOD = "http.request.method"
    HTTP_ROUTE = "http.route"
    HTTP_RESPONSE_STATUS_CODE = "http.response.status_code"
    URL_PATH = "url.path"
    URL_SCHEME = "url.scheme"
    SERVER_ADDRESS = "server.address"
    SERVER_PORT = "server.port"
    CLIENT_ADDRESS = "client.address"
    USER_AGENT = "user_agent.original"
    RPC_SYSTEM = "rpc.system"
    RPC_SERVICE = "rpc.service"
    RPC_METHOD = "rpc.method"
    RPC_GRPC_STATUS_CODE = "rpc.grpc.status_code"
    ERROR_TYPE = "error.type"
    HTTP_REQUEST_BODY_SIZE = "http.request.body.size"
    HTTP_RESPONSE_BODY_SIZE = "http.response.body.size"
    SERVICE_NAME = "service.name"
    SERVICE_INSTANCE_ID = "service.instance.id"
    EXCEPTION_TYPE = "exception.type"
    EXCEPTION_MESSAGE = "exception.message"
    EXCEPTION_STACKTRACE = "exception.stacktrace"
    EXCEPTION_ESCAPED = "exception.escaped"
    # infersight's own
    SERVER_TIMING_TOTAL = "infersight.server_timing.total_s"  # the server's total, from its Server-Timing
    CLIENT_NETWORK = "infersight.client.network_s"  # client total minus the server's total
    MODEL_NAME = "infersight.model.name"
    MODEL_VERSION = "infersight.model.version"
    STAGE = "infersight.stage"
    BATCH_SIZE = "infersight.batch.size"
    QUEUE_WAIT = "infersight.queue.wait_s"
    PAYLOAD_SIZE = "infersight.payload.size"
    INPUT_TOKENS = "infersight.input.tokens"
    PIPELINE_TASK = "infersight.pipeline.task"
    GENERATOR_ABANDONED = "infersight.generator.abandoned"  # the consumer stopped a streaming stage early
    TRACE_KEPT = "infersight.trace.kept"  # why tail keep exported it: "error" | "slow" | "ratio"
    GPU_UUID = "infersight.gpu.uuid"
    GPU_BUSY_SECONDS = "infersight.gpu.busy_s"
    GPU_WALL_SECONDS = "infersight.gpu.wall_s"
    GPU_COUNTER_SOURCE = "infersight.gpu.counter_source"  # "gpm_delta" | "sampler_window"
    STAGE_CPU_SECONDS = "infersight.stage.cpu_s"  # thread CPU time inside the stage
    OUTSIDE_STAGES_SECONDS = "infersight.outside_stages_s"  # request time no stage covers
    GPU_SECONDS = "infersight.gpu.seconds"  # this request's GPU time in the stage
    # "measured" (CUDA events) | "batch_share" (a batch's measured time / its size) |
    # "estimated" (wall time x the GPU's utilization around the stage)
    GPU_SECONDS_SOURCE = "infersight.gpu.seconds_source"
    GPU_PREFIX = "infersight.gpu."  # + counter name, e.g. infersight.gpu.sm_active
    COLD_START_PHASE = "infersight.cold_start.phase"
    COLD_START_REQUEST_TRACE = "infersight.cold_start.request_trace_id"  # the first request's own trace


class TRITON:
    """Triton Inference Server's own Prometheus metrics (its port 8002), which the rules of
    ``prometheus-rules/triton.rules.yaml`` turn into infersight's per-model series."""

    JOB = "triton"  # the scrape job in prometheus/prometheus.yml
    # The label every series recorded from Triton's metrics carries, so that a model served
    # both by Triton and by an instrumented PyTriton callable has two distinct series.
    SERVER_LABEL = "server"
    SERVER_VALUE = "triton"
    SUCCESS = "nv_inference_request_success"  # counters, by (model, version)
    FAILURE = "nv_inference_request_failure"  # by (model, version, reason)
    INFERENCES = "nv_inference_count"  # inferences (a batch of 8 is 8)
    EXECUTIONS = "nv_inference_exec_count"  # model executions (a batch of 8 is 1)
    PENDING = "nv_inference_pending_request_count"  # gauge: requests queued or running
    REQUEST_DURATION_US = "nv_inference_request_duration_us"  # cumulative microseconds, per request
    # Triton's stages, as infersight's stage label names them -> their cumulative microseconds
    # and their summary (``--metrics-config summary_latencies=true``: quantiles over a sliding window).
    STAGE_DURATION_US = {
        "queue": "nv_inference_queue_duration_us",
        "input": "nv_inference_compute_input_duration_us",
        "model": "nv_inference_compute_infer_duration_us",
        "output": "nv_inference_compute_output_duration_us",
    }
    REQUEST_SUMMARY_US = "nv_inference_request_summary_us"
    STAGE_SUMMARY_US = {
        "queue": "nv_inference_queue_summary_us",
        "input": "nv_inference_compute_input_summary_us",
        "model": "nv_inference_compute_infer_summary_us",
        "output": "nv_inference_compute_output_summary_us",
    }
    SUMMARY_QUANTILES = (0.5, 0.9, 0.95, 0.99, 0.999)  # Triton's default summary quantiles
    # The client's side of a Triton model: a call's ``endpoint`` label names the model. Over HTTP
    # it is the path (``/v2/models/<model>[/versions/<v>]/infer``); over gRPC the KServe v2
    # infer methods get the request's model appended (``<method>/<model>``), so that the rules
    # join the client's latency to Triton's own for that model (the network's share).
    GRPC_INFER_METHODS = (
        "inference.GRPCInferenceService/ModelInfer",
        "inference.GRPCInferenceService/ModelStreamInfer",
    )
    # RE2, anchored as label_replace anchors it: the model is "$1$2".
    CLIENT_ENDPOINT_MODEL_RE = (
        "/v2/models/([^/]+)(?:/versions/[^/]+)?/infer|inference[.]GRPCInferenceService/Model(?:Stream)?Infer/(.+)"
    )
    METRICS = (
        SUCCESS,
        FAILURE,
        INFERENCES,
        EXECUTIONS,
        PENDING,
        REQUEST_DURATION_US,
        *STAGE_DURATION_US.values(),
        REQUEST_SUMMARY_US,
        *STAGE_SUMMARY_US.values(),
    )


# The W3C Server-Timing header (gRPC: a trailing-metadata key of the same name, lower case)
SERVER_TIMING_HEADER = "server-timing"
SERVER_TIMING_TOTAL = "total"  # the metric name, in that header, of the server's whole time

# Cold start phases: span names under SPAN.COLD_START and values of the "phase" label
COLD_PROCESS_START = "process_start"  # the process's start (from /proc) to infersight's import
COLD_IMPORTS = "imports"  # infersight's import to the model load's start: the app's imports
COLD_MODEL_LOAD = "model_load"  # the load, and its warm-up calls
COLD_READ_WEIGHTS = "read_weights"  # from_pretrained: reading the model's and tokenizer's files
COLD_TO_DEVICE = "to_device"  # the pipeline's set-up, which moves the model to its device
COLD_WARM_UP = "warm_up"  # calls of the pipeline outside any request before the first request
COLD_FIRST_REQUEST = "first_request"
COLD_TOTAL = "total"
COLD_START_PHASES = (
    COLD_PROCESS_START,
    COLD_IMPORTS,
    COLD_MODEL_LOAD,
    COLD_READ_WEIGHTS,
    COLD_TO_DEVICE,
    COLD_WARM_UP,
    COLD_FIRST_REQUEST,
    COLD_TOTAL,
)

# Label values
OUTCOME_SUCCESS = "success"
OUTCOME_ERROR = "error"
OVERFLOW_LABEL_VALUE = "other"
UNKNOWN = "unknown"
OUTSIDE_STAGES = "outside_stages"  # the stage label of the time no stage covers, in alerts and top
GPU_SECONDS_MEASURED = "measured"
GPU_SECONDS_BATCH_SHARE = "batch_share"
GPU_SECONDS_ESTIMATED = "estimated"
