"""The one layer over NVML (``pynvml`` from nvidia-ml-py) that the GPU code calls through.

Tests (and users' tests) substitute ``infersight.gpu.testing.FakeNVML``, which has the same
method names, with ``use(fake)``. ``pynvml`` is imported only when the real backend is built,
so ``infersight.gpu`` imports on machines without it.

The methods keep NVML's names and arguments, with three simplifications: strings come back
as ``str``, ``nvmlGpmQueryDeviceSupport`` returns a bool, and ``nvmlGpmMetricsGet(s1, s2, ids)``
returns ``{metric_id: value}`` for the metrics NVML computed. Every failure is an
``NVMLError`` with the NVML return code in ``.value``.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

__all__ = [
    "ERROR_DRIVER_NOT_LOADED",
    "ERROR_FUNCTION_NOT_FOUND",
    "ERROR_GPU_IS_LOST",
    "ERROR_GPU_NOT_FOUND",
    "ERROR_LIBRARY_NOT_FOUND",
    "ERROR_NOT_FOUND",
    "ERROR_NOT_SUPPORTED",
    "ERROR_NO_PERMISSION",
    "ERROR_TIMEOUT",
    "ERROR_UNKNOWN",
    "NVML",
    "NVMLError",
    "PyNVML",
    "error_code",
    "get",
    "use",
]

# NVML return codes (nvml.h), mirrored so nothing here needs pynvml to be importable.
ERROR_UNINITIALIZED = 1
ERROR_INVALID_ARGUMENT = 2
ERROR_NOT_SUPPORTED = 3
ERROR_NO_PERMISSION = 4
ERROR_NOT_FOUND = 6
ERROR_DRIVER_NOT_LOADED = 9
ERROR_TIMEOUT = 10
ERROR_LIBRARY_NOT_FOUND = 12
ERROR_FUNCTION_NOT_FOUND = 13
ERROR_GPU_IS_LOST = 15
ERROR_RESET_REQUIRED = 16
ERROR_LIB_RM_VERSION_MISMATCH = 18
ERROR_GPU_NOT_FOUND = 28
ERROR_UNKNOWN = 999

# Arguments of the calls the sampler makes (nvml.h enums).
TEMPERATURE_GPU = 0
CLOCK_SM = 1
CLOCK_MEM = 2
PCIE_UTIL_TX_BYTES = 0
PCIE_UTIL_RX_BYTES = 1
MEMORY_ERROR_TYPE_CORRECTED = 0
MEMORY_ERROR_TYPE_UNCORRECTED = 1
VOLATILE_ECC = 0
EVENT_TYPE_XID_CRITICAL_ERROR = 0x8
DEVICE_MIG_ENABLE = 1


class NVMLError(Exception):
    """An NVML call failed; ``value`` is NVML's return code (``ERROR_*``)."""

    def __init__(self, value: int, message: str = "") -> None:
        super().__init__(message or f"NVML error {value}")
        self.value = value


def error_code(exc: BaseException) -> int:
    """NVML return code of an exception from an NVML call (``ERROR_UNKNOWN`` if it has none)."""
    value = getattr(exc, "value", None)
    return value if isinstance(value, int) else ERROR_UNKNOWN


