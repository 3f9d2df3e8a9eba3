"""Pre-fork servers (issue #8 part 5): gunicorn with and without ``--preload``, with
``--max-requests`` recycling, and raw fork cycles.

- spans come from every worker, each with its own ``service.instance.id`` (not the master's);
- counters in ``/metrics`` equal the requests sent, across workers and restarts;
- no deadlock and no lost span over 1,000 forks of a process busy serving requests;
- dead workers' multiprocess files are merged (``infersight.multiprocess``), so after 100 worker
  restarts the directory is small and a scrape stays under 1 s.

Every test prints its figures (requests served/failed, spans expected/received, files, scrape
time, RSS).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.mmap_dict import MmapedDict, mmap_key

from infersight import _errors
from infersight.conventions import ATTR
from infersight.multiprocess import LockedMultiProcessCollector, mark_process_dead
from stack import OtlpSink, free_port

ROOT = Path(__file__).resolve().parents[2]
# Above /proc/sys/kernel/pid_max's ceiling (2**22): never a live process, so "dead".
DEAD_PID = 5_000_000


class Sink(OtlpSink):
    """The OTLP sink, read as spans per trace with the instance id of the process that sent them."""

    def __init__(self) -> None:
        super().__init__(workers=4)

    @property
    def per_instance(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for spans in self.traces().values():
            for resource, _ in spans:
                instance = resource.get(ATTR.SERVICE_INSTANCE_ID, "")
                counts[instance] = counts.get(instance, 0) + 1
        return counts

    def wait_for(self, trace_ids: list[str], per_trace: int, timeout_s: float) -> int:
        """Spans received for ``trace_ids``, once each has ``per_trace`` or the time is up."""
        deadline = time.monotonic() + timeout_s
        while True:
            traces = self.traces()
            got = [len(traces.get(t, ())) for t in trace_ids]
            if all(n >= per_trace for n in got) or time.monotonic() > deadline:
                return sum(got)
            time.sleep(0.1)


@pytest.fixture
def sink() -> Iterator[Sink]:
    s = Sink().start()
    try:
        yield s
    finally:
        s.stop()


@dataclass
class Server:
    url: str
    mp_dir: Path
    master: dict[str, Any]
    proc: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)


def _get_ok(session: requests.Session, url: str) -> dict[str, Any] | None:
    try:
        resp = session.get(url, timeout=10)
    except requests.RequestException:
        return None
    return resp.json() if resp.status_code == 200 else None  # type: ignore[no-any-return]


@contextlib.contextmanager
def gunicorn(tmp_path: Path, sink: Sink, *args: str) -> Iterator[Server]:
    """gunicorn on a free port with a fresh multiprocess dir; stopped (SIGTERM) on exit, after
    which the last workers have flushed their spans."""
    exe = shutil.which("gunicorn", path=os.path.dirname(sys.executable))
    assert exe, "gunicorn is a dev dependency"
    port = free_port()
    mp_dir = tmp_path / "prom"
    mp_dir.mkdir()
    master_file = tmp_path / "master.json"
    env = dict(
        os.environ,
        PROMETHEUS_MULTIPROC_DIR=str(mp_dir),
        INFERSIGHT_GPU="off",
        PYTHONPATH=os.pathsep.join([str(ROOT / "sdk"), str(ROOT)]),
        PREFORK_MASTER_FILE=str(master_file),
        **sink.env(),
    )
    cmd = [exe, *args, "-b", f"127.0.0.1:{port}", "-c", "tests/apps/prefork_conf.py", "tests.apps.prefork_app:app"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    server = Server(f"http://127.0.0.1:{port}", mp_dir, {}, proc)
    try:
        deadline = time.monotonic() + 60
        while not master_file.exists() or not master_file.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate(timeout=5)[0][-3000:]
            time.sleep(0.1)
        server.master = json.loads(master_file.read_text())
        while True:  # workers booted: /metrics (not counted as a request) answers
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{server.url}/metrics", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, "gunicorn workers did not start"
            time.sleep(0.1)
        yield server
    finally:
        proc.terminate()
        try:
            server.output.append(proc.communicate(timeout=20)[0])
        except subprocess.TimeoutExpired:
            proc.kill()
            server.output.append(proc.communicate()[0])
            raise


def _count(text: str, metric: str, **labels: str) -> float:
    """Sum of a metric's samples whose labels include ``labels``."""
    total = 0.0
    for m in re.finditer(rf"^{metric}\{{([^}}]*)\}} (\S+)$", text, re.M):
        if all(f'{k}="{v}"' in m.group(1) for k, v in labels.items()):
            total += float(m.group(2))
    return total


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def _check_spans(sink: Sink, served: list[dict[str, Any]], master: dict[str, Any], label: str) -> None:
    """Every request's 2 spans arrived, from its worker's one instance id, distinct per worker."""
    trace_ids = [r["trace_id"] for r in served]
    received = sink.wait_for(trace_ids, 2, timeout_s=20)
    pids = {r["pid"] for r in served}
    ids_by_pid: dict[int, set[str]] = {}
    traces = sink.traces()
    for r in served:
        ids_by_pid.setdefault(r["pid"], set()).update(
            resource.get(ATTR.SERVICE_INSTANCE_ID, "") for resource, _ in traces.get(r["trace_id"], ())
        )
        ids_by_pid[r["pid"]].add(r["instance_id"])
    distinct = {i for ids in ids_by_pid.values() for i in ids}
    print(
        f"{label}: spans expected {2 * len(served)} received {received}; worker pids {len(pids)}, "
        f"instance ids {len(distinct)}; master pid {master['pid']} "
        f"instance id {master['instance_id'] or '(none: app not loaded in master)'}"
    )
    assert received == 2 * len(served), "spans lost"
    assert master["pid"] not in pids
    assert all(len(ids) == 1 for ids in ids_by_pid.values()), ids_by_pid  # one id per worker
    assert len(distinct) == len(pids)  # no two workers share one
    assert master["instance_id"] not in distinct


