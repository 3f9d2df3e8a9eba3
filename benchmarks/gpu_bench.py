"""GPU telemetry cost: the sampler's CPU per second at 1 Hz, a scrape, and each stage-boundary
hook call (GPM snapshot on and off), on FakeNVML and, where a GPU is present, on real NVML.

    python benchmarks/gpu_bench.py [--seconds 3] [--stages 5000] [--cuda]
    python benchmarks/gpu_bench.py --calls [--ticks 200]

``--calls`` counts the sampler's NVML calls per tick at the default cadence (the slow set every
10th tick) and times each kind of call on this backend (real NVML where there is one); it also
measures infersight's own Python per tick, on a fake whose calls cost nothing.

The sampler's thread CPU time (time.thread_time, read in the thread) is measured twice: per
tick over a 10 Hz run, and per wall second over a run at the default 1 Hz (``--seconds``
each; the 1 Hz figure is a few ticks, so per tick is the steadier number).
FakeNVML measures infersight's own overhead (a real NVML call costs more: microseconds to
milliseconds; PCIe counters block ~20 ms each, which is why GPM mode skips them). Hook costs
are per call (a stage has two boundaries), in the request thread. With ``--cuda`` (torch with
CUDA) a further row records a CUDA event at each boundary, as a ``model`` stage does in an app
that runs torch on the GPU; its enrich waits for the event and reads the GPU busy time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import types
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from infersight._records import StageRecord
from infersight.config import Config
from infersight.gpu._nvml import NVML, PyNVML
from infersight.gpu.collector import GpuCollector
from infersight.gpu.nvtx_ranges import NvtxRanges
from infersight.gpu.sampler import Sampler
from infersight.gpu.spans import SpanCounters
from infersight.gpu.testing import FakeNVML

BATCH = 100  # stages per timed batch; enrich (untimed) then returns their GPM samples
SLOW_EVERY = 10  # the default: INFERSIGHT_GPU_SLOW_INTERVAL 10 s at INFERSIGHT_GPU_INTERVAL 1 s
# Read on every tick before the slow set existed (the process list was already every 10th;
# per-process utilization did not exist).
_OLD_EVERY_TENTH = frozenset({"nvmlDeviceGetComputeRunningProcesses"})
_NEW_CALLS = frozenset({"nvmlDeviceGetProcessUtilization"})


class _Timed:
    """Wraps an NVML backend: counts each call and sums its thread CPU time."""

    def __init__(self, nvml: Any) -> None:
        self._nvml = nvml
        self.calls: dict[str, int] = {}
        self.cpu_ns: dict[str, int] = {}

    def reset(self) -> None:
        self.calls.clear()
        self.cpu_ns.clear()

    def __getattr__(self, name: str) -> Any:
        fn = getattr(self._nvml, name)
        if not callable(fn) or not name.startswith("nvml"):
            return fn

        def timed(*args: Any) -> Any:
            t0 = time.thread_time_ns()
            try:
                return fn(*args)
            finally:
                self.cpu_ns[name] = self.cpu_ns.get(name, 0) + time.thread_time_ns() - t0
                self.calls[name] = self.calls.get(name, 0) + 1

        return timed


class _QuietNVML(FakeNVML):
    """FakeNVML without call counting or fault checks: what is left is infersight's own Python."""

    def _enter(self, call: str, handle: Any = None) -> Any:
        if handle is None:
            return None
        dev = self.devices[handle.index]
        return dev if handle.mig is None else dev.mig[handle.mig]


def call_profile(nvml: Any, ticks: int) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """(calls per tick now, calls per tick before the slow set, CPU us per call) over ``ticks``
    ticks run in this thread, 100 ms apart so that GPM takes a sample each time."""
    timed = _Timed(nvml)
    sampler = Sampler(timed, interval_s=60.0, process_memory_every=SLOW_EVERY)  # type: ignore[arg-type]
    if not sampler.start():
        raise RuntimeError("sampler did not start")
    try:
        every: dict[str, float] = {}
        timed.reset()
        for _ in range(ticks):
            time.sleep(0.1)
            sampler.sample_once()
        now = {k: v / ticks for k, v in timed.calls.items()}
        per_call = {k: timed.cpu_ns[k] / timed.calls[k] / 1e3 for k in timed.calls}
        sampler.slow_every = 1  # everything on every tick: the call mix before the slow set
        timed.reset()
        for _ in range(SLOW_EVERY):
            time.sleep(0.1)
            sampler.sample_once()
        for name, count in timed.calls.items():
            if name in _NEW_CALLS:
                continue
            every[name] = count / SLOW_EVERY / (SLOW_EVERY if name in _OLD_EVERY_TENTH else 1)
    finally:
        sampler.stop()
    return now, every, per_call


