"""The ``/drift`` pages: an index of the monitored models with their last verdict, and each
model's latest evidently report at ``/drift/<model>``, read from ``<drift_dir>/<model>/report.html``.

Pages go into the runtime's ``Exposition.pages``, so they are served wherever ``/metrics`` is.
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .storage import model_dir, model_slug, write_atomic

__all__ = ["INDEX_PATH", "REPORT_FILE", "ModelStatus", "Page", "ReportPages"]

Page = Callable[[], tuple[str, bytes]]  # as ``exposition.Page``

INDEX_PATH = "/drift"
REPORT_FILE = "report.html"
_HTML = "text/html; charset=utf-8"


@dataclass
class ModelStatus:
    """What the index shows of one model."""

    verdict: str = "waiting for data"
    share: float | None = None
    window: int = 0
    reference: str = ""
    finished: float = 0.0


class ReportPages:
    def __init__(self, root: Path, served: dict[str, Page]) -> None:
        self.root = root
        self._served = served  # path -> page, served next to /metrics
        self._status: dict[str, ModelStatus] = {}
        self._lock = threading.Lock()
        self._installed: dict[str, Page] = {}

    def after_fork(self) -> None:
        self._lock = threading.Lock()

    def install(self) -> None:
        self._register(INDEX_PATH, self.index)

    def uninstall(self) -> None:
        """Remove only the pages this instance registered (a newer monitor may own the path)."""
        for path, page in self._installed.items():
            if self._served.get(path) is page:
                del self._served[path]
        self._installed.clear()

    def _register(self, path: str, page: Page) -> None:
        self._served[path] = page
        self._installed[path] = page

    def path_of(self, model: str) -> str:
        return f"{INDEX_PATH}/{model_slug(model)}"

    def report_file(self, model: str) -> Path:
        return model_dir(self.root, model) / REPORT_FILE

    def track(self, model: str) -> None:
        """Give a model its page (its report may already be on disk from an earlier run)."""
        with self._lock:
            if model in self._status:
                return
            self._status[model] = ModelStatus()
        path = self.path_of(model)
        self._register(path, lambda: self.report(model))

    def update(self, model: str, status: ModelStatus, report_html: str | None) -> None:
        if report_html is not None:
            write_atomic(self.report_file(model), report_html.encode())
        self.track(model)
        with self._lock:
            self._status[model] = status

    def report(self, model: str) -> tuple[str, bytes]:
        try:
            return _HTML, self.report_file(model).read_bytes()
        except OSError:
            body = f"<p>No drift report for {html.escape(model)} yet.</p>"
            return _HTML, _page(f"Drift: {model}", body)

    def index(self) -> tuple[str, bytes]:
        with self._lock:
            items = sorted(self._status.items())
        rows = []
        for model, st in items:
            link = html.escape(self.path_of(model))
            has_report = self.report_file(model).exists()
            name = f'<a href="{link}">{html.escape(model)}</a>' if has_report else html.escape(model)
            share = "" if st.share is None else f"{st.share:.0%}"
            when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(st.finished)) if st.finished else ""
            rows.append(
                f"<tr><td>{name}</td><td>{html.escape(st.verdict)}</td><td>{share}</td>"
                f"<td>{st.window}</td><td>{html.escape(st.reference)}</td>"
                f"<td>{when}</td></tr>"
            )
        table = (
            (
                "<table><tr><th>model</th><th>verdict</th><th>drifted features</th>"
                "<th>window samples</th><th>reference</th><th>last run</th></tr>" + "".join(rows) + "</table>"
            )
            if rows
            else "<p>No model captured yet.</p>"
        )
        return _HTML, _page("infersight drift", table)


def _page(title: str, body: str) -> bytes:
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif}}"
        "td,th{padding:4px 10px;text-align:left;border-bottom:1px solid #ddd}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    ).encode()
