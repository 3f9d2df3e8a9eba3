"""The example servers' fault switches (examples/faults.py) that the demo and the fault-matrix
e2e test flip: a tokenizer slow on long inputs, a lock in a stage, a thread hogging the GIL."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import faults


@pytest.fixture(autouse=True)
def off() -> Iterator[None]:
    faults.set_faults({})
    yield
    faults.set_faults({})


def test_tokenizer_delay_is_per_kib_of_input(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(faults.time, "sleep", slept.append)
    faults.tokenizer_delay("x" * 4096)  # off: no sleep
    faults.set_faults({"slow_tokenizer_ms_per_kb": 10})
    faults.tokenizer_delay("x" * 4096)
    faults.tokenizer_delay(["x" * 1024, "y" * 1024])
    assert slept == [pytest.approx(0.04), pytest.approx(0.02)]


def test_lock_in_a_stage_serialises_concurrent_requests() -> None:
    faults.set_faults({"lock_postprocess_ms": 30})
    spans: list[tuple[float, float]] = []

    def request() -> None:
        start = time.perf_counter()
        faults.locked("postprocess")
        spans.append((start, time.perf_counter()))

    threads = [threading.Thread(target=request) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    # All three started together; each waited for the ones before it.
    durations = sorted(end - start for start, end in spans)
    assert durations[-1] >= 3 * 0.03 * 0.9, durations
    faults.locked("preprocess")  # no lock configured there: returns at once


def test_gil_hog_thread_starts_and_stops() -> None:
    def hogs() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "gil-hog" and t.is_alive()]

    faults.set_faults({"gil_hog": True})
    faults.set_faults({"gil_hog": True})  # switching it on twice starts one thread
    assert len(hogs()) == 1
    faults.set_faults({})
    deadline = time.monotonic() + 10
    while hogs() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not hogs()


def test_unknown_fault_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown faults"):
        faults.set_faults({"gil_hug": True})