def own_cpu_per_tick(ticks: int) -> tuple[float, float]:
    """infersight's own CPU per tick (s), on a fake whose calls cost nothing: now (slow set every
    10th tick) and with every call on every tick (before)."""
    out = []
    for slow_every in (SLOW_EVERY, 1):
        sampler = Sampler(_QuietNVML(1), interval_s=60.0, process_memory_every=slow_every)
        if not sampler.start():
            raise RuntimeError("sampler did not start")
        try:
            t0 = time.thread_time()
            for _ in range(ticks):
                sampler.sample_once()
            out.append((time.thread_time() - t0) / ticks)
        finally:
            sampler.stop()
    return out[0], out[1]


def print_calls(backends: list[tuple[str, Any]], ticks: int) -> None:
    own_now, own_before = own_cpu_per_tick(max(ticks, 100) * 10)
    print(f"infersight's own Python per tick (calls cost nothing): {own_now * 1e6:.0f} us now, ")
    print(f"{own_before * 1e6:.0f} us with every call on every tick\n")
    for name, make in backends:
        now, before, per_call = call_profile(make(), ticks)
        print(f"{name}, {ticks} ticks 100 ms apart, slow set every {SLOW_EVERY}th tick:\n")
        print("| NVML call | calls per tick before | calls per tick now | CPU per call |")
        print("|---|---:|---:|---:|")
        for call in sorted(set(now) | set(before), key=lambda c: -before.get(c, 0) - now.get(c, 0)):
            print(f"| {call} | {before.get(call, 0):.2f} | {now.get(call, 0):.2f} | {per_call.get(call, 0):.1f} us |")
        total_before, total_now = sum(before.values()), sum(now.values())
        cpu_now = sum(now[c] * per_call[c] for c in now)
        cpu_before = sum(before[c] * per_call.get(c, 0) for c in before)
        print(f"| **all** | {total_before:.2f} | {total_now:.2f} | |")
        print(
            f"\nNVML CPU per tick, from these per-call costs: {cpu_before:.0f} us before, {cpu_now:.0f} us now "
            f"({total_now / total_before:.2f} of the calls).\n"
        )


def sampler_cpu_at_1hz(nvml: NVML, seconds: float) -> float:
    """The sampler thread's CPU seconds per wall second at the default 1 Hz, measured."""
    sampler = Sampler(nvml, interval_s=1.0)
    if not sampler.start():
        raise RuntimeError("sampler did not start")
    try:
        t0 = time.monotonic()
        time.sleep(seconds)
        return sampler.cpu_seconds / (time.monotonic() - t0)
    finally:
        sampler.stop()


def sampler_cost(nvml: NVML, seconds: float) -> dict[str, float]:
    sampler = Sampler(nvml, interval_s=0.1)
    if not sampler.start():
        raise RuntimeError("sampler did not start")
    try:
        time.sleep(seconds)
        ticks = max(sampler.ticks - 1, 1)  # the first tick ran in start(), not in the thread
        cpu_per_tick = sampler.cpu_seconds / ticks
        wall = []
        for _ in range(5):  # a tick's wall time, GPM included (>= 100 ms apart)
            time.sleep(0.1)
            t0 = time.perf_counter()
            sampler.sample_once()
            wall.append(time.perf_counter() - t0)
        registry = CollectorRegistry()
        registry.register(GpuCollector(sampler))
        t0 = time.perf_counter()
        for _ in range(200):
            generate_latest(registry)
        scrape = (time.perf_counter() - t0) / 200
        mode = sampler.gpus[0].mode
    finally:
        sampler.stop()
    return {
        "cpu_per_tick": cpu_per_tick,
        "tick_wall": statistics.median(wall),
        "scrape": scrape,
        "gpus": len(sampler.gpus),
        "gpm": mode == "gpm",
    }


