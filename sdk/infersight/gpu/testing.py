"""A fake NVML for tests without a GPU (CI), yours included.

    from infersight.gpu.testing import FakeDevice, FakeNVML, use_fake_nvml

    fake = FakeNVML([FakeDevice(utilization=75)])
    fake.fail("nvmlDeviceGetPowerUsage", ERROR_UNKNOWN, times=1)  # fails once
    with use_fake_nvml(fake):
        infersight.init(registry=registry, gpu="on")
        ...
    assert fake.calls["nvmlDeviceGetUtilizationRates"] >= 1

Values are in NVML's units (%, mW, mJ, MHz, KB/s, GPM % and MiB/s); change a device's fields
at any time and the next sample reads them. ``FakeNVML(no_driver=True)`` fails ``nvmlInit``
like a machine without the driver; ``lose_gpu(i)`` makes every later call on GPU ``i`` fail
with ``GPU_IS_LOST``; ``xid(i, code)`` queues an XID event.

Sharing: ``processes`` lists ``(pid, bytes)`` with a CUDA context on the device, and
``process_utilization`` maps a PID to its SM utilization (%), as
``nvmlDeviceGetProcessUtilization`` reports it (``process_utilization_supported=False``
refuses that call). ``accounting`` turns NVML accounting mode on, with each PID's lifetime
GPU utilization (%). ``mig`` holds the MIG instances of a GPU in MIG mode (their handles
refuse utilization, as real ones do).
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from . import _nvml
from ._nvml import (
    ERROR_DRIVER_NOT_LOADED,
    ERROR_FUNCTION_NOT_FOUND,
    ERROR_GPU_IS_LOST,
    ERROR_GPU_NOT_FOUND,
    ERROR_LIBRARY_NOT_FOUND,
    ERROR_NO_PERMISSION,
    ERROR_NOT_FOUND,
    ERROR_NOT_SUPPORTED,
    ERROR_TIMEOUT,
    ERROR_UNKNOWN,
    NVMLError,
)

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
    "GPM_SM_UTIL",
    "FakeDevice",
    "FakeNVML",
    "NVMLError",
    "use_fake_nvml",
]

# NVML_GPM_METRIC_* ids, for setting FakeDevice.gpm_values.
GPM_SM_UTIL = 2
GPM_SM_OCCUPANCY = 3
GPM_ANY_TENSOR_UTIL = 5
GPM_DRAM_BW_UTIL = 10
GPM_FP64_UTIL = 11
GPM_FP32_UTIL = 12
GPM_FP16_UTIL = 13
GPM_PCIE_TX_PER_SEC = 20
GPM_PCIE_RX_PER_SEC = 21
GPM_NVLINK_TOTAL_RX_PER_SEC = 60
GPM_NVLINK_TOTAL_TX_PER_SEC = 61

_GIB = 1 << 30


def _default_gpm() -> dict[int, float]:
    return {
        GPM_SM_UTIL: 40.0,
        GPM_SM_OCCUPANCY: 25.0,
        GPM_ANY_TENSOR_UTIL: 30.0,
        GPM_DRAM_BW_UTIL: 20.0,
        GPM_FP64_UTIL: 0.0,
        GPM_FP32_UTIL: 5.0,
        GPM_FP16_UTIL: 10.0,
        GPM_PCIE_TX_PER_SEC: 100.0,
        GPM_PCIE_RX_PER_SEC: 200.0,
        GPM_NVLINK_TOTAL_RX_PER_SEC: 0.0,
        GPM_NVLINK_TOTAL_TX_PER_SEC: 0.0,
    }


@dataclass
class FakeDevice:
    """One fake GPU, in NVML's units. ``uuid`` defaults to one derived from its index."""

    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = ""
    utilization: float = 50.0  # %
    memory_utilization: float = 20.0  # %
    memory_used: int = 10 * _GIB
    memory_total: int = 80 * _GIB
    power_mw: int = 300_000
    energy_mj: int = 1_000_000
    temperature: int = 60
    sm_clock_mhz: int = 1980
    memory_clock_mhz: int = 2619
    throttle_mask: int = 0
    pcie_tx_kbps: int = 1000
    pcie_rx_kbps: int = 2000
    ecc_corrected: int = 0
    ecc_uncorrected: int = 0
    processes: list[tuple[int, int]] = field(default_factory=list)  # (pid, bytes)
    process_utilization: dict[int, float] = field(default_factory=dict)  # pid -> SM %
    process_utilization_supported: bool = True
    accounting: dict[int, float] | None = None  # pid -> lifetime GPU %, when accounting mode is on
    mig: list[FakeDevice] = field(default_factory=list)  # MIG instances (MIG mode on when any)
    gpm: bool = True
    gpm_values: dict[int, float] = field(default_factory=_default_gpm)
    xid_events: bool = True
    lost: bool = False
    pending_xids: list[int] = field(default_factory=list)


