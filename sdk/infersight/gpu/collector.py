"""Prometheus view of the sampler's last snapshot: a scrape reads memory, never NVML.

``UnavailableCollector`` stands in when ``INFERSIGHT_GPU=on`` but no sampler could start, so
that a GPU that was asked for and can't be read shows up (``gpu_sampler_up 0``).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..conventions import METRIC, MetricSpec
from .gpm import GPM_METRICS
from .sampler import GpuReading, Sampler

__all__ = ["GpuCollector", "UnavailableCollector"]

# Per-GPU values from ``GpuReading.values``, in exposition order.
_VALUE_SPECS: tuple[MetricSpec, ...] = (
    METRIC.GPU_UTILIZATION,
    METRIC.GPU_MEMORY_UTILIZATION,
    METRIC.GPU_MEMORY_USED,
    METRIC.GPU_MEMORY_TOTAL,
    METRIC.GPU_POWER,
    METRIC.GPU_ENERGY,
    METRIC.GPU_TEMPERATURE,
    METRIC.GPU_SM_CLOCK,
    METRIC.GPU_MEMORY_CLOCK,
    METRIC.GPU_PCIE_TX,
    METRIC.GPU_PCIE_RX,
    METRIC.GPU_PROCESS_MEMORY,
    METRIC.GPU_PROCESS_SM_UTILIZATION,
    METRIC.GPU_COMPUTE_PROCESSES,
    METRIC.GPU_TIME_SLICED,
    METRIC.GPU_TORCH_ALLOCATED,
    METRIC.GPU_TORCH_RESERVED,
    METRIC.GPU_TORCH_OOMS,
    METRIC.GPU_HOURLY_COST,
    *(m.spec for m in GPM_METRICS if m.spec not in (METRIC.GPU_PCIE_TX, METRIC.GPU_PCIE_RX)),
)
_ALL_SPECS = (
    METRIC.GPU_SAMPLER_UP,
    METRIC.GPU_UP,
    METRIC.GPU_SAMPLER_ERRORS,
    METRIC.GPU_PROFILING_MODE,
    *_VALUE_SPECS,
    METRIC.GPU_THROTTLE,
    METRIC.GPU_ECC_ERRORS,
    METRIC.GPU_XID_ERRORS,
)
_MODES = ("gpm", "nvml")


def _family(spec: MetricSpec) -> GaugeMetricFamily | CounterMetricFamily:
    if spec.type == "counter":
        return CounterMetricFamily(spec.name, spec.help, labels=spec.labels)
    return GaugeMetricFamily(spec.name, spec.help, labels=spec.labels)


def _labels(spec: MetricSpec, reading: GpuReading) -> list[str]:
    known = {"gpu": reading.gpu, "uuid": reading.uuid, "name": reading.name}
    return [known[label] for label in spec.labels]


class GpuCollector:
    """Register with ``Runtime.register``; ``collect`` builds families from ``sampler.readings``."""

    def __init__(self, sampler: Sampler) -> None:
        self.sampler = sampler

    def describe(self) -> Iterator[Metric]:
        for spec in _ALL_SPECS:
            yield _family(spec)

    def collect(self) -> Iterator[Metric]:
        readings = self.sampler.readings  # one immutable snapshot for the whole scrape
        sampler_up = _family(METRIC.GPU_SAMPLER_UP)
        sampler_up.add_metric([], 1.0 if self.sampler.up else 0.0)
        yield sampler_up
        up = _family(METRIC.GPU_UP)
        mode = _family(METRIC.GPU_PROFILING_MODE)
        for r in readings:
            up.add_metric(_labels(METRIC.GPU_UP, r), 1.0 if r.up else 0.0)
            if r.up:
                for m in _MODES:
                    mode.add_metric([r.gpu, r.uuid, m], 1.0 if m == r.mode else 0.0)
        yield up
        yield mode
        errors = _family(METRIC.GPU_SAMPLER_ERRORS)
        for call, failed in sorted(self.sampler.errors().items()):
            errors.add_metric([call], float(failed))
        yield errors
        for spec in _VALUE_SPECS:
            family = _family(spec)
            for r in readings:
                value = r.values.get(spec)
                if value is not None:
                    family.add_metric(_labels(spec, r), value)
            yield family
        throttle = _family(METRIC.GPU_THROTTLE)
        ecc = _family(METRIC.GPU_ECC_ERRORS)
        xid = _family(METRIC.GPU_XID_ERRORS)
        for r in readings:
            for reason, active in r.throttle.items():
                throttle.add_metric([r.gpu, r.uuid, reason], float(active))
            for kind, count in r.ecc.items():
                ecc.add_metric([r.gpu, r.uuid, kind], count)
            for code, seen in sorted(r.xid.items()):
                xid.add_metric([r.gpu, r.uuid, str(code)], float(seen))
        yield throttle
        yield ecc
        yield xid


class UnavailableCollector:
    """``gpu_sampler_up 0`` and the failed start in ``gpu_sampler_errors_total{call}``."""

    def __init__(self, errors: dict[str, int]) -> None:
        self.errors = dict(errors) or {"init": 1}

    def describe(self) -> Iterator[Metric]:
        yield _family(METRIC.GPU_SAMPLER_UP)
        yield _family(METRIC.GPU_SAMPLER_ERRORS)

    def collect(self) -> Iterator[Metric]:
        up = _family(METRIC.GPU_SAMPLER_UP)
        up.add_metric([], 0.0)
        yield up
        errors = _family(METRIC.GPU_SAMPLER_ERRORS)
        for call, failed in sorted(self.errors.items()):
            errors.add_metric([call], float(failed))
        yield errors
