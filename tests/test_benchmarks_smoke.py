"""The server benchmarks run end to end (--quick) and print their tables.

No timing is asserted: the figures belong to `make bench` (docs/benchmarks.md). The four
scripts run at once so the test stays within about a minute on 2 cores; each is bounded by
a timeout and killed if it overruns.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stack import collector_binary

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 150

# script -> lines its output must contain (its table header and its verdict lines)
EXPECTED = {
    "benchmarks/server_load.py": [
        "| variant | saturation req/s |",
        "| bare |",
        "| infersight |",
        "| otel-flask |",
        "throughput, infersight / bare:",
        "added P99 at 50% load",
        "At 50% of each variant's own saturation rate",
        "added P99 at the same utilisation, infersight:",
    ],
    "benchmarks/memory.py": [
        "| variant | RSS at 0 |",
        "| bare |",
        "| infersight |",
        "added RSS in steady state",
        "growth",
    ],
    "benchmarks/cpu_split.py": [
        "| variant | request path | worker | export |",
        "| bare |",
        "| floor |",
        "| metrics only |",
        "| infersight |",
        "| stock encoder |",
        "| keep 0.1 |",
        "- request path added:",
        "of which the floor",
        "export thread, our encoder vs the stock one:",
    ],
    "benchmarks/queueing.py": ["| round | P50 ms | P99 ms |", "more CPU per request adds"],
    "benchmarks/paced_load.py": [
        "| variant | requests | P50 ms | P99 ms |",
        "| bare |",
        "| infersight |",
        "added P99 at 50% load, infersight:",
    ],
    "benchmarks/stage_cpu.py": ["| what | on ns | off ns | on / off | added |", "thread_time_ns:"],
    "benchmarks/collector_load.py": ["| t s | RSS MiB | anonymous MiB |", "accepted rate:", "collector RSS: **max"],
}


def test_benchmarks_run_quick() -> None:
    have_wrk = shutil.which("wrk") is not None
    have_collector = collector_binary().exists()
    scripts = [s for s in EXPECTED if have_wrk or s != "benchmarks/server_load.py"]
    procs = {
        s: subprocess.Popen(
            [sys.executable, s, "--quick"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for s in scripts
    }
    outputs = {}
    try:
        for script, proc in procs.items():
            out, err = proc.communicate(timeout=TIMEOUT_S)
            assert proc.returncode == 0, f"{script} exited {proc.returncode}:\n{err[-3000:]}"
            outputs[script] = out
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)

    for script, out in outputs.items():
        if script == "benchmarks/collector_load.py" and not have_collector:
            assert "No built collector" in out
            continue
        for needle in EXPECTED[script]:
            assert needle in out, f"{script}: {needle!r} missing from its output:\n{out}"
        # Each table row has as many cells as its header: a figure was printed for every column.
        tables: list[list[str]] = [[]]
        for ln in out.splitlines():
            if ln.startswith("| "):
                tables[-1].append(ln)
            elif tables[-1]:
                tables.append([])
        tables = [tb for tb in tables if tb]
        assert tables, out
        for tb in tables:
            assert len(tb) >= 3 and len({ln.count("|") for ln in tb}) == 1, out
        # stage_cpu.py times the request path alone: spans off whether or not a collector is built.
        if script not in ("benchmarks/collector_load.py", "benchmarks/queueing.py", "benchmarks/stage_cpu.py"):
            exporter = "our built collector" if have_collector else "OTEL_TRACES_EXPORTER=none"
            assert exporter in out, out
    if not have_collector:
        pytest.skip("collector not built (tools/build-collector.sh): ran with OTEL_TRACES_EXPORTER=none")
    if not have_wrk:
        pytest.skip("wrk not installed (tools/setup.sh installs it): server_load.py not run")


def test_server_load_verdicts_need_every_round_to_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # its modules, for this test only
    import server_load

    def phase(**p99s: list[float]) -> dict[str, list[dict[str, float]]]:
        return {v: [{"p99_us": ms * 1e3} for ms in values] for v, values in p99s.items()}

    def verdict(values: list[float]) -> str:
        return server_load.round_verdict(values, lambda d: d <= 0.5, lambda d: d > 0.5, "")

    worse = server_load.by_round(
        phase(bare=[10, 40, 20], infersight=[11, 42, 20.6]), "infersight", server_load.added_p99_ms
    )
    assert worse == pytest.approx([1.0, 2.0, 0.6])
    assert verdict(worse).startswith("NOT met in any round")
    assert verdict([0.1, -3.0, 0.5]).startswith("met in every round")
    # One round each way: the median (0.4) would pass, the machine can't tell.
    assert verdict([0.4, 0.2, 0.9]).startswith("not resolvable")


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind not installed (tools/setup.sh installs it)")
def test_instruction_counts_quick() -> None:
    """Alone, not beside the others: six callgrind runs take about a minute on 2 cores."""
    proc = subprocess.run(
        [sys.executable, "benchmarks/instructions.py", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=2 * TIMEOUT_S,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    variants = {"uninstrumented", "infersight", "hand-written OTel + prometheus_client"}
    rows = {}
    for line in proc.stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0] in variants:
            rows[cells[0]] = float(cells[1]), float(cells[2])
    assert set(rows) == variants, proc.stdout
    # The counts separate the threads: infersight's worker and export run beside the request.
    assert rows["infersight"][0] > rows["uninstrumented"][0]
    assert rows["infersight"][1] > rows["uninstrumented"][1] + 50  # thousands
    assert "all threads: **" in proc.stdout


def test_scorer_quick(tmp_path: Path) -> None:
    """benchmarks/scorer.py end to end at 30 req/s: both example servers, the generator process,
    the comparison and two search steps each. Checks counts and orderings, never a time."""
    out = tmp_path / "scorer.json"
    proc = subprocess.run(
        [sys.executable, "benchmarks/scorer.py", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for needle in ("| variant | sent | OK |", "| bare |", "| infersight |", "P99, infersight / bare at 30 req/s:"):
        assert needle in proc.stdout, proc.stdout
    assert "highest rate with P99 < 100 ms, infersight / bare:" in proc.stdout
    result = json.loads(out.read_text())
    for variant in ("bare", "infersight"):
        rows = result["comparison"][variant] + result["search"][variant]["steps"]
        for row in rows:
            # Open loop: every scheduled call was sent and answered, within its 30 s deadline.
            assert row["scheduled"] > 0 and row["sent"] == row["scheduled"] == row["ok"], row
            assert row["errors"] == {}, row
            assert 0 < row["p50_ms"] <= row["p99_ms"] <= row["max_ms"], row
            assert row["lag_p99_ms"] >= 0 and row["send_rate"] > 0 and row["server_cpu_ms_per_request"] > 0, row
        steps = result["search"][variant]["steps"]
        assert [s["rate"] for s in steps] == [20.0, 30.0] or not steps[0]["pass"], steps
        passed = [s["rate"] for s in steps if s["pass"]]
        assert result["search"][variant]["passed"] == (max(passed) if passed else None)
    # The variants are what they say: infersight's metrics counted every call (warm-ups
    # included), the bare server serves no metrics at all.
    assert result["counted_by_server"]["bare"] is None
    assert (
        result["counted_by_server"]["infersight"]
        == result["calls"]["infersight"] + result["warmup_calls"]["infersight"]
    )


def test_scorer_rate_search_brackets_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from scorer import RateSearch

    def search(limit: float, start: float = 100.0) -> RateSearch:
        s = RateSearch(start, ceiling=5000.0)
        while (rate := s.next_rate()) is not None:
            assert len(s.steps) < 30, s.steps
            s.record(rate, rate < limit)
        return s

    s = search(777.0)
    assert s.passed is not None and s.failed is not None
    assert s.passed < 777.0 <= s.failed and s.failed / s.passed <= 1.1
    assert [x["rate"] for x in s.steps[:3]] == [100.0, 150.0, 225.0]  # x1.5 up until a step fails
    low = search(30.0)  # the first step fails: down, then bisect
    assert low.passed is not None and low.failed is not None and low.passed < 30.0 <= low.failed
    high = search(1e9)  # never fails: stops at the ceiling, with no lowest failure
    assert high.failed is None and high.passed is not None and high.passed <= 5000.0 < high.passed * 1.5
