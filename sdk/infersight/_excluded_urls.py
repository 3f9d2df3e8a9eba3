"""Routes that get no span and no latency sample: OTel's excluded-URL variables.

``OTEL_PYTHON_EXCLUDED_URLS`` applies to every framework and ``OTEL_PYTHON_<FRAMEWORK>_EXCLUDED_URLS``
(``FLASK``, ``GRPC``, ``FASTAPI``...) to one, as the contrib instrumentations read them: comma-
separated regular expressions searched in the full URL. When neither is set, health probes
(``/healthz``, ``/readyz``, ``/livez``, ``/health``, ``/ready``, ``/live``) are excluded, so a
kubelet's probes don't count in a model's latency and SLO.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from opentelemetry.util.http import ExcludeList, parse_excluded_urls

__all__ = ["DEFAULT_EXCLUDED_URLS", "ExcludedUrls"]

DEFAULT_EXCLUDED_URLS = r"/healthz/?$,/readyz/?$,/livez/?$,/health/?$,/ready/?$,/live/?$"


class ExcludedUrls:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._env = os.environ if environ is None else environ
        self._lists: dict[str, ExcludeList | None] = {}

    def _list(self, framework: str) -> ExcludeList | None:
        if framework not in self._lists:
            specific = self._env.get(f"OTEL_PYTHON_{framework.upper()}_EXCLUDED_URLS", "")
            common = self._env.get("OTEL_PYTHON_EXCLUDED_URLS", "")
            text = specific.strip() or common.strip() or DEFAULT_EXCLUDED_URLS
            # An empty entry ("a,,b") would become a pattern that matches every URL.
            patterns = ",".join(p for p in text.split(",") if p.strip())
            self._lists[framework] = parse_excluded_urls(patterns) if patterns else None
        return self._lists[framework]

    def excluded(self, framework: str, url: str) -> bool:
        patterns = self._list(framework)
        return patterns is not None and bool(patterns.url_disabled(url))
