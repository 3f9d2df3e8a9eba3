"""GPM (GPU Performance Monitoring, Hopper and later): kernel-level counters between two samples.

Two ``nvmlGpmSampleGet`` snapshots at least 100 ms apart give, through ``nvmlGpmMetricsGet``,
the share of time SMs, tensor pipes and DRAM were busy in between. NVML reports percentages
and MiB/s; like DCGM's ``DCGM_FI_PROF_*`` fields, infersight exports ratios (0-1) and bytes/s.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from ..conventions import METRIC, MetricSpec
from ._nvml import NVML

__all__ = [
    "GPM_METRICS",
    "MIN_INTERVAL_NS",
    "GpmMetric",
    "GpmStream",
    "SamplePool",
    "metrics_between",
    "normalise",
]

# NVML computes nothing useful from samples closer than this (nvmlGpmMetricsGet docs).
MIN_INTERVAL_NS = 100_000_000
_PERCENT = 0.01
_MIB = 1024.0 * 1024.0


@dataclass(frozen=True)
class GpmMetric:
    key: str  # snapshot key and span attribute suffix (infersight.gpu.<key>)
    metric_id: int  # NVML_GPM_METRIC_* in pynvml
    scale: float  # NVML unit -> exported unit
    spec: MetricSpec  # the gauge the sampler exports
    ratio: bool  # 0-1 share of time (goes on spans); else a rate in bytes/s


GPM_METRICS: tuple[GpmMetric, ...] = (
    GpmMetric("sm_active", 2, _PERCENT, METRIC.GPU_SM_ACTIVE, True),  # SM_UTIL
    GpmMetric("sm_occupancy", 3, _PERCENT, METRIC.GPU_SM_OCCUPANCY, True),  # SM_OCCUPANCY
    GpmMetric("tensor_active", 5, _PERCENT, METRIC.GPU_TENSOR_ACTIVE, True),  # ANY_TENSOR_UTIL
    GpmMetric("dram_active", 10, _PERCENT, METRIC.GPU_DRAM_ACTIVE, True),  # DRAM_BW_UTIL
    GpmMetric("fp64_active", 11, _PERCENT, METRIC.GPU_FP64_ACTIVE, True),  # FP64_UTIL
    GpmMetric("fp32_active", 12, _PERCENT, METRIC.GPU_FP32_ACTIVE, True),  # FP32_UTIL
    GpmMetric("fp16_active", 13, _PERCENT, METRIC.GPU_FP16_ACTIVE, True),  # FP16_UTIL
    GpmMetric("pcie_tx_bytes_per_second", 20, _MIB, METRIC.GPU_PCIE_TX, False),  # PCIE_TX_PER_SEC
    GpmMetric("pcie_rx_bytes_per_second", 21, _MIB, METRIC.GPU_PCIE_RX, False),  # PCIE_RX_PER_SEC
    GpmMetric("nvlink_rx_bytes_per_second", 60, _MIB, METRIC.GPU_NVLINK_RX, False),  # NVLINK_TOTAL_RX
    GpmMetric("nvlink_tx_bytes_per_second", 61, _MIB, METRIC.GPU_NVLINK_TX, False),  # NVLINK_TOTAL_TX
)
_IDS = tuple(m.metric_id for m in GPM_METRICS)


def normalise(raw: dict[int, float]) -> dict[str, float]:
    """NVML's values by metric id -> ratios clamped to 0-1 and bytes/s, by key."""
    out: dict[str, float] = {}
    for m in GPM_METRICS:
        value = raw.get(m.metric_id)
        if value is None or value != value:  # missing or NaN
            continue
        scaled = value * m.scale
        out[m.key] = min(max(scaled, 0.0), 1.0) if m.ratio else max(scaled, 0.0)
    return out


def metrics_between(nvml: NVML, sample1: Any, sample2: Any) -> dict[str, float]:
    """The GPM counters between two samples of one GPU, normalised."""
    return normalise(nvml.nvmlGpmMetricsGet(sample1, sample2, _IDS))


class GpmStream:
    """Back-to-back samples of one GPU: each ``tick`` gives the counters since the last one."""

    def __init__(self, nvml: NVML, handle: Any) -> None:
        self._nvml = nvml
        self._handle = handle
        self._prev = nvml.nvmlGpmSampleAlloc()
        self._cur = nvml.nvmlGpmSampleAlloc()
        self._prev_ns = 0

    def tick(self, now_ns: int) -> dict[str, float] | None:
        """None on the first call and when the last sample is under 100 ms old."""
        if self._prev_ns and now_ns - self._prev_ns < MIN_INTERVAL_NS:
            return None
        self._nvml.nvmlGpmSampleGet(self._handle, self._cur)
        out = metrics_between(self._nvml, self._prev, self._cur) if self._prev_ns else None
        self._prev, self._cur = self._cur, self._prev
        self._prev_ns = now_ns
        return out

    def restart(self) -> None:
        self._prev_ns = 0

    def close(self) -> None:
        for sample in (self._prev, self._cur):
            try:
                self._nvml.nvmlGpmSampleFree(sample)
            except Exception:
                pass


class SamplePool:
    """GPM samples reused across stage snapshots, so the request path rarely allocates.

    ``acquire`` returns None once ``limit`` samples are out (too many stages in flight): the
    stage then falls back to the sampler window.
    """

    def __init__(self, nvml: NVML, limit: int = 256) -> None:
        self._nvml = nvml
        self._free: list[Any] = []
        self._out = 0
        self._limit = limit
        self._lock = threading.Lock()
        self.closed = False

    def acquire(self) -> Any:
        with self._lock:
            if self._free:
                self._out += 1
                return self._free.pop()
            if self._out >= self._limit or self.closed:
                return None
            self._out += 1
        try:
            return self._nvml.nvmlGpmSampleAlloc()
        except BaseException:
            with self._lock:
                self._out -= 1
            raise

    def prefill(self, count: int) -> None:
        """Allocate ``count`` samples now (at setup), so the first stages don't allocate."""
        with self._lock:
            count = min(count, self._limit - self._out - len(self._free))
        fresh = [self._nvml.nvmlGpmSampleAlloc() for _ in range(max(count, 0))]
        with self._lock:
            self._free.extend(fresh)

    def free_count(self) -> int:
        with self._lock:
            return len(self._free)

    def release(self, sample: Any) -> None:
        with self._lock:
            self._out -= 1
            if not self.closed:
                self._free.append(sample)
                return
        self._free_one(sample)

    def after_fork_in_child(self) -> None:
        self._lock = threading.Lock()  # another thread may have held it at the fork

    def close(self) -> None:
        with self._lock:
            self.closed = True
            free, self._free = self._free, []
        for sample in free:
            self._free_one(sample)

    def _free_one(self, sample: Any) -> None:
        try:
            self._nvml.nvmlGpmSampleFree(sample)
        except Exception:
            pass