@dataclass
class _Fault:
    call: str
    code: int
    times: int | None  # None: every time
    after: int
    device: int | None
    seen: int = 0


class _Handle:
    __slots__ = ("index", "mig")

    def __init__(self, index: int, mig: int | None = None) -> None:
        self.index = index
        self.mig = mig  # MIG instance of GPU ``index``, or None for the GPU itself

    def __repr__(self) -> str:
        return f"<fake GPU {self.index}>" if self.mig is None else f"<fake MIG {self.index}/{self.mig}>"


class _GpmSample:
    __slots__ = ("device", "ts_ns", "values")

    def __init__(self) -> None:
        self.device = -1
        self.ts_ns = 0
        self.values: dict[int, float] = {}


class _EventSet:
    def __init__(self) -> None:
        self.devices: list[int] = []


class FakeNVML:
    """Same method names as ``infersight.gpu._nvml.PyNVML``. Counts every call in ``calls``."""

    def __init__(self, devices: int | Sequence[FakeDevice] = 1, *, no_driver: bool = False) -> None:
        self.devices: list[FakeDevice] = (
            [FakeDevice() for _ in range(devices)] if isinstance(devices, int) else list(devices)
        )
        for i, dev in enumerate(self.devices):
            if not dev.uuid:
                dev.uuid = f"GPU-00000000-0000-0000-0000-{i:012d}"
            for k, child in enumerate(dev.mig):
                if not child.uuid:
                    child.uuid = f"MIG-00000000-0000-0000-{i:04d}-{k:012d}"
        self.no_driver = no_driver
        self.calls: Counter[str] = Counter()
        self.calls_by_thread: dict[int, Counter[str]] = {}
        self.gpm_intervals_ns: list[int] = []  # sample2 - sample1 of every nvmlGpmMetricsGet
        self.init_count = 0
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        if hasattr(os, "register_at_fork"):
            # A sampler thread may hold the lock at a fork; the child must not inherit it held.
            reset = weakref.WeakMethod(self._after_fork_in_child)
            os.register_at_fork(after_in_child=lambda: (m := reset()) and m())

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()

    # ---- test controls -------------------------------------------------------------------

    def fail(
        self,
        call: str,
        code: int = ERROR_UNKNOWN,
        *,
        times: int | None = None,
        after: int = 0,
        device: int | None = None,
    ) -> None:
        """Make ``call`` raise NVMLError(code): ``times`` times (None: always) after ``after``
        successful calls, on ``device`` (None: any)."""
        with self._lock:
            self._faults.append(_Fault(call, code, times, after, device))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def lose_gpu(self, index: int) -> None:
        self.devices[index].lost = True

    def xid(self, index: int, code: int) -> None:
        self.devices[index].pending_xids.append(code)

    def calls_in(self, thread_ident: int) -> Counter[str]:
        with self._lock:
            return Counter(self.calls_by_thread.get(thread_ident, Counter()))

    # ---- plumbing ------------------------------------------------------------------------

    def _enter(self, call: str, handle: _Handle | None = None) -> FakeDevice | None:
        with self._lock:
            self.calls[call] += 1
            self.calls_by_thread.setdefault(threading.get_ident(), Counter())[call] += 1
            index = handle.index if handle is not None else None
            for fault in self._faults:
                if fault.call != call or (fault.device is not None and fault.device != index):
                    continue
                fault.seen += 1
                if fault.seen > fault.after and (fault.times is None or fault.times > 0):
                    if fault.times is not None:
                        fault.times -= 1
                    raise NVMLError(fault.code, f"fake {call} failure {fault.code}")
        if call != "nvmlInit" and self.init_count <= 0:
            raise NVMLError(_nvml.ERROR_UNINITIALIZED, "NVML not initialised")
        if handle is None:
            return None
        dev = self.devices[handle.index]
        if handle.mig is not None:
            dev = dev.mig[handle.mig]
        if dev.lost:
            raise NVMLError(ERROR_GPU_IS_LOST, "GPU is lost")
        return dev

    def _dev(self, call: str, handle: _Handle) -> FakeDevice:
        dev = self._enter(call, handle)
        assert dev is not None
        return dev

    # ---- NVML ----------------------------------------------------------------------------

    def nvmlInit(self) -> None:
        self._enter("nvmlInit")
        if self.no_driver:
            raise NVMLError(ERROR_LIBRARY_NOT_FOUND, "NVML Shared Library Not Found")
        self.init_count += 1

    def nvmlShutdown(self) -> None:
        self._enter("nvmlShutdown")
        self.init_count -= 1

    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any:
        self._enter("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self.devices):
            raise NVMLError(_nvml.ERROR_INVALID_ARGUMENT, "bad index")
        return _Handle(index)

    def nvmlDeviceGetUUID(self, handle: Any) -> str:
        return self._dev("nvmlDeviceGetUUID", handle).uuid

    def nvmlDeviceGetName(self, handle: Any) -> str:
        return self._dev("nvmlDeviceGetName", handle).name

    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> Any:
        dev = self._dev("nvmlDeviceGetUtilizationRates", handle)
        if handle.mig is not None:
            raise NVMLError(ERROR_NOT_SUPPORTED, "utilization is not supported on MIG devices")
        return SimpleNamespace(gpu=dev.utilization, memory=dev.memory_utilization)

    def nvmlDeviceGetMemoryInfo(self, handle: Any) -> Any:
        dev = self._dev("nvmlDeviceGetMemoryInfo", handle)
        return SimpleNamespace(used=dev.memory_used, total=dev.memory_total, free=dev.memory_total - dev.memory_used)

    def nvmlDeviceGetPowerUsage(self, handle: Any) -> int:
        return self._dev("nvmlDeviceGetPowerUsage", handle).power_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: Any) -> int:
        return self._dev("nvmlDeviceGetTotalEnergyConsumption", handle).energy_mj

    def nvmlDeviceGetTemperature(self, handle: Any, sensor: int) -> int:
        return self._dev("nvmlDeviceGetTemperature", handle).temperature

    def nvmlDeviceGetClockInfo(self, handle: Any, clock: int) -> int:
        dev = self._dev("nvmlDeviceGetClockInfo", handle)
        return dev.sm_clock_mhz if clock == _nvml.CLOCK_SM else dev.memory_clock_mhz

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: Any) -> int:
        return self._dev("nvmlDeviceGetCurrentClocksEventReasons", handle).throttle_mask

    def nvmlDeviceGetPcieThroughput(self, handle: Any, counter: int) -> int:
        dev = self._dev("nvmlDeviceGetPcieThroughput", handle)
        return dev.pcie_tx_kbps if counter == _nvml.PCIE_UTIL_TX_BYTES else dev.pcie_rx_kbps

    def nvmlDeviceGetTotalEccErrors(self, handle: Any, error_type: int, counter: int) -> int:
        dev = self._dev("nvmlDeviceGetTotalEccErrors", handle)
        corrected = error_type == _nvml.MEMORY_ERROR_TYPE_CORRECTED
        return dev.ecc_corrected if corrected else dev.ecc_uncorrected

    def nvmlDeviceGetComputeRunningProcesses(self, handle: Any) -> Sequence[Any]:
        dev = self._dev("nvmlDeviceGetComputeRunningProcesses", handle)
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in dev.processes]

    def nvmlDeviceGetProcessUtilization(self, handle: Any, last_seen_us: int) -> Sequence[Any]:
        dev = self._dev("nvmlDeviceGetProcessUtilization", handle)
        if not dev.process_utilization_supported:
            raise NVMLError(ERROR_NOT_SUPPORTED, "Not Supported")
        now_us = time.time_ns() // 1000
        if not dev.process_utilization:
            raise NVMLError(ERROR_NOT_FOUND, "Not Found")  # NVML's answer when no sample is new
        return [
            SimpleNamespace(pid=pid, timeStamp=now_us, smUtil=sm, memUtil=0, encUtil=0, decUtil=0)
            for pid, sm in dev.process_utilization.items()
        ]

    def nvmlDeviceGetAccountingMode(self, handle: Any) -> bool:
        return self._dev("nvmlDeviceGetAccountingMode", handle).accounting is not None

    def nvmlDeviceGetAccountingStats(self, handle: Any, pid: int) -> Any:
        dev = self._dev("nvmlDeviceGetAccountingStats", handle)
        if dev.accounting is None:
            raise NVMLError(ERROR_NOT_SUPPORTED, "accounting mode is off")
        if pid not in dev.accounting:
            raise NVMLError(ERROR_NOT_FOUND, "Not Found")
        return SimpleNamespace(gpuUtilization=dev.accounting[pid], memoryUtilization=0, maxMemoryUsage=0, isRunning=1)

    def nvmlDeviceGetMigMode(self, handle: Any) -> int:
        dev = self._dev("nvmlDeviceGetMigMode", handle)
        return _nvml.DEVICE_MIG_ENABLE if dev.mig else 0

    def nvmlDeviceGetMaxMigDeviceCount(self, handle: Any) -> int:
        return len(self._dev("nvmlDeviceGetMaxMigDeviceCount", handle).mig)

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: Any, index: int) -> Any:
        dev = self._dev("nvmlDeviceGetMigDeviceHandleByIndex", handle)
        if not 0 <= index < len(dev.mig):
            raise NVMLError(ERROR_NOT_FOUND, "Not Found")
        return _Handle(handle.index, index)

    def nvmlDeviceGetSupportedEventTypes(self, handle: Any) -> int:
        dev = self._dev("nvmlDeviceGetSupportedEventTypes", handle)
        return _nvml.EVENT_TYPE_XID_CRITICAL_ERROR if dev.xid_events else 0

    def nvmlEventSetCreate(self) -> Any:
        self._enter("nvmlEventSetCreate")
        return _EventSet()

    def nvmlDeviceRegisterEvents(self, handle: Any, event_types: int, event_set: Any) -> None:
        self._dev("nvmlDeviceRegisterEvents", handle)
        event_set.devices.append(handle.index)

    def nvmlEventSetWait(self, event_set: Any, timeout_ms: int) -> Any:
        self._enter("nvmlEventSetWait")
        for index in event_set.devices:
            pending = self.devices[index].pending_xids
            if pending:
                return SimpleNamespace(
                    device=_Handle(index), eventData=pending.pop(0), eventType=_nvml.EVENT_TYPE_XID_CRITICAL_ERROR
                )
        raise NVMLError(ERROR_TIMEOUT, "Timeout")

    def nvmlEventSetFree(self, event_set: Any) -> None:
        self._enter("nvmlEventSetFree")

    def nvmlGpmQueryDeviceSupport(self, handle: Any) -> bool:
        return self._dev("nvmlGpmQueryDeviceSupport", handle).gpm

    def nvmlGpmSampleAlloc(self) -> Any:
        self._enter("nvmlGpmSampleAlloc")
        return _GpmSample()

    def nvmlGpmSampleFree(self, sample: Any) -> None:
        self._enter("nvmlGpmSampleFree")

    def nvmlGpmSampleGet(self, handle: Any, sample: Any) -> Any:
        dev = self._dev("nvmlGpmSampleGet", handle)
        if not dev.gpm:
            raise NVMLError(ERROR_NOT_SUPPORTED, "GPM not supported")
        sample.device = handle.index
        sample.ts_ns = time.perf_counter_ns()
        sample.values = dict(dev.gpm_values)
        return sample

    def nvmlGpmMetricsGet(self, sample1: Any, sample2: Any, metric_ids: Sequence[int]) -> dict[int, float]:
        self._enter("nvmlGpmMetricsGet")
        if sample1.device != sample2.device or sample1.device < 0:
            raise NVMLError(_nvml.ERROR_INVALID_ARGUMENT, "samples of different GPUs")
        with self._lock:
            self.gpm_intervals_ns.append(sample2.ts_ns - sample1.ts_ns)
        # The fake's counters over the interval are the values set when sample2 was taken.
        return {i: sample2.values[i] for i in metric_ids if i in sample2.values}


@contextmanager
def use_fake_nvml(fake: FakeNVML) -> Iterator[FakeNVML]:
    """Route infersight's NVML calls to ``fake`` inside the block."""
    _nvml.use(fake)
    try:
        yield fake
    finally:
        _nvml.use(None)
