"""Flush on SIGTERM before the process dies of it.

``docker stop`` and Kubernetes stop a server with SIGTERM. A server that installed no handler
of its own dies of it at once, without ``atexit``, and loses the spans of its last seconds.
Where SIGTERM still has its default disposition, infersight installs a handler that flushes
(bounded by ``INFERSIGHT_SHUTDOWN_TIMEOUT``) and then re-raises the signal with the default
disposition, so the process ends exactly as it would have (killed by SIGTERM). A handler the app
set is never replaced; one it sets later replaces ours.

SIGINT is left alone: its default handler raises ``KeyboardInterrupt``, which unwinds the main
thread and runs ``atexit`` (our shutdown), and replacing it would take the exception away from
the app's own ``except KeyboardInterrupt`` clean-up.

``signal.signal`` works only in the main thread; elsewhere nothing is installed.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = ["install", "installed", "uninstall"]

# The signals handled, each with the disposition it must still have for ours to go in.
_HANDLED: dict[signal.Signals, Any] = {signal.SIGTERM: signal.SIG_DFL}

_flush: Callable[[float], None] | None = None
_timeout_s = 3.0


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _handler(signum: int, frame: FrameType | None) -> None:
    sig = signal.Signals(signum)
    # A second signal during the flush kills at once, as the default would have.
    signal.signal(sig, signal.SIG_DFL)
    flush, timeout = _flush, _timeout_s
    if flush is not None:
        # In a thread: the signal may have interrupted the main thread while it held a lock the
        # flush needs; the join bounds the wait either way.
        worker = threading.Thread(target=_run_flush, args=(flush, timeout), name="infersight-signal", daemon=True)
        worker.start()
        worker.join(timeout + 0.5)
    os.kill(os.getpid(), sig)


def _run_flush(flush: Callable[[float], None], timeout: float) -> None:
    try:
        flush(timeout)
    except Exception:
        pass  # dying anyway: the re-raised signal must still go out


def install(flush: Callable[[float], None], timeout_s: float) -> list[signal.Signals]:
    """Install the flushing handler where the default is still in place (main thread only).
    ``flush(timeout_s)`` flushes and stops the runtime. Returns the signals now handled by us."""
    global _flush, _timeout_s
    _flush, _timeout_s = flush, timeout_s
    if not _in_main_thread():
        return []
    done = []
    for sig, default in _HANDLED.items():
        try:
            current = signal.getsignal(sig)
            if current is default or current is _handler:
                signal.signal(sig, _handler)
                done.append(sig)
        except (ValueError, OSError):
            pass  # an embedding interpreter that owns its signals
    return done


def installed() -> list[signal.Signals]:
    """The signals whose handler is ours now."""
    return [sig for sig in _HANDLED if signal.getsignal(sig) is _handler]


def uninstall() -> None:
    """Put the defaults back where our handler is still the one in place (main thread only)."""
    global _flush
    _flush = None
    if not _in_main_thread():
        return
    for sig, default in _HANDLED.items():
        try:
            if signal.getsignal(sig) is _handler:
                signal.signal(sig, default)
        except (ValueError, OSError):
            pass
