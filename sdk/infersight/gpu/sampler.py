"""The background GPU sampler: reads NVML (and GPM) once per interval, off the request path.

Scrapes read the last snapshot (``readings``) through ``collector.GpuCollector``: no NVML call
happens at scrape time. A short ring buffer of timestamped samples per GPU lets a stage look up
the GPU activity around it.

Each tick reads what stage spans need by the second: utilization and the GPM counters. Every
``slow_every``-th tick (10 s by default, finer than a usual scrape interval) also reads the
rest: memory, throttle reasons, power, energy, temperature, clocks, ECC counters, XID events
(queued by NVML meanwhile), the processes on the GPU and their utilization, and torch's
allocator; their last values are exported in between. On a GPU with GSP firmware an NVML
query is a round trip to the GPU, so calls per second are the sampler's cost
(docs/benchmarks-gpu.md).

Faults never reach the app. A failing call is counted in ``infersight_gpu_sampler_errors_total
{call}`` and logged once; that metric is then dropped for that GPU (at once for permanent
errors, after 3 failures in a row for others; ``NOT_SUPPORTED`` silently). A lost GPU
(``GPU_IS_LOST``, or every call failing 3 ticks in a row) gets ``gpu_up 0`` and is no longer
polled.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .. import _errors
from ..conventions import METRIC, MetricSpec
from . import _nvml
from ._nvml import NVML, error_code
from .devices import cuda_to_nvml, visible_nvml_indices
from .gpm import GPM_METRICS, GpmStream, SamplePool
from .throttle import decode

__all__ = ["GpuReading", "GpuState", "Sampler", "WindowSample", "price_of"]

logger = logging.getLogger("infersight")

_FAILURES_BEFORE_DISABLE = 3
_LOST_AFTER_TICKS = 3
# Errors that will not go away by asking again: stop asking at once.
_PERMANENT = frozenset(
    {
        _nvml.ERROR_NO_PERMISSION,
        _nvml.ERROR_FUNCTION_NOT_FOUND,
        _nvml.ERROR_INVALID_ARGUMENT,
    }
)
_LOST = frozenset({_nvml.ERROR_GPU_IS_LOST, _nvml.ERROR_GPU_NOT_FOUND, _nvml.ERROR_RESET_REQUIRED})
_MAX_XID_EVENTS_PER_TICK = 64
_GPM_SPAN_KEYS = tuple(m.key for m in GPM_METRICS if m.ratio)

# "No GPU here" is said once per process, however often infersight is re-initialised.
_told_no_gpu = False


class WindowSample(NamedTuple):
    """One sampler tick of one GPU, for span lookups. Values cover the period ending at ts_ns."""

    ts_ns: int  # time.perf_counter_ns(), the clock of StageRecord.start_ns/end_ns
    utilization: float | None
    memory_utilization: float | None
    gpm: dict[str, float] | None


@dataclass
class GpuState:
    """What the sampler knows of one GPU. Mutated only by the sampler thread."""

    index: int
    handle: Any
    uuid: str
    name: str
    up: bool = True
    mode: str = "nvml"  # kernel-counter source: "gpm" or "nvml"
    gpm: GpmStream | None = None
    last_gpm: dict[str, float] | None = None
    events: Any = None  # NVML event set for XID errors, when supported
    disabled: set[str] = field(default_factory=set)
    failures: dict[str, int] = field(default_factory=dict)
    lost_streak: int = 0
    tick_ok: int = 0
    tick_failed: int = 0
    xid: dict[int, int] = field(default_factory=dict)
    process_memory: float | None = None
    ring: deque[WindowSample] = field(default_factory=lambda: deque(maxlen=128))
    label: str = ""  # the exported ``gpu`` label: the NVML index, "<index>/mig<k>" for a MIG instance
    mig: bool = False  # a MIG instance
    mig_parent: bool = False  # a GPU in MIG mode: its processes run in its instances
    slow: dict[MetricSpec, float] = field(default_factory=dict)  # last slow-tick values
    slow_ecc: dict[str, float] = field(default_factory=dict)
    slow_throttle: dict[str, int] = field(default_factory=dict)
    util_seen_us: int = 0  # lastSeenTimeStamp for nvmlDeviceGetProcessUtilization
    accounting: bool | None = None  # NVML accounting mode, once asked
    hourly_cost: float | None = None

    def __post_init__(self) -> None:
        if not self.label:
            self.label = str(self.index)


@dataclass(frozen=True)
class GpuReading:
    """The exported view of one GPU after a tick (immutable: scrapes read it from any thread)."""

    gpu: str
    uuid: str
    name: str
    up: bool
    mode: str
    values: dict[MetricSpec, float]
    throttle: dict[str, int]
    ecc: dict[str, float]
    xid: dict[int, int]


class Sampler:
    """Polls every GPU each ``interval_s`` on a daemon thread. ``start()`` never raises."""

    def __init__(
        self,
        nvml: NVML,
        interval_s: float = 1.0,
        mode: str = "auto",
        *,
        process_memory_every: int = 10,
        gpm: bool = True,
        hourly_cost: Mapping[str, float] | None = None,
    ) -> None:
        self.nvml = nvml
        self.interval_s = interval_s
        self.mode = mode
        # Every this many ticks the slow set is read (process memory was the first of it).
        self.slow_every = max(1, process_memory_every)
        self.use_gpm = gpm
        self.hourly_cost = dict(hourly_cost or {})
        self.gpus: list[GpuState] = []
        self.readings: tuple[GpuReading, ...] = ()
        self.pool = SamplePool(nvml)
        self.cpu_seconds = 0.0  # CPU time of the sampler thread so far
        self.ticks = 0
        self.running = False
        self.closed = False
        self._errors: dict[str, int] = {}
        self._errors_lock = threading.Lock()
        self._logged: set[str] = set()
        self._sample_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cuda_map: dict[int, int | None] = {}
        self._uuids: list[str] = []
        self.default_gpu: int | None = None

    # ---- lifecycle -----------------------------------------------------------------------

    def start(self) -> bool:
        """Find the GPUs, take a first sample, start the thread. False when there is no GPU."""
        try:
            self.nvml.nvmlInit()
        except Exception as exc:
            self._count("init")
            self._no_gpu(f"NVML is unavailable ({exc})")
            return False
        try:
            count = self.nvml.nvmlDeviceGetCount()
        except Exception as exc:
            self._count("nvmlDeviceGetCount")
            self._no_gpu(f"NVML could not count GPUs ({exc})")
            self._shutdown_nvml()
            return False
        for index in range(count):
            gpu = self._open(index)
            if gpu is not None:
                self.gpus.append(gpu)
        # MIG instances are GPUs of their own, numbered after the physical ones.
        next_index = count
        for parent in list(self.gpus):
            children = self._open_mig(parent, next_index)
            next_index += len(children)
            self.gpus.extend(children)
        if not self.gpus:
            self._count("init")
            self._no_gpu("no NVIDIA GPU found" if count == 0 else "no GPU could be opened")
            self._shutdown_nvml()
            return False
        # By NVML index, with "" for a GPU that could not be opened, so positions stay indices.
        self._uuids = [""] * max(count, max(g.index for g in self.gpus) + 1)
        for gpu in self.gpus:
            self._uuids[gpu.index] = gpu.uuid
            gpu.hourly_cost = price_of(gpu.name, self.hourly_cost)
        visible = visible_nvml_indices(self._uuids, os.environ.get("CUDA_VISIBLE_DEVICES"))
        self.default_gpu = visible[0] if visible and self._uuids[visible[0]] else None
        self.sample_once()
        self._start_thread()
        return True

    def _start_thread(self) -> None:
        self._stop = threading.Event()
        self.running = True
        self._thread = threading.Thread(target=self._run, name="infersight-gpu", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop the thread and release NVML resources. Idempotent."""
        if self.closed:
            return
        self.closed = True
        self.running = False
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)
            if thread.is_alive():
                return  # a call is stuck in NVML: leave its resources alone
        self.pool.close()
        for gpu in self.gpus:
            if gpu.gpm is not None:
                gpu.gpm.close()
            if gpu.events is not None:
                try:
                    self.nvml.nvmlEventSetFree(gpu.events)
                except Exception:
                    pass
        self._shutdown_nvml()

    def after_fork_in_child(self) -> None:
        """The thread did not survive the fork: start a new one with fresh per-process state."""
        if self.closed or not self.running:
            return
        # Locks another thread held at the fork would stay held in the child: new ones.
        self._sample_lock = threading.Lock()
        self._errors_lock = threading.Lock()
        self.pool.after_fork_in_child()
        try:
            self.nvml.nvmlInit()  # NVML is reference-counted; the child gets its own handle
        except Exception as exc:
            _errors.report("gpu.fork", exc)
        self.ticks = 0  # read this process's memory on the next tick
        for gpu in self.gpus:
            gpu.process_memory = None
            if gpu.gpm is not None:
                gpu.gpm.restart()
            # The parent keeps polling the inherited event set; the child needs its own.
            gpu.events = None
            if gpu.up:
                self._register_xid(gpu)
        self._start_thread()

    def _run(self) -> None:
        cpu0 = time.thread_time()
        deadline = time.monotonic()
        while not self._stop.is_set():
            deadline += self.interval_s
            delay = deadline - time.monotonic()
            if delay < 0:  # fell behind (a slow call, a suspended process): don't burst
                deadline, delay = time.monotonic(), 0.0
            if self._stop.wait(delay):
                break
            try:
                self.sample_once()
            except Exception as exc:
                _errors.report("gpu.sampler", exc)
            self.cpu_seconds = time.thread_time() - cpu0
            if not any(g.up for g in self.gpus):
                break  # every GPU is lost: nothing left to poll

    # ---- discovery -----------------------------------------------------------------------

    def _open(self, index: int) -> GpuState | None:
        try:
            handle = self.nvml.nvmlDeviceGetHandleByIndex(index)
        except Exception as exc:
            self._failed_call("nvmlDeviceGetHandleByIndex", f"GPU {index}", exc)
            return None
        uuid = name = ""
        try:
            uuid = self.nvml.nvmlDeviceGetUUID(handle)
        except Exception as exc:
            self._failed_call("nvmlDeviceGetUUID", f"GPU {index}", exc)
        try:
            name = self.nvml.nvmlDeviceGetName(handle)
        except Exception as exc:
            self._failed_call("nvmlDeviceGetName", f"GPU {index}", exc)
        gpu = GpuState(index, handle, uuid, name)
        if self.use_gpm:
            self._open_gpm(gpu)
        self._register_xid(gpu)
        return gpu

    def _open_mig(self, parent: GpuState, first_index: int) -> list[GpuState]:
        """The MIG instances of ``parent`` when it is in MIG mode, each sampled as a GPU."""
        try:
            if self.nvml.nvmlDeviceGetMigMode(parent.handle) != _nvml.DEVICE_MIG_ENABLE:
                return []
            slots = self.nvml.nvmlDeviceGetMaxMigDeviceCount(parent.handle)
        except Exception as exc:
            if error_code(exc) not in (_nvml.ERROR_NOT_SUPPORTED, _nvml.ERROR_FUNCTION_NOT_FOUND):
                self._failed_call("nvmlDeviceGetMigMode", f"GPU {parent.index}", exc)
            return []
        parent.mig_parent = True
        out: list[GpuState] = []
        for slot in range(slots):
            try:
                handle = self.nvml.nvmlDeviceGetMigDeviceHandleByIndex(parent.handle, slot)
            except Exception as exc:
                if error_code(exc) != _nvml.ERROR_NOT_FOUND:  # NOT_FOUND: an empty slot
                    self._failed_call("nvmlDeviceGetMigDeviceHandleByIndex", f"GPU {parent.index}", exc)
                continue
            uuid = name = ""
            try:
                uuid = self.nvml.nvmlDeviceGetUUID(handle)
                name = self.nvml.nvmlDeviceGetName(handle)
            except Exception as exc:
                self._failed_call("nvmlDeviceGetUUID", f"MIG {parent.index}/{slot}", exc)
            # No GPM (nvmlGpmMigSampleGet is not used) and no XID registration: the parent has them.
            out.append(
                GpuState(first_index + len(out), handle, uuid, name, label=f"{parent.label}/mig{slot}", mig=True)
            )
        return out

    def _open_gpm(self, gpu: GpuState) -> None:
        try:
            if not self.nvml.nvmlGpmQueryDeviceSupport(gpu.handle):
                return
            gpu.gpm = GpmStream(self.nvml, gpu.handle)
            gpu.mode = "gpm"
        except Exception as exc:
            if error_code(exc) != _nvml.ERROR_NOT_SUPPORTED:
                self._failed_call("nvmlGpmQueryDeviceSupport", f"GPU {gpu.index}", exc)

    def _register_xid(self, gpu: GpuState) -> None:
        """XID errors come as NVML events; some platforms (vGPU, containers) don't offer them."""
        xid = _nvml.EVENT_TYPE_XID_CRITICAL_ERROR
        try:
            if not self.nvml.nvmlDeviceGetSupportedEventTypes(gpu.handle) & xid:
                logger.debug("infersight: GPU %d reports no XID events; XID errors not counted", gpu.index)
                return
            events = self.nvml.nvmlEventSetCreate()
            try:
                self.nvml.nvmlDeviceRegisterEvents(gpu.handle, xid, events)
            except Exception:
                self.nvml.nvmlEventSetFree(events)
                raise
            gpu.events = events
        except Exception as exc:
            if error_code(exc) not in (_nvml.ERROR_NOT_SUPPORTED, _nvml.ERROR_NO_PERMISSION):
                self._failed_call("nvmlDeviceRegisterEvents", f"GPU {gpu.index}", exc)
            else:
                logger.debug("infersight: XID events unavailable on GPU %d: %s", gpu.index, exc)

    # ---- sampling ------------------------------------------------------------------------

    def sample_once(self) -> None:
        """One tick: read every GPU that is up, then publish a new snapshot."""
        with self._sample_lock:
            slow = self.ticks % self.slow_every == 0
            self.ticks += 1
            torch_memory = self._torch_memory() if slow else None
            readings = []
            for gpu in self.gpus:
                if gpu.up:
                    values = self._read(gpu, slow)
                    if torch_memory is not None:
                        self._put_torch(gpu, torch_memory.get(gpu.index))
                    values.update(gpu.slow)
                    throttle, ecc = dict(gpu.slow_throttle), dict(gpu.slow_ecc)
                    if gpu.hourly_cost is not None:
                        values[METRIC.GPU_HOURLY_COST] = gpu.hourly_cost
                else:
                    values, throttle, ecc = {}, {}, {}
                readings.append(
                    GpuReading(gpu.label, gpu.uuid, gpu.name, gpu.up, gpu.mode, values, throttle, ecc, dict(gpu.xid))
                )
            self.readings = tuple(readings)

    @property
    def up(self) -> bool:
        """Running and reading at least one GPU (``infersight_gpu_sampler_up``)."""
        return not self.closed and any(g.up for g in self.gpus)

    def _read(self, gpu: GpuState, slow: bool) -> dict[MetricSpec, float]:
        """The fast set into the returned values; on slow ticks the slow set into ``gpu.slow``."""
        gpu.tick_ok = gpu.tick_failed = 0
        nvml = self.nvml
        values: dict[MetricSpec, float] = {}
        now = time.perf_counter_ns()
        util = self._call(gpu, "utilization", nvml.nvmlDeviceGetUtilizationRates)
        if util is not None:
            values[METRIC.GPU_UTILIZATION] = util.gpu / 100.0
            values[METRIC.GPU_MEMORY_UTILIZATION] = util.memory / 100.0
        gpm = self._read_gpm(gpu, now)
        # Ticks under 100 ms apart get no new GPM delta: the gauges keep the last one.
        latest = gpm if gpm is not None else gpu.last_gpm
        if latest is not None:
            for m in GPM_METRICS:
                if m.key in latest:
                    values[m.spec] = latest[m.key]
        # GPM gives PCIe rates cheaply; NVML's counters (KB/s) block ~20 ms per call in the
        # driver, so they are read only without GPM (on slow ticks), or when GPM left PCIe out.
        gpm_pcie = gpu.mode == "gpm" and (latest is None or METRIC.GPU_PCIE_TX in values)
        if slow:
            self._read_slow(gpu, gpm_pcie)
            self._poll_xid(gpu)
        if gpu.process_memory is not None and "process_memory" not in gpu.disabled:
            values[METRIC.GPU_PROCESS_MEMORY] = gpu.process_memory
        if gpu.tick_failed and not gpu.tick_ok:
            gpu.lost_streak += 1
            if gpu.lost_streak >= _LOST_AFTER_TICKS:
                self._lose(gpu, "every NVML call failed for 3 samples in a row")
        else:
            gpu.lost_streak = 0
        if not gpu.up:
            gpu.slow.clear()
            gpu.slow_ecc.clear()
            gpu.slow_throttle.clear()
            return {}
        gpu.ring.append(
            WindowSample(now, values.get(METRIC.GPU_UTILIZATION), values.get(METRIC.GPU_MEMORY_UTILIZATION), gpm)
        )
        return values

    def _read_slow(self, gpu: GpuState, gpm_pcie: bool) -> None:
        """The slow set, into ``gpu.slow`` (kept until the next slow tick; a failure drops it)."""
        nvml = self.nvml
        slow: dict[MetricSpec, float] = {}
        mem = self._call(gpu, "memory", nvml.nvmlDeviceGetMemoryInfo)
        if mem is not None:
            slow[METRIC.GPU_MEMORY_USED] = float(mem.used)
            slow[METRIC.GPU_MEMORY_TOTAL] = float(mem.total)
        mask = self._call(gpu, "throttle", nvml.nvmlDeviceGetCurrentClocksEventReasons)
        gpu.slow_throttle = decode(int(mask)) if mask is not None else {}
        self._put(slow, METRIC.GPU_POWER, 1e-3, self._call(gpu, "power", nvml.nvmlDeviceGetPowerUsage))  # mW
        self._put(
            slow, METRIC.GPU_ENERGY, 1e-3, self._call(gpu, "energy", nvml.nvmlDeviceGetTotalEnergyConsumption)
        )  # mJ
        self._put(
            slow,
            METRIC.GPU_TEMPERATURE,
            1.0,
            self._call(gpu, "temperature", nvml.nvmlDeviceGetTemperature, _nvml.TEMPERATURE_GPU),
        )
        self._put(
            slow, METRIC.GPU_SM_CLOCK, 1e6, self._call(gpu, "sm_clock", nvml.nvmlDeviceGetClockInfo, _nvml.CLOCK_SM)
        )
        self._put(
            slow,
            METRIC.GPU_MEMORY_CLOCK,
            1e6,
            self._call(gpu, "memory_clock", nvml.nvmlDeviceGetClockInfo, _nvml.CLOCK_MEM),
        )
        if not gpm_pcie:
            self._put(
                slow,
                METRIC.GPU_PCIE_TX,
                1024.0,
                self._call(gpu, "pcie_tx", nvml.nvmlDeviceGetPcieThroughput, _nvml.PCIE_UTIL_TX_BYTES),
            )
            self._put(
                slow,
                METRIC.GPU_PCIE_RX,
                1024.0,
                self._call(gpu, "pcie_rx", nvml.nvmlDeviceGetPcieThroughput, _nvml.PCIE_UTIL_RX_BYTES),
            )
        ecc: dict[str, float] = {}
        for kind, error_type in (
            ("corrected", _nvml.MEMORY_ERROR_TYPE_CORRECTED),
            ("uncorrected", _nvml.MEMORY_ERROR_TYPE_UNCORRECTED),
        ):
            count = self._call(gpu, f"ecc_{kind}", nvml.nvmlDeviceGetTotalEccErrors, error_type, _nvml.VOLATILE_ECC)
            if count is not None:
                ecc[kind] = float(count)
        procs = self._call(gpu, "process_memory", nvml.nvmlDeviceGetComputeRunningProcesses)
        pid = os.getpid()
        mine_listed = False
        if procs is not None:
            mine = [p.usedGpuMemory or 0 for p in procs if p.pid == pid]
            mine_listed = bool(mine)
            # No entry with our PID: no context here, or NVML sees the PIDs of another namespace
            # (a container without hostPID): unknowable, so left out rather than exported as 0.
            gpu.process_memory = float(sum(mine)) if mine else None
            if not gpu.mig_parent:  # a MIG-mode GPU's processes run in separate instances
                count = len({p.pid for p in procs})
                slow[METRIC.GPU_COMPUTE_PROCESSES] = float(count)
                slow[METRIC.GPU_TIME_SLICED] = 1.0 if count > 1 else 0.0
        if not gpu.mig and not gpu.mig_parent:  # NVML has no per-process utilization under MIG
            sm = self._process_sm(gpu, pid, mine_listed)
            if sm is not None:
                slow[METRIC.GPU_PROCESS_SM_UTILIZATION] = sm
        torch_keys = (METRIC.GPU_TORCH_ALLOCATED, METRIC.GPU_TORCH_RESERVED, METRIC.GPU_TORCH_OOMS)
        slow.update({k: v for k, v in gpu.slow.items() if k in torch_keys})
        gpu.slow = slow
        gpu.slow_ecc = ecc

    def _process_sm(self, gpu: GpuState, pid: int, listed: bool) -> float | None:
        """This process's SM utilization (0-1) since the last slow tick, or None when unknowable."""
        if "process_utilization" in gpu.disabled:
            return self._accounted_sm(gpu, pid)
        try:
            samples = self.nvml.nvmlDeviceGetProcessUtilization(gpu.handle, gpu.util_seen_us)
        except Exception as exc:
            if error_code(exc) == _nvml.ERROR_NOT_FOUND:  # no process ran a kernel since last time
                gpu.tick_ok += 1
                return 0.0 if listed else None
            self._failed(gpu, "process_utilization", "nvmlDeviceGetProcessUtilization", exc)
            return self._accounted_sm(gpu, pid) if "process_utilization" in gpu.disabled else None
        gpu.tick_ok += 1
        if samples:
            gpu.util_seen_us = max(int(s.timeStamp) for s in samples)
        mine = [float(s.smUtil) for s in samples if s.pid == pid]
        if mine:
            return min(1.0, sum(mine) / len(mine) / 100.0)
        return 0.0 if listed else None

    def _accounted_sm(self, gpu: GpuState, pid: int) -> float | None:
        """Where per-process utilization is unsupported: NVML accounting stats, when an admin
        turned accounting mode on (``nvidia-smi -am 1``). Its figure is a lifetime mean."""
        if "accounting" in gpu.disabled:
            return None
        if gpu.accounting is None:
            mode = self._call(gpu, "accounting", self.nvml.nvmlDeviceGetAccountingMode)
            gpu.accounting = bool(mode)
            if not mode:
                gpu.disabled.add("accounting")
                return None
        try:
            stats = self.nvml.nvmlDeviceGetAccountingStats(gpu.handle, pid)
        except Exception as exc:
            if error_code(exc) != _nvml.ERROR_NOT_FOUND:  # NOT_FOUND: no context here yet
                self._failed(gpu, "accounting", "nvmlDeviceGetAccountingStats", exc)
            return None
        gpu.tick_ok += 1
        return min(1.0, float(stats.gpuUtilization) / 100.0)

    def _torch_memory(self) -> dict[int, tuple[float, float, float]] | None:
        """torch's caching allocator per NVML index: (allocated, reserved, OOMs). None without torch
        or before the app initialised CUDA (infersight never initialises it)."""
        torch = sys.modules.get("torch")
        cuda = getattr(torch, "cuda", None)
        if cuda is None:
            return None
        try:
            if not cuda.is_initialized():
                return None
            out: dict[int, tuple[float, float, float]] = {}
            for device in range(cuda.device_count()):
                index = self.nvml_index(device)
                if index is None:
                    continue
                stats = cuda.memory_stats(device)
                out[index] = (
                    float(stats.get("allocated_bytes.all.current", 0)),
                    float(stats.get("reserved_bytes.all.current", 0)),
                    float(stats.get("num_ooms", 0)),
                )
            return out
        except Exception as exc:
            _errors.report("gpu.torch_memory", exc)
            return None

    @staticmethod
    def _put_torch(gpu: GpuState, stats: tuple[float, float, float] | None) -> None:
        if stats is None:
            return
        gpu.slow[METRIC.GPU_TORCH_ALLOCATED], gpu.slow[METRIC.GPU_TORCH_RESERVED], gpu.slow[METRIC.GPU_TORCH_OOMS] = (
            stats
        )

    @staticmethod
    def _put(values: dict[MetricSpec, float], spec: MetricSpec, scale: float, raw: Any) -> None:
        if raw is not None:
            values[spec] = float(raw) * scale

    def _read_gpm(self, gpu: GpuState, now_ns: int) -> dict[str, float] | None:
        if gpu.gpm is None or not gpu.up:
            return None
        try:
            fresh = gpu.gpm.tick(now_ns)
        except Exception as exc:
            # Fall back to NVML utilization for good: a GPM failure rarely heals.
            code = error_code(exc)
            if code in _LOST:
                self._failed(gpu, "gpm", "nvmlGpmSampleGet", exc)
                return None
            if code != _nvml.ERROR_NOT_SUPPORTED:
                self._failed_call("nvmlGpmSampleGet", f"GPU {gpu.index}", exc)
            gpu.gpm.close()
            gpu.gpm, gpu.mode, gpu.last_gpm = None, "nvml", None
            return None
        gpu.tick_ok += 1
        if fresh is not None:
            gpu.last_gpm = fresh
            return fresh
        return None  # under 100 ms since the last sample: nothing new

    def _poll_xid(self, gpu: GpuState) -> None:
        if gpu.events is None or not gpu.up:
            return
        for _ in range(_MAX_XID_EVENTS_PER_TICK):
            try:
                data = self.nvml.nvmlEventSetWait(gpu.events, 0)  # 0 ms: never blocks
            except Exception as exc:
                if error_code(exc) != _nvml.ERROR_TIMEOUT:  # TIMEOUT: no event pending
                    self._failed(gpu, "xid", "nvmlEventSetWait", exc)
                    if "xid" in gpu.disabled:
                        gpu.events = None
                return
            if data.eventType & _nvml.EVENT_TYPE_XID_CRITICAL_ERROR:
                code = int(data.eventData)
                gpu.xid[code] = gpu.xid.get(code, 0) + 1

    def _call(self, gpu: GpuState, key: str, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(handle, *args)``, or None when it is disabled or fails (then counted)."""
        if key in gpu.disabled or not gpu.up:
            return None
        try:
            value = fn(gpu.handle, *args)
        except Exception as exc:
            self._failed(gpu, key, getattr(fn, "__name__", key), exc)
            return None
        gpu.tick_ok += 1
        if key in gpu.failures:
            del gpu.failures[key]
        return value

    def _failed(self, gpu: GpuState, key: str, call: str, exc: BaseException) -> None:
        code = error_code(exc)
        if code == _nvml.ERROR_NOT_SUPPORTED:
            gpu.disabled.add(key)  # normal on many boards (ECC on GeForce, power on some)
            return
        gpu.tick_failed += 1
        self._failed_call(call, f"GPU {gpu.index}", exc)
        if code in _LOST:
            self._lose(gpu, str(exc))
            return
        failures = gpu.failures[key] = gpu.failures.get(key, 0) + 1
        if code in _PERMANENT or failures >= _FAILURES_BEFORE_DISABLE:
            gpu.disabled.add(key)

    def _failed_call(self, call: str, where: str, exc: BaseException) -> None:
        self._count(call)
        if call not in self._logged:
            self._logged.add(call)
            logger.warning(
                "infersight: NVML call %s failed on %s (%s); its metric is dropped after repeated "
                "failures. Further failures are counted in infersight_gpu_sampler_errors_total"
                "{call=%r}, not logged.",
                call,
                where,
                exc,
                call,
            )

    def _lose(self, gpu: GpuState, why: str) -> None:
        if gpu.up:
            gpu.up = False
            logger.warning(
                "infersight: GPU %d (%s) is lost (%s); gpu_up is 0 and it is no longer polled.",
                gpu.index,
                gpu.uuid,
                why,
            )

    def _count(self, call: str) -> None:
        with self._errors_lock:
            self._errors[call] = self._errors.get(call, 0) + 1

    def count_error(self, call: str) -> None:
        """For other GPU code (span snapshots) to count a failed NVML call here."""
        self._count(call)

    def errors(self) -> dict[str, int]:
        with self._errors_lock:
            return dict(self._errors)

    def _no_gpu(self, why: str) -> None:
        global _told_no_gpu
        if _told_no_gpu:
            return
        _told_no_gpu = True
        if self.mode == "on":
            logger.warning("infersight: INFERSIGHT_GPU=on but %s; GPU metrics are off.", why)
        else:
            logger.info("infersight: %s; GPU metrics are off.", why)

    def _shutdown_nvml(self) -> None:
        try:
            self.nvml.nvmlShutdown()
        except Exception:
            pass

    # ---- lookups for stage hooks (worker thread; no NVML call) ---------------------------

    def gpu(self, index: int | None) -> GpuState | None:
        if index is None:
            return None
        for gpu in self.gpus:
            if gpu.index == index:
                return gpu
        return None

    def nvml_index(self, cuda_index: int | None) -> int | None:
        """NVML index of a CUDA device number (cached); the default GPU when None."""
        if cuda_index is None:
            return self.default_gpu
        try:
            return self._cuda_map[cuda_index]
        except KeyError:
            pass
        index = cuda_to_nvml(cuda_index, self._uuids, sys.modules.get("torch"))
        if index is not None and not self._uuids[index]:
            index = None  # a GPU the sampler could not open
        self._cuda_map[cuda_index] = index
        return index

    def window(self, index: int, start_ns: int, end_ns: int) -> dict[str, float] | None:
        """Mean of the samples covering [start_ns, end_ns]; the latest one if none has yet."""
        gpu = self.gpu(index)
        if gpu is None:
            return None
        ring = tuple(gpu.ring)
        if not ring:
            return None
        picked: list[WindowSample] = []
        for sample in ring:
            if sample.ts_ns <= start_ns:
                continue
            picked.append(sample)
            if sample.ts_ns >= end_ns:
                break  # this one's period contains the stage's end
        if not picked:
            picked = [ring[-1]]
        out: dict[str, float] = {}
        _mean_into(out, "utilization", [s.utilization for s in picked])
        _mean_into(out, "memory_utilization", [s.memory_utilization for s in picked])
        for key in _GPM_SPAN_KEYS:
            _mean_into(out, key, [s.gpm.get(key) if s.gpm else None for s in picked])
        return out


def price_of(name: str, prices: Mapping[str, float]) -> float | None:
    """The price per hour of a GPU called ``name``: the longest pattern found in the name
    (case-insensitive), else ``"*"``, else None."""
    low = name.lower()
    found = [p for p in prices if p != "*" and p.lower() in low]
    if found:
        return prices[max(found, key=len)]
    return prices.get("*")


def _mean_into(out: dict[str, float], key: str, values: list[float | None]) -> None:
    present = [v for v in values if v is not None]
    if present:
        out[key] = sum(present) / len(present)