class NVML(Protocol):
    """What the GPU code needs from NVML. ``PyNVML`` is real; ``testing.FakeNVML`` is fake."""

    def nvmlInit(self) -> None: ...
    def nvmlShutdown(self) -> None: ...
    def nvmlDeviceGetCount(self) -> int: ...
    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any: ...
    def nvmlDeviceGetUUID(self, handle: Any) -> str: ...
    def nvmlDeviceGetName(self, handle: Any) -> str: ...
    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> Any: ...  # .gpu, .memory (%)
    def nvmlDeviceGetMemoryInfo(self, handle: Any) -> Any: ...  # .used, .total (bytes)
    def nvmlDeviceGetPowerUsage(self, handle: Any) -> int: ...  # mW
    def nvmlDeviceGetTotalEnergyConsumption(self, handle: Any) -> int: ...  # mJ
    def nvmlDeviceGetTemperature(self, handle: Any, sensor: int) -> int: ...  # Celsius
    def nvmlDeviceGetClockInfo(self, handle: Any, clock: int) -> int: ...  # MHz
    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: Any) -> int: ...  # bitmask
    def nvmlDeviceGetPcieThroughput(self, handle: Any, counter: int) -> int: ...  # KB/s
    def nvmlDeviceGetTotalEccErrors(self, handle: Any, error_type: int, counter: int) -> int: ...
    def nvmlDeviceGetComputeRunningProcesses(self, handle: Any) -> Sequence[Any]: ...
    # Samples (.pid, .timeStamp µs, .smUtil %, .memUtil %) newer than ``last_seen_us``;
    # NOT_FOUND when there is none.
    def nvmlDeviceGetProcessUtilization(self, handle: Any, last_seen_us: int) -> Sequence[Any]: ...
    def nvmlDeviceGetAccountingMode(self, handle: Any) -> bool: ...
    # .gpuUtilization %: the mean over the process's lifetime; NOT_FOUND for an unknown PID.
    def nvmlDeviceGetAccountingStats(self, handle: Any, pid: int) -> Any: ...
    def nvmlDeviceGetMigMode(self, handle: Any) -> int: ...  # current mode: DEVICE_MIG_ENABLE or 0
    def nvmlDeviceGetMaxMigDeviceCount(self, handle: Any) -> int: ...
    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: Any, index: int) -> Any: ...  # NOT_FOUND: empty slot
    def nvmlDeviceGetSupportedEventTypes(self, handle: Any) -> int: ...
    def nvmlEventSetCreate(self) -> Any: ...
    def nvmlDeviceRegisterEvents(self, handle: Any, event_types: int, event_set: Any) -> None: ...
    def nvmlEventSetWait(self, event_set: Any, timeout_ms: int) -> Any: ...  # .eventType, .eventData
    def nvmlEventSetFree(self, event_set: Any) -> None: ...
    def nvmlGpmQueryDeviceSupport(self, handle: Any) -> bool: ...
    def nvmlGpmSampleAlloc(self) -> Any: ...
    def nvmlGpmSampleFree(self, sample: Any) -> None: ...
    def nvmlGpmSampleGet(self, handle: Any, sample: Any) -> Any: ...
    def nvmlGpmMetricsGet(self, sample1: Any, sample2: Any, metric_ids: Sequence[int]) -> dict[int, float]: ...


_F = TypeVar("_F", bound=Callable[..., Any])


