"""Pre-fork servers (gunicorn): counts aggregated across workers.

prometheus_client's multiprocess mode keeps each worker's samples in files under
``PROMETHEUS_MULTIPROC_DIR`` (set it before the server forks), and ``/metrics`` sums them. That
mode has no exemplars: in it, trace links come from the collector's span-metrics connector
(``traces_span_metrics_duration_*`` with exemplars), fed by the spans every worker exports with
its own ``service.instance.id``. In ``gunicorn.conf.py``::

    from infersight.multiprocess import child_exit  # noqa: F401  (gunicorn calls it by name)
"""

from __future__ import annotations

from typing import Any

__all__ = ["child_exit"]


def child_exit(server: Any, worker: Any) -> None:
    """gunicorn hook: drop a dead worker's live gauges so they don't linger in the sums."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
