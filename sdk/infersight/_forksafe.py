"""Fork safety: don't fork while another thread holds a lock the child will need.

``os.fork`` copies only the forking thread; a lock that another thread held at that instant stays
held for ever in the child. Measured over 1,000 forks of a busy process
(``tests/reliability/test_prefork.py``) before this module:

- prometheus_client's multiprocess mode guards every value with one global lock; a child forked
  while the worker thread held it deadlocked on its first metric update;
- a child forked while the span processor was exporting inherited a gRPC core that had skipped its
  fork handlers ("Other threads are currently calling into gRPC"): its export hung until the
  shutdown deadline and its spans were lost.

So before a fork we take, in this order, each span processor's export lock, the worker's drain
lock (the worker holds prometheus_client's label locks inside it) and prometheus_client's
multiprocess lock, each waiting at most ``FORK_WAIT_S`` (a blackholed collector must not stall
forks for its whole export deadline), and release them after the fork in both processes. The
child replaces the worker's and the processors' locks anyway (``_runtime``, OTel's own handler).

Registered when ``infersight`` is imported, before ``_runtime``'s handler: after-fork handlers run
in registration order, and the child's must find the metrics lock free.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

from . import _compat, _errors

__all__ = ["FORK_WAIT_S"]

FORK_WAIT_S = 1.0
_held: list[Any] = []


def _locks() -> list[Any]:
    found: list[Any] = []
    runtime = sys.modules.get("infersight._runtime")
    rt = runtime.get_runtime() if runtime is not None else None
    if rt is not None and not rt.closed:
        if rt.provider is not None:
            found.extend(_compat.batch_export_locks(rt.provider))
        worker_thread = getattr(rt.worker, "_thread", None)
        if worker_thread is not threading.current_thread():  # a hook forking from the worker
            found.append(rt.worker._drain_lock)
    prom = _compat.multiprocess_values_lock()
    if prom is not None:
        found.append(prom)  # last: its holders take no other lock, the others' holders take it
    return found


def _before_fork() -> None:
    try:
        for lock in _locks():
            if lock.acquire(timeout=FORK_WAIT_S):
                _held.append(lock)
            else:
                _errors.report("fork.lock_busy")
    except Exception as exc:
        _errors.report("fork", exc)


def _after_fork() -> None:
    while _held:
        lock = _held.pop()
        try:
            lock.release()
        except Exception:
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork, after_in_child=_after_fork)
