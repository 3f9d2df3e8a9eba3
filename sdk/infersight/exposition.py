"""Serve ``/metrics`` (Prometheus text or OpenMetrics with exemplars, by Accept header) and
extra pages such as ``/drift``, from a Flask route or a small background HTTP server."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder

from . import _errors
from .metrics import multiprocess_mode

__all__ = ["Exposition", "MetricsServer", "Page"]

Page = Callable[[], tuple[str, bytes]]  # () -> (content type, body)


class Exposition:
    """What the metrics endpoints serve. One per runtime: its Flask route and its metrics server
    read it, and parts such as the drift monitor add ``pages`` (path -> page) to it.

    ``drain`` processes what the request path recorded since the worker's last drain (every
    INFERSIGHT_FLUSH_INTERVAL), so a scrape counts every request that finished before it. In
    multiprocess mode the payload sums every worker's files, plus ``multiprocess_collectors``:
    custom collectors have no files (the GPU collector reads this process's sampler; a scrape
    makes no NVML call).
    """

    def __init__(self, registry: CollectorRegistry | None, drain: Callable[[], Any] | None = None) -> None:
        self.registry = registry
        self.drain = drain
        self.pages: dict[str, Page] = {}
        self.multiprocess_collectors: list[Any] = []

    def metrics(self, accept: str | None) -> tuple[str, bytes]:
        """(content type, body) of a scrape that sent ``accept``."""
        if self.drain is not None:
            try:
                self.drain()
            except Exception as exc:
                _errors.report("scrape", exc)
        encoder, content_type = choose_encoder(accept or "")
        return content_type, encoder(self._collected_registry())

    def _collected_registry(self) -> CollectorRegistry:
        if not multiprocess_mode():
            return self.registry if self.registry is not None else REGISTRY
        from .multiprocess import LockedMultiProcessCollector

        mp = CollectorRegistry()
        # Locked: dead workers' files are merged and deleted while scrapes may be reading.
        LockedMultiProcessCollector(mp)  # type: ignore[no-untyped-call]
        for collector in self.multiprocess_collectors:
            mp.register(collector)
        return mp

    def wsgi_app(self, metrics_path: str = "/metrics") -> Any:
        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            path = environ.get("PATH_INFO", "")
            page = self.pages.get(path)
            if path == metrics_path:
                content_type, body = self.metrics(environ.get("HTTP_ACCEPT"))
            elif page is not None:
                content_type, body = page()
            else:
                start_response("404 Not Found", [("Content-Type", "text/plain")])
                return [b"not found; try " + metrics_path.encode() + b"\n"]
            start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
            return [body]

        return app


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class MetricsServer:
    """The metrics endpoint for apps that aren't Flask (gRPC, workers), on its own port."""

    def __init__(self, exposition: Exposition, addr: str, port: int, metrics_path: str = "/metrics") -> None:
        app = exposition.wsgi_app(metrics_path or "/metrics")
        self._server = make_server(addr, port, app, _ThreadingServer, handler_class=_QuietHandler)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="infersight-metrics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