@pytest.mark.parametrize("preload", [False, True], ids=["no-preload", "preload"])
def test_gunicorn_workers_spans_and_counters(tmp_path: Path, sink: Sink, preload: bool) -> None:
    """2 workers recycled every 15 requests: 60 requests over at least 4 worker processes."""
    args = ["-w", "2", "--max-requests", "15", *(["--preload"] if preload else [])]
    session = requests.Session()
    with gunicorn(tmp_path, sink, *args) as srv:
        results = [_get_ok(session, f"{srv.url}/work") for _ in range(60)]
        time.sleep(1.5)  # a scrape drains only its own worker; the other writes its metrics once a second
        text = requests.get(f"{srv.url}/metrics", timeout=5).text
    served = [r for r in results if r is not None]
    stage = _count(text, "infersight_stage_duration_seconds_count", model="mp", stage="model")
    req = _count(text, "infersight_request_duration_seconds_count", endpoint="/work")
    label = f"gunicorn -w 2 --max-requests 15 {'--preload' if preload else '(no preload)'}"
    print(
        f"{label}: requests sent 60 served {len(served)} failed {60 - len(served)}; /metrics "
        f"request count {req:g} stage count {stage:g}; files {sorted(os.listdir(srv.mp_dir))}"
    )
    assert len(served) == 60, srv.output[-1][-3000:]
    assert req == 60.0 and stage == 60.0, srv.output[-1][-3000:]
    assert len({r["pid"] for r in served}) >= 4  # recycling did happen
    _check_spans(sink, served, srv.master, label)
    if preload:
        assert srv.master["instance_id"], "the preloaded master has a runtime"


