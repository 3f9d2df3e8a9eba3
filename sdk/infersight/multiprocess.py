"""Pre-fork servers (gunicorn): counts aggregated across workers, and files that don't pile up.

prometheus_client's multiprocess mode keeps each worker's samples in files under
``PROMETHEUS_MULTIPROC_DIR`` (set it before the server forks, empty it before each start), and
``/metrics`` sums them. That mode has no exemplars: in it, trace links come from the collector's
span-metrics connector (``traces_span_metrics_duration_*`` with exemplars), fed by the spans every
worker exports with its own ``service.instance.id``. In ``gunicorn.conf.py``::

    from infersight.multiprocess import child_exit  # noqa: F401  (gunicorn calls it by name)

Compaction. prometheus_client's ``mark_process_dead`` removes only a dead worker's live gauges;
its counter and histogram files stay for ever and every scrape reads them all, so with
``--max-requests`` recycling the directory and the scrape time grow with each restart.
``child_exit`` (run by the master once it has reaped a worker) therefore merges the dead worker's
counter, histogram and summary files and its ``min``/``max``/``sum``/``mostrecent`` gauges into
one ``<type>_archive.db`` per type, which the collector reads like any other file, and deletes
them. Files of other processes found dead (a merge skipped earlier) are merged at the same time.
``all``-mode gauges (prometheus_client's default mode) keep a series per pid by design and are
left alone: give gauges in prefork servers a ``live*`` or ``mostrecent`` mode.

A lock file (``.infersight.lock``, ``flock``) keeps scrapes consistent: the merge holds it
exclusively and infersight's ``/metrics`` holds it shared while collecting, so a scrape counts a
dead worker once, either in its files or in the archive, and counters never go backwards. A
``/metrics`` built on prometheus_client's own ``MultiProcessCollector`` doesn't take the lock and
may fail on a file deleted mid-scrape: use ``LockedMultiProcessCollector`` there. A master killed
between writing an archive and deleting the merged files counts those files twice until restart.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client.multiprocess import MultiProcessCollector

from . import _compat, _errors

__all__ = ["LockedMultiProcessCollector", "child_exit", "mark_process_dead", "reap_dead"]

LOCK_FILE = ".infersight.lock"  # not *.db: the collector's glob skips it
ARCHIVE = "archive"
# A merge delays the master's loop; past this the files stay and a later death merges them.
MERGE_LOCK_WAIT_S = 1.0
SCRAPE_LOCK_WAIT_S = 5.0

Value = tuple[float, float]  # (value, timestamp), as prometheus_client's files store them


def _sum(old: Value, new: Value) -> Value:
    return old[0] + new[0], max(old[1], new[1])


def _min(old: Value, new: Value) -> Value:
    return new if new[0] < old[0] else old


def _max(old: Value, new: Value) -> Value:
    return new if new[0] > old[0] else old


def _latest(old: Value, new: Value) -> Value:
    return new if new[1] > old[1] else old


# File prefix -> how one key's values from two processes combine. Histogram buckets are stored
# per bucket (not cumulative), so they add like counters.
_MERGE: dict[str, Callable[[Value, Value], Value]] = {
    "counter": _sum,
    "histogram": _sum,
    "summary": _sum,
    "gauge_sum": _sum,
    "gauge_min": _min,
    "gauge_max": _max,
    "gauge_mostrecent": _latest,
}


@contextmanager
def _flock(path: str, exclusive: bool, wait_s: float) -> Iterator[bool]:
    """Hold the directory's lock; yields False (unlocked) if it wasn't free within ``wait_s``."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): no prefork servers either
        yield True
        return
    fd = os.open(os.path.join(path, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        op = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, op)
                got = True
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    got = False
                    break
                time.sleep(0.002)
        yield got  # closing the fd below releases the lock
    finally:
        os.close(fd)


def _parse(name: str) -> tuple[str, int] | None:
    """``counter_123.db`` -> ("counter", 123); None for archives and foreign files."""
    if not name.endswith(".db"):
        return None
    prefix, _, ident = name[:-3].rpartition("_")
    if not prefix or not ident.isdigit():
        return None
    return prefix, int(ident)


def _is_dead(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # EPERM: alive, another user's
        return False
    return False  # alive, or a zombie not reaped yet: its own child_exit will merge it


def _merge(path: str, prefix: str, files: Iterable[str]) -> None:
    """Fold ``files`` into ``<prefix>_archive.db``, replaced atomically (readers hold the lock,
    but a crash mid-write must not leave a torn archive)."""
    combine = _MERGE[prefix]
    archive = os.path.join(path, f"{prefix}_{ARCHIVE}.db")
    merged: dict[str, Value] = {}
    sources = [archive, *files] if os.path.exists(archive) else list(files)
    for source in sources:
        for key, value, timestamp in _compat.read_mmap_values(source):
            old = merged.get(key)
            merged[key] = (value, timestamp) if old is None else combine(old, (value, timestamp))
    tmp = os.path.join(path, f".{prefix}_{ARCHIVE}.tmp")
    if os.path.exists(tmp):
        os.remove(tmp)
    _compat.write_mmap_values(tmp, ((key, value, timestamp) for key, (value, timestamp) in merged.items()))
    os.replace(tmp, archive)


def _compact(path: str, pid: int | None) -> int:
    groups: dict[str, list[str]] = {}
    verdicts: dict[int, bool] = {pid: True} if pid is not None else {}
    for entry in os.scandir(path):
        parsed = _parse(entry.name)
        if parsed is None:
            continue
        prefix, owner = parsed
        if owner not in verdicts:
            verdicts[owner] = _is_dead(owner)
        if verdicts[owner]:
            groups.setdefault(prefix, []).append(entry.path)
    done = 0
    for prefix, files in groups.items():
        if prefix in _MERGE:
            _merge(path, prefix, files)
        elif not prefix.startswith("gauge_live"):
            continue  # "all" gauges (and types we don't know) stay as they are
        for f in files:
            os.remove(f)
            done += 1
    return done


def mark_process_dead(pid: int, path: str | None = None) -> int:
    """Clean up after process ``pid`` died: drop its live gauges, merge its other files into the
    archives. Returns how many files went. Never raises: errors are counted and logged once."""
    return _cleanup(pid, path)


def reap_dead(path: str | None = None) -> int:
    """Clean up after every process of the directory found dead. For servers that spawn their
    workers and call no hook when one dies (``uvicorn --workers N``): each worker runs it as it
    starts, so a restarted worker cleans up after the one it replaces."""
    return _cleanup(None, path)


def _cleanup(pid: int | None, path: str | None) -> int:
    try:
        path = path or os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if not path or not os.path.isdir(path):
            return 0
        with _flock(path, exclusive=True, wait_s=MERGE_LOCK_WAIT_S) as locked:
            if locked:
                return _compact(path, pid)
        # Scrapes kept the lock: just what prometheus_client does (its collector tolerates
        # live gauges vanishing); the next death merges the rest.
        if pid is not None:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
        return 0
    except Exception as exc:
        _errors.report("multiprocess", exc)
        return 0


def child_exit(server: Any, worker: Any) -> None:
    """gunicorn hook (runs in the master after reaping a worker): see the module docs."""
    mark_process_dead(worker.pid)


class LockedMultiProcessCollector(MultiProcessCollector):  # type: ignore[misc]
    """prometheus_client's collector, reading the files under the directory's shared lock."""

    def collect(self) -> list[Any]:
        path = _compat.multiprocess_collector_path(self)
        if path is None:  # prometheus_client moved it: read unlocked rather than fail the scrape
            _errors.report("compat.multiprocess_collector_path")
            return list(super().collect())  # type: ignore[no-untyped-call]
        with _flock(path, exclusive=False, wait_s=SCRAPE_LOCK_WAIT_S) as locked:
            if not locked:  # a merge stuck for seconds: read anyway rather than fail the scrape
                _errors.report("multiprocess.scrape")
            return list(super().collect())  # type: ignore[no-untyped-call]