def _translated(fn: _F) -> _F:
    """Re-raise pynvml's errors as ``NVMLError`` so callers need not import pynvml."""

    @functools.wraps(fn)
    def call(self: PyNVML, *args: Any) -> Any:
        try:
            return fn(self, *args)
        except self._error as exc:
            raise NVMLError(error_code(exc), str(exc)) from None

    return call  # type: ignore[return-value]


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class PyNVML:
    """The real backend. Raises ``ImportError`` when nvidia-ml-py is not installed."""

    def __init__(self) -> None:
        import pynvml

        self._p: Any = pynvml
        self._error: type[BaseException] = pynvml.NVMLError
        self._event_reasons_missing = False

    @_translated
    def nvmlInit(self) -> None:
        self._p.nvmlInit()

    @_translated
    def nvmlShutdown(self) -> None:
        self._p.nvmlShutdown()

    @_translated
    def nvmlDeviceGetCount(self) -> int:
        return int(self._p.nvmlDeviceGetCount())

    @_translated
    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any:
        return self._p.nvmlDeviceGetHandleByIndex(index)

    @_translated
    def nvmlDeviceGetUUID(self, handle: Any) -> str:
        return _text(self._p.nvmlDeviceGetUUID(handle))

    @_translated
    def nvmlDeviceGetName(self, handle: Any) -> str:
        return _text(self._p.nvmlDeviceGetName(handle))

    @_translated
    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> Any:
        return self._p.nvmlDeviceGetUtilizationRates(handle)

    @_translated
    def nvmlDeviceGetMemoryInfo(self, handle: Any) -> Any:
        return self._p.nvmlDeviceGetMemoryInfo(handle)

    @_translated
    def nvmlDeviceGetPowerUsage(self, handle: Any) -> int:
        return int(self._p.nvmlDeviceGetPowerUsage(handle))

    @_translated
    def nvmlDeviceGetTotalEnergyConsumption(self, handle: Any) -> int:
        return int(self._p.nvmlDeviceGetTotalEnergyConsumption(handle))

    @_translated
    def nvmlDeviceGetTemperature(self, handle: Any, sensor: int) -> int:
        return int(self._p.nvmlDeviceGetTemperature(handle, sensor))

    @_translated
    def nvmlDeviceGetClockInfo(self, handle: Any, clock: int) -> int:
        return int(self._p.nvmlDeviceGetClockInfo(handle, clock))

    @_translated
    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: Any) -> int:
        # Drivers before 535 only have the older name of the same bitmask.
        if not self._event_reasons_missing:
            try:
                return int(self._p.nvmlDeviceGetCurrentClocksEventReasons(handle))
            except self._error as exc:
                if error_code(exc) != ERROR_FUNCTION_NOT_FOUND:
                    raise
                self._event_reasons_missing = True
        return int(self._p.nvmlDeviceGetCurrentClocksThrottleReasons(handle))

    @_translated
    def nvmlDeviceGetPcieThroughput(self, handle: Any, counter: int) -> int:
        return int(self._p.nvmlDeviceGetPcieThroughput(handle, counter))

    @_translated
    def nvmlDeviceGetTotalEccErrors(self, handle: Any, error_type: int, counter: int) -> int:
        return int(self._p.nvmlDeviceGetTotalEccErrors(handle, error_type, counter))

    @_translated
    def nvmlDeviceGetComputeRunningProcesses(self, handle: Any) -> Sequence[Any]:
        return list(self._p.nvmlDeviceGetComputeRunningProcesses(handle))

    @_translated
    def nvmlDeviceGetProcessUtilization(self, handle: Any, last_seen_us: int) -> Sequence[Any]:
        return list(self._p.nvmlDeviceGetProcessUtilization(handle, last_seen_us))

    @_translated
    def nvmlDeviceGetAccountingMode(self, handle: Any) -> bool:
        return bool(self._p.nvmlDeviceGetAccountingMode(handle))

    @_translated
    def nvmlDeviceGetAccountingStats(self, handle: Any, pid: int) -> Any:
        return self._p.nvmlDeviceGetAccountingStats(handle, pid)

    @_translated
    def nvmlDeviceGetMigMode(self, handle: Any) -> int:
        current, _pending = self._p.nvmlDeviceGetMigMode(handle)
        return int(current)

    @_translated
    def nvmlDeviceGetMaxMigDeviceCount(self, handle: Any) -> int:
        return int(self._p.nvmlDeviceGetMaxMigDeviceCount(handle))

    @_translated
    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: Any, index: int) -> Any:
        return self._p.nvmlDeviceGetMigDeviceHandleByIndex(handle, index)

    @_translated
    def nvmlDeviceGetSupportedEventTypes(self, handle: Any) -> int:
        return int(self._p.nvmlDeviceGetSupportedEventTypes(handle))

    @_translated
    def nvmlEventSetCreate(self) -> Any:
        return self._p.nvmlEventSetCreate()

    @_translated
    def nvmlDeviceRegisterEvents(self, handle: Any, event_types: int, event_set: Any) -> None:
        self._p.nvmlDeviceRegisterEvents(handle, event_types, event_set)

    @_translated
    def nvmlEventSetWait(self, event_set: Any, timeout_ms: int) -> Any:
        return self._p.nvmlEventSetWait(event_set, timeout_ms)

    @_translated
    def nvmlEventSetFree(self, event_set: Any) -> None:
        self._p.nvmlEventSetFree(event_set)

    @_translated
    def nvmlGpmQueryDeviceSupport(self, handle: Any) -> bool:
        return bool(self._p.nvmlGpmQueryDeviceSupport(handle).isSupportedDevice)

    @_translated
    def nvmlGpmSampleAlloc(self) -> Any:
        return self._p.nvmlGpmSampleAlloc()

    @_translated
    def nvmlGpmSampleFree(self, sample: Any) -> None:
        self._p.nvmlGpmSampleFree(sample)

    @_translated
    def nvmlGpmSampleGet(self, handle: Any, sample: Any) -> Any:
        return self._p.nvmlGpmSampleGet(handle, sample)

    @_translated
    def nvmlGpmMetricsGet(self, sample1: Any, sample2: Any, metric_ids: Sequence[int]) -> dict[int, float]:
        p = self._p
        request = p.c_nvmlGpmMetricsGet_t()
        request.version = p.NVML_GPM_METRICS_GET_VERSION
        request.numMetrics = len(metric_ids)
        request.sample1 = sample1
        request.sample2 = sample2
        for i, metric_id in enumerate(metric_ids):
            request.metrics[i].metricId = metric_id
        p.nvmlGpmMetricsGet(request)
        out: dict[int, float] = {}
        for i in range(len(metric_ids)):
            metric = request.metrics[i]
            if metric.nvmlReturn == 0:  # NVML_SUCCESS for this one metric
                out[int(metric.metricId)] = float(metric.value)
        return out


_lock = threading.Lock()
_override: NVML | None = None


def use(backend: NVML | None) -> None:
    """Make ``get()`` return ``backend`` (a fake in tests); ``None`` restores the real one."""
    global _override
    with _lock:
        _override = backend


def get() -> NVML:
    """The backend in use: the one given to ``use()``, else a new ``PyNVML`` (may raise ImportError)."""
    with _lock:
        if _override is not None:
            return _override
    return PyNVML()