@pytest.mark.slow
def test_100_worker_restarts_files_compacted_scrape_fast(tmp_path: Path, sink: Sink) -> None:
    """--max-requests 1: every request ends its worker. After 100 restarts the counts are exact,
    the directory holds a few files per live process plus the archives, and a scrape is fast."""
    session = requests.Session()
    with gunicorn(tmp_path, sink, "--preload", "-w", "2", "--max-requests", "1") as srv:
        rss_before = _rss_kib(srv.master["pid"])
        started = time.monotonic()
        results = [_get_ok(session, f"{srv.url}/work") for _ in range(100)]
        took = time.monotonic() - started
        time.sleep(1.0)  # the last exits reaped and merged
        files = sorted(os.listdir(srv.mp_dir))
        t0 = time.monotonic()
        text = requests.get(f"{srv.url}/metrics", timeout=10).text  # may wait for a worker to boot
        http_s = time.monotonic() - t0
        collect = []  # the scrape's own work: reading and merging the files
        for _ in range(3):
            t0 = time.monotonic()
            generate_latest(LockedMultiProcessCollector(CollectorRegistry(), path=str(srv.mp_dir)))
            collect.append(time.monotonic() - t0)
        rss_after = _rss_kib(srv.master["pid"])
    served = [r for r in results if r is not None]
    booted = srv.output[-1].count("Booting worker with pid")
    db_files = [f for f in files if f.endswith(".db")]
    req = _count(text, "infersight_request_duration_seconds_count", endpoint="/work")
    stage = _count(text, "infersight_stage_duration_seconds_count", model="mp", stage="model")
    print(
        f"100 restarts (--preload -w 2 --max-requests 1): requests sent 100 served {len(served)} "
        f"failed {100 - len(served)} in {took:.1f} s; workers booted {booted}; /metrics request "
        f"count {req:g} stage count {stage:g}; {len(db_files)} .db files {db_files}; scrape over HTTP "
        f"{http_s * 1000:.1f} ms, collection {', '.join(f'{s * 1000:.1f}' for s in collect)} ms; "
        f"master RSS {rss_before} -> {rss_after} KiB"
    )
    assert len(served) == 100, srv.output[-1][-3000:]
    assert booted >= 100
    assert req == 100.0 and stage == 100.0
    # Without compaction: 4 files per worker ever started (>= 400); with it: 4 per live process
    # (master + 2 workers, a dying one maybe) and 3 archives.
    assert len(db_files) <= 4 * 4 + 3, db_files
    assert http_s < 1.0 and max(collect) < 1.0
    assert rss_after - rss_before < 50_000  # KiB: merging leaks nothing in the master
    _check_spans(sink, served, srv.master, "100 restarts")


