"""Fork many times from a process that imported ``infersight.auto`` and is busy serving requests.

Run as a subprocess by ``test_prefork.py``: ``python fork_cycles.py CYCLES BUDGET_S`` (it stops
forking once BUDGET_S has passed, so a slow run still reports). Each child runs one
instrumented request, flushes (``infersight.shutdown``) and exits; the parent waits for it with a
deadline, merges its metric files the way gunicorn's ``child_exit`` does, and prints one JSON line
of figures at the end. A child that hangs dumps its threads' stacks (faulthandler) and is killed.
"""

import infersight.auto  # noqa: I001

import faulthandler
import json
import os
import signal
import sys
import threading
import time

import infersight
from infersight import multiprocess
from infersight.conventions import ATTR

CHILD_DEADLINE_S = 10.0


def serve_one(endpoint: str) -> None:
    with infersight.request(model="fork", endpoint=endpoint), infersight.model():
        pass


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def instance_id() -> str:
    rt = infersight.get_runtime()
    return str(rt.resource.attributes[ATTR.SERVICE_INSTANCE_ID]) if rt is not None else ""


def child(report_fd: int) -> None:
    code = 1
    try:
        faulthandler.dump_traceback_later(CHILD_DEADLINE_S - 2, exit=True)
        serve_one("/child")
        own_id = instance_id()
        infersight.shutdown(timeout_s=3)  # drains the worker and flushes the spans
        os.write(report_fd, f"{os.getpid()} {own_id}\n".encode())
        code = 0
    finally:
        os._exit(code)


def main() -> None:
    cycles, budget_s = int(sys.argv[1]), float(sys.argv[2])
    parent_id = instance_id()
    for _ in range(50):  # warm: the worker and the span processor threads have run
        serve_one("/parent")
    served = [50]
    stop = threading.Event()

    def load() -> None:  # keeps the background threads busy while we fork
        while not stop.is_set():
            serve_one("/parent")
            served[0] += 1
            time.sleep(0.0005)

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    rss_before = rss_kib()
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    reports = b""
    hung: list[int] = []
    failed: list[int] = []
    slowest = 0.0
    slow: list[int] = []
    started = time.monotonic()
    forked = 0
    for _ in range(cycles):
        if time.monotonic() - started > budget_s:
            break
        forked += 1
        t0 = time.monotonic()
        pid = os.fork()
        if pid == 0:
            child(write_fd)
        status = None
        while time.monotonic() - t0 < CHILD_DEADLINE_S:
            reaped, status = os.waitpid(pid, os.WNOHANG)
            if reaped:
                break
            time.sleep(0.001)
        else:
            hung.append(pid)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        if status is not None and status != 0 and pid not in hung:
            failed.append(pid)
        took = time.monotonic() - t0
        slowest = max(slowest, took)
        if took > 1.0:
            slow.append(pid)
        multiprocess.mark_process_dead(pid)  # what gunicorn's child_exit does
        try:
            reports += os.read(read_fd, 1 << 16)
        except BlockingIOError:
            pass
    elapsed = time.monotonic() - started
    stop.set()
    loader.join(5)
    child_ids = dict(line.split() for line in reports.decode().splitlines())
    infersight.get_runtime().worker.drain()  # type: ignore[union-attr]
    mp_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    files = sorted(os.listdir(mp_dir)) if mp_dir else []
    t0 = time.monotonic()
    _, body = infersight.get_runtime().exposition.metrics(None)  # type: ignore[union-attr]
    scrape_s = time.monotonic() - t0
    infersight.shutdown(timeout_s=5)  # the parent's spans too
    print(
        json.dumps(
            {
                "cycles": forked,
                "hung": hung,
                "failed": failed,
                "elapsed_s": round(elapsed, 2),
                "slowest_child_s": round(slowest, 3),
                "slow": slow,
                "parent_requests": served[0],
                "parent_instance_id": parent_id,
                "child_instance_ids": child_ids,
                "rss_kib_before": rss_before,
                "rss_kib_after": rss_kib(),
                "files": files,
                "scrape_s": round(scrape_s, 4),
                "metrics": body.decode(),
            }
        )
    )
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