def hook_cost(hook: Any, stages: int, name: str = "model") -> tuple[float, float]:
    """(median per boundary call, median enrich per stage) in seconds, over batches."""
    per_call, per_enrich = [], []
    for _ in range(max(stages // BATCH, 1)):
        batch = [StageRecord(name, "m", None, 0, i + 1, True) for i in range(BATCH)]
        t0 = time.perf_counter_ns()
        for st in batch:
            hook.on_stage_start(st)
            st.end_ns = time.perf_counter_ns()
            hook.on_stage_end(st)
        t1 = time.perf_counter_ns()
        for st in batch:
            hook.enrich(st, {})
        t2 = time.perf_counter_ns()
        # Includes the loop and one clock read per stage: compare with the empty-hook row.
        per_call.append((t1 - t0) / (2 * BATCH))
        per_enrich.append((t2 - t1) / BATCH)
    return statistics.median(per_call) / 1e9, statistics.median(per_enrich) / 1e9


class _NoHook:
    def on_stage_start(self, stage: Any) -> None: ...
    def on_stage_end(self, stage: Any) -> None: ...
    def enrich(self, stage: Any, attributes: dict[str, Any]) -> None: ...


def span_hooks(nvml: NVML, stages: int) -> list[tuple[str, float, float]]:
    sampler = Sampler(nvml, interval_s=60.0)
    if not sampler.start():
        raise RuntimeError("sampler did not start")
    rows = []
    try:
        time.sleep(0.1)
        sampler.sample_once()  # a GPM delta in the ring, for window lookups
        rows.append(("empty hook (loop + clock baseline)", *hook_cost(_NoHook(), stages)))
        torch = sys.modules.get("torch")
        cuda_on = bool(torch is not None and torch.cuda.is_initialized())
        variants = [(False, False), (True, False)] + ([(False, True)] if cuda_on else [])
        for snapshots, cuda_events in variants:
            rt = types.SimpleNamespace(
                metrics=None,
                config=Config(traces_exporter="none", gpu_span_snapshots=snapshots, cuda_events=cuda_events),
            )
            hook = SpanCounters(sampler, rt)
            label = "GPM snapshot on" if snapshots else "GPM snapshot off"
            if cuda_events:
                label += ", CUDA events"
            rows.append((f"SpanCounters, model stage, {label}", *hook_cost(hook, stages)))
        hook = SpanCounters(sampler, types.SimpleNamespace(metrics=None, config=Config(traces_exporter="none")))
        rows.append(("SpanCounters, other stages", *hook_cost(hook, stages, "preprocess")))
    finally:
        sampler.stop()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--stages", type=int, default=5000)
    parser.add_argument("--cuda", action="store_true", help="initialise CUDA through torch first")
    parser.add_argument("--calls", action="store_true", help="NVML calls per tick and CPU per call only")
    parser.add_argument("--ticks", type=int, default=50, help="ticks for --calls")
    args = parser.parse_args()
    if args.cuda:
        import torch

        if torch.cuda.is_available():
            torch.cuda.init()  # type: ignore[no-untyped-call]
        else:
            print("(--cuda: torch sees no CUDA device)\n")
    backends: list[tuple[str, Any]] = [("FakeNVML", lambda: FakeNVML(1))]
    try:
        real = PyNVML()
        real.nvmlInit()
        real.nvmlShutdown()
        backends.append(("NVML", PyNVML))
    except Exception as exc:
        print(f"(no real NVML here: {exc}; FakeNVML only)\n")
    if args.calls:
        print_calls(backends, args.ticks)
        return 0
    torch = sys.modules.get("torch")
    print(
        f"torch CUDA initialised: {bool(torch and torch.cuda.is_initialized())} (CUDA events are recorded only then)\n"
    )

    print(
        "| backend | GPUs | GPM | CPU per tick (10 Hz run) | CPU per second at 1 Hz (measured) | tick wall | scrape |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, make in backends:
        s = sampler_cost(make(), args.seconds)
        at_1hz = sampler_cpu_at_1hz(make(), args.seconds)
        print(
            f"| {name} | {s['gpus']:.0f} | {'yes' if s['gpm'] else 'no'} "
            f"| {s['cpu_per_tick'] * 1e3:.3f} ms | {at_1hz * 1e3:.3f} ms/s "
            f"({at_1hz * 100:.4f} % of a core) "
            f"| {s['tick_wall'] * 1e3:.3f} ms | {s['scrape'] * 1e6:.0f} us |"
        )

    print("\n| backend | hook | per boundary call (request path) | enrich per stage (worker) |")
    print("|---|---|---|---|")
    for name, make in backends:
        for label, call_s, enrich_s in span_hooks(make(), args.stages):
            print(f"| {name} | {label} | {call_s * 1e6:.2f} us | {enrich_s * 1e6:.2f} us |")
    nvtx_hook = NvtxRanges.create()
    if nvtx_hook is not None:
        call_s, _ = hook_cost(nvtx_hook, args.stages, "preprocess")
        print(f"| - | NvtxRanges (no profiler attached) | {call_s * 1e6:.2f} us | - |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