@pytest.mark.slow
def test_1000_fork_cycles_no_deadlock_no_lost_span(tmp_path: Path, sink: Sink) -> None:
    """A process that imported infersight.auto forks 1,000 times while a thread serves requests:
    every child serves one instrumented request, flushes and exits within its deadline."""
    mp_dir = tmp_path / "prom"
    mp_dir.mkdir()
    env = dict(
        os.environ,
        PROMETHEUS_MULTIPROC_DIR=str(mp_dir),
        INFERSIGHT_GPU="off",
        PYTHONPATH=os.pathsep.join([str(ROOT / "sdk"), str(ROOT)]),
        **sink.env(),
    )
    started = time.monotonic()
    res = subprocess.run(
        [sys.executable, "tests/reliability/fork_cycles.py", "1000", "90"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
    )
    took = time.monotonic() - started
    assert res.returncode == 0, res.stderr[-3000:]
    fig = json.loads(res.stdout.strip().splitlines()[-1])
    metrics = fig.pop("metrics")
    child_ids: dict[str, str] = fig.pop("child_instance_ids")
    expected = {"/child": float(fig["cycles"]), "/parent": float(fig["parent_requests"])}
    counted = {ep: _count(metrics, "infersight_request_duration_seconds_count", endpoint=ep) for ep in expected}
    dropped = _count(metrics, "infersight_spans_dropped_total")
    parent_id, cycles, parent_requests = fig["parent_instance_id"], fig["cycles"], fig["parent_requests"]
    deadline = time.monotonic() + 20
    while True:  # children flushed before exiting; the parent's last spans may still be on the way
        per = sink.per_instance
        child_spans = sum(per.get(i, 0) for i in child_ids.values())
        parent_spans = per.get(parent_id, 0)
        if child_spans >= 2 * cycles and parent_spans >= 2 * parent_requests - dropped:
            break
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    errors = _count(metrics, "infersight_sdk_errors_total")
    print(
        f"{cycles} fork cycles in {fig['elapsed_s']} s (test {took:.1f} s): children ok {len(child_ids)} "
        f"hung {len(fig['hung'])} failed {len(fig['failed'])}, slowest {fig['slowest_child_s']} s; "
        f"child spans expected {2 * cycles} received {child_spans}; parent requests {parent_requests} "
        f"spans received {parent_spans} dropped {dropped:g}; sdk errors {errors:g}; /metrics counts "
        f"{counted}; instance ids {len(set(child_ids.values()))} distinct; files {len(fig['files'])}, "
        f"scrape {fig['scrape_s'] * 1000:.1f} ms; parent RSS {fig['rss_kib_before']} -> "
        f"{fig['rss_kib_after']} KiB"
    )
    assert fig["hung"] == [] and fig["failed"] == [], res.stderr[-5000:]
    assert fig["cycles"] == 1000, "over the time budget: children slow to export or exit"
    assert len(child_ids) == 1000
    assert len(set(child_ids.values())) == 1000 and parent_id not in child_ids.values()
    assert child_spans == 2000, "children's spans lost"
    assert parent_spans == 2 * parent_requests - dropped
    assert counted == expected
    assert len([f for f in fig["files"] if f.endswith(".db")]) <= 4 + 3  # the parent's + archives
    assert fig["scrape_s"] < 1.0
    assert fig["rss_kib_after"] - fig["rss_kib_before"] < 50_000
    assert took < 120


FORK_WHILE_HELD = """
import infersight.auto  # noqa: I001
import os, sys, threading, time
import infersight
from prometheus_client import values

rt = infersight.get_runtime()
# Found here rather than with infersight._forksafe's helpers: importing it would register it.
locks = {"export": rt.provider._active_span_processor._span_processors[0]._batch_processor._export_lock,
         "drain": rt.worker._drain_lock, "prometheus": values.ValueClass.inc.__closure__[0].cell_contents}
for name, lock in locks.items():
    held, release = threading.Event(), threading.Event()

    def hold():
        with lock:
            held.set()
            release.wait(0.3)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the lock a thread held must be free here, and a request must not hang
        ok = lock.acquire(timeout=2)
        if ok:
            lock.release()
            with infersight.request(model="m"), infersight.model():
                pass
        os._exit(0 if ok else 3)
    waited = time.monotonic() - t0
    _, status = os.waitpid(pid, 0)
    holder.join()
    print(name, round(waited, 3), os.waitstatus_to_exitcode(status), flush=True)
"""


def test_fork_waits_until_threads_leave_the_locks() -> None:
    """Deterministic version of the 1,000 cycles: a thread holds each lock for 0.3 s while the main
    thread forks. The fork must wait (no export mid-call in gRPC, the worker outside its metric
    updates) and the child find the lock free (prometheus_client's is the child's own)."""
    env = dict(
        os.environ,
        PROMETHEUS_MULTIPROC_DIR="",
        INFERSIGHT_GPU="off",
        PYTHONPATH=os.pathsep.join([str(ROOT / "sdk"), str(ROOT)]),
        OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9",
        OTEL_BSP_SCHEDULE_DELAY="200",
    )
    with tempfile.TemporaryDirectory() as mp_dir:
        env["PROMETHEUS_MULTIPROC_DIR"] = mp_dir
        res = subprocess.run(
            [sys.executable, "-c", FORK_WHILE_HELD], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
    print(f"fork while a thread holds a lock (name, fork waited s, child exit code):\n{res.stdout}")
    assert res.returncode == 0, res.stderr[-3000:]
    rows = [line.split() for line in res.stdout.splitlines()]
    assert [r[0] for r in rows] == ["export", "drain", "prometheus"]
    for name, waited, code in rows:
        assert code == "0", f"{name}: the child found the lock held"
        assert 0.2 < float(waited) < 1.5, f"{name}: the fork didn't wait for the holder"


# ---- compaction itself, on synthetic files -----------------------------------------------


Entry = tuple[str, str, dict[str, str], float, float]  # metric, sample, labels, value, timestamp


def _write(path: Path, prefix: str, pid: int, entries: list[Entry]) -> None:
    d = MmapedDict(str(path / f"{prefix}_{pid}.db"))
    for metric, sample, labels, value, ts in entries:
        d.write_value(mmap_key(metric, sample, list(labels), list(labels.values()), "help"), value, ts)
    d.close()


def _fake_process(path: Path, pid: int, i: int) -> None:
    """One dead worker's files: a counter, a histogram (per-bucket values, as stored) and one
    gauge of each multiprocess mode."""
    _write(path, "counter", pid, [("c", "c_total", {"k": "a"}, i + 1.0, 0.0), ("c", "c_total", {"k": "b"}, 1.0, 0.0)])
    buckets = [("h", "h_bucket", {"le": le}, 1.0 if le == "1.0" else 0.0, 0.0) for le in ("0.5", "1.0", "+Inf")]
    _write(path, "histogram", pid, [*buckets, ("h", "h_sum", {}, 0.75, 0.0), ("h", "h_count", {}, 1.0, 0.0)])
    for mode in ("min", "max", "sum", "mostrecent", "livesum", "all"):
        _write(path, f"gauge_{mode}", pid, [(f"g_{mode}", f"g_{mode}", {}, float(i), 1000.0 + i)])


def _samples(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for metric in LockedMultiProcessCollector(None, path=str(path)).collect():
        for s in metric.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_compaction_keeps_every_sample_and_shrinks_the_scrape(tmp_path: Path) -> None:
    n = 100
    for i in range(n):
        _fake_process(tmp_path, DEAD_PID + i, i)
    _write(tmp_path, "counter", os.getpid(), [("c", "c_total", {"k": "a"}, 5.0, 0.0)])  # alive: kept
    files_before = len(list(tmp_path.glob("*.db")))
    t0 = time.perf_counter()
    before = _samples(tmp_path)
    scrape_before = time.perf_counter() - t0
    t0 = time.perf_counter()
    merged = sum(mark_process_dead(DEAD_PID + i, str(tmp_path)) for i in range(n))
    merge_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    after = _samples(tmp_path)
    scrape_after = time.perf_counter() - t0
    files_after = sorted(p.name for p in tmp_path.glob("*.db"))
    print(
        f"compaction of {n} dead processes: files {files_before} -> {len(files_after)} ({merged} merged or "
        f"dropped in {merge_s * 1000:.0f} ms, {merge_s / n * 1000:.2f} ms per death); scrape "
        f"{scrape_before * 1000:.1f} -> {scrape_after * 1000:.1f} ms"
    )
    # What prometheus_client's mark_process_dead alone leaves out: the dead's live gauges.
    expected = {k: v for k, v in before.items() if not k[0].startswith("g_livesum")}
    assert after == pytest.approx(expected)
    assert after[("c_total", (("k", "a"),))] == sum(range(1, n + 1)) + 5.0
    assert after[("g_min", ())] == 0.0 and after[("g_max", ())] == n - 1 == after[("g_mostrecent", ())]
    assert len([k for k in after if k[0] == "g_all"]) == n  # one series per pid, by design
    assert files_after == sorted(
        [
            f"counter_{os.getpid()}.db",
            "counter_archive.db",
            "histogram_archive.db",
            "gauge_min_archive.db",
            "gauge_max_archive.db",
            "gauge_sum_archive.db",
            "gauge_mostrecent_archive.db",
        ]
        + [f"gauge_all_{DEAD_PID + i}.db" for i in range(n)]
    )
    assert merge_s / n < 0.05


def test_scrapes_during_compaction_never_go_backwards(tmp_path: Path) -> None:
    """Scrapes in a thread while 200 dead processes are merged one by one: the total is constant
    (without the lock a scrape can read a worker twice, or not at all, or hit a deleted file)."""
    n = 200
    for i in range(n):
        _write(tmp_path, "counter", DEAD_PID + i, [("c", "c_total", {}, 1.0, 0.0)])
    seen: list[float] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def scrape() -> None:
        while not stop.is_set():
            try:
                seen.append(_samples(tmp_path).get(("c_total", ()), 0.0))
            except Exception as exc:
                errors.append(exc)

    thread = threading.Thread(target=scrape)
    thread.start()
    try:
        for i in range(n):
            mark_process_dead(DEAD_PID + i, str(tmp_path))
            time.sleep(0.001)
    finally:
        stop.set()
        thread.join(10)
    seen.append(_samples(tmp_path)[("c_total", ())])
    print(f"scrapes during {n} merges: {len(seen)}, totals seen {sorted(set(seen))}, errors {len(errors)}")
    assert errors == [] and set(seen) == {float(n)}
    assert len(seen) > 10


def test_merge_errors_are_counted_not_raised(tmp_path: Path) -> None:
    _write(tmp_path, "counter", DEAD_PID, [("c", "c_total", {}, 1.0, 0.0)])
    # Torn: says 64 bytes used, then an entry claiming 1000.
    (tmp_path / f"histogram_{DEAD_PID}.db").write_bytes(struct.pack("iii", 64, 0, 1000) + b"x" * 52)
    before = _errors.counts().get("multiprocess", 0)
    assert mark_process_dead(DEAD_PID, str(tmp_path)) == 0  # no exception into gunicorn
    print(f"corrupt file: sdk errors counted {_errors.counts().get('multiprocess', 0) - before}")
    assert _errors.counts().get("multiprocess", 0) == before + 1
    assert (tmp_path / f"histogram_{DEAD_PID}.db").exists()  # nothing of it deleted unmerged
