"""NVTX ranges around stages: names, nesting, interleaved coroutines, stages ending elsewhere."""

from __future__ import annotations

import asyncio
import sys
import threading
import types
from typing import Any

import pytest

import infersight
from infersight._records import StageRecord
from infersight.gpu.nvtx_ranges import NvtxRanges
from infersight.gpu.testing import FakeNVML, use_fake_nvml
from infersight.testing import capture


class FakeNvtx:
    """Records push/pop per thread and keeps NVTX's per-thread stack to catch bad pops."""

    def __init__(self) -> None:
        self.events: list[tuple[int, str, str]] = []
        self.stacks: dict[int, list[str]] = {}
        self.bad_pops = 0

    def push_range(self, message: str | None = None, color: Any = None, domain: Any = None, **_: Any) -> None:
        tid = threading.get_ident()
        self.stacks.setdefault(tid, []).append(str(message))
        self.events.append((tid, "push", str(message)))

    def pop_range(self, domain: Any = None) -> None:
        tid = threading.get_ident()
        stack = self.stacks.setdefault(tid, [])
        if not stack:
            self.bad_pops += 1
            return
        self.events.append((tid, "pop", stack.pop()))

    def module(self) -> types.ModuleType:
        mod = types.ModuleType("nvtx")
        mod.push_range = self.push_range  # type: ignore[attr-defined]
        mod.pop_range = self.pop_range  # type: ignore[attr-defined]
        return mod


@pytest.fixture
def fake_nvtx(monkeypatch: pytest.MonkeyPatch) -> FakeNvtx:
    fake = FakeNvtx()
    monkeypatch.setitem(sys.modules, "nvtx", fake.module())
    return fake


def stage(name: str, trace_id: int) -> StageRecord:
    return StageRecord(name, "m", None, 0, trace_id, True)


def test_ranges_are_named_after_stage_and_trace_and_balanced(fake_nvtx: FakeNvtx) -> None:
    with use_fake_nvml(FakeNVML(1)), capture(gpu="on", nvtx=True, gpu_interval_s=60.0) as t:
        with infersight.request(model="m"):
            with infersight.preprocess():
                pass
            with infersight.model():
                pass
        trace_id = t.spans("model")[0].context.trace_id
    ops = [(op, msg) for _, op, msg in fake_nvtx.events]
    assert ops == [
        ("push", f"preprocess {trace_id:032x}"),
        ("pop", f"preprocess {trace_id:032x}"),
        ("push", f"model {trace_id:032x}"),
        ("pop", f"model {trace_id:032x}"),
    ]
    assert fake_nvtx.bad_pops == 0


def test_nvtx_works_without_any_gpu(fake_nvtx: FakeNvtx) -> None:
    with (
        use_fake_nvml(FakeNVML(1, no_driver=True)),
        capture(gpu="auto", nvtx=True),
        infersight.request(model="m"),
        infersight.model(),
    ):
        pass
    assert [op for _, op, _ in fake_nvtx.events] == ["push", "pop"]


def test_interleaved_coroutines_never_pop_someone_elses_range(fake_nvtx: FakeNvtx) -> None:
    hook = NvtxRanges(fake_nvtx.module())
    a, b = stage("model", 0xA), stage("model", 0xB)
    # One event loop thread: A starts, B starts, A ends first (out of order), then B.
    hook.on_stage_start(a)
    hook.on_stage_start(b)
    hook.on_stage_end(a)
    assert fake_nvtx.stacks[threading.get_ident()] == [f"model {0xA:032x}", f"model {0xB:032x}"]
    hook.on_stage_end(b)
    assert fake_nvtx.stacks[threading.get_ident()] == []
    assert hook.depth() == 0 and fake_nvtx.bad_pops == 0


def test_interleaved_async_requests_end_balanced(fake_nvtx: FakeNvtx) -> None:
    async def one(delay: float) -> None:
        async with infersight.request(model="m"), infersight.model():
            await asyncio.sleep(delay)

    async def main() -> None:
        await asyncio.gather(one(0.02), one(0.0), one(0.01))

    with use_fake_nvml(FakeNVML(1)), capture(gpu="on", nvtx=True, gpu_interval_s=60.0):
        asyncio.run(main())
    assert sum(op == "push" for _, op, _ in fake_nvtx.events) == 3
    assert sum(op == "pop" for _, op, _ in fake_nvtx.events) == 3
    assert all(not stack for stack in fake_nvtx.stacks.values())
    assert fake_nvtx.bad_pops == 0


def test_a_stage_ending_on_another_thread_is_popped_by_its_own(fake_nvtx: FakeNvtx) -> None:
    hook = NvtxRanges(fake_nvtx.module())
    first = stage("model", 1)
    hook.on_stage_start(first)
    ender = threading.Thread(target=hook.on_stage_end, args=(first,))
    ender.start()
    ender.join(5)
    assert fake_nvtx.bad_pops == 0  # the other thread popped nothing
    assert hook.depth() == 1  # still open here, marked done
    second = stage("model", 2)
    hook.on_stage_start(second)
    hook.on_stage_end(second)
    assert hook.depth() == 0
    assert fake_nvtx.stacks[threading.get_ident()] == []


def test_real_nvtx_push_pop_without_a_profiler() -> None:
    pytest.importorskip("nvtx")
    hook = NvtxRanges.create()
    assert hook is not None
    outer, inner = stage("preprocess", 7), stage("model", 7)
    hook.on_stage_start(outer)
    hook.on_stage_start(inner)
    assert hook.depth() == 2
    hook.on_stage_end(inner)
    hook.on_stage_end(outer)
    assert hook.depth() == 0


def test_missing_nvtx_package_warns_and_requests_work(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "nvtx", None)
    with (
        caplog.at_level("WARNING", logger="infersight"),
        use_fake_nvml(FakeNVML(1)),
        capture(gpu="on", nvtx=True, gpu_interval_s=60.0) as t,
    ):
        with infersight.request(model="m"), infersight.model():
            pass
        assert len(t.spans("model")) == 1
    assert len([r for r in caplog.records if "nvtx" in r.getMessage()]) == 1
