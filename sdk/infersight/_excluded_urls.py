"""Routes that get no span and no latency sample: OTel's excluded-URL variables.

``OTEL_PYTHON_EXCLUDED_URLS`` applies to every framework and ``OTEL_PYTHON_<FRAMEWORK>_EXCLUDED_URLS``
(``FLASK``, ``GRPC``, ``FASTAPI``...) to one, as the contrib instrumentations read them: comma-
separated regular expressions searched in the full URL. When neither is set, health probes
(``/healthz``, ``/readyz``, ``/livez``, ``/health``, ``/ready``, ``/live``) are excluded, so a
kubelet's probes don't count in a model's latency and SLO.
"""

from __future__ import annotations

import os
import re
from collections.abc import Hashable, Mapping

__all__ = ["DEFAULT_EXCLUDED_URLS", "ExcludedUrls"]

DEFAULT_EXCLUDED_URLS = r"/healthz/?$,/readyz/?$,/livez/?$,/health/?$,/ready/?$,/live/?$"


class ExcludedUrls:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._env = os.environ if environ is None else environ
        self._lists: dict[str, re.Pattern[str] | None] = {}
        # Decisions by the parts of a URL, as a server's request path keeps them (``remember``):
        # a server sees the same few URLs again and again; making the URL and searching it costs
        # more than a lookup.
        self.seen: dict[Hashable, bool] = {}

    def _list(self, framework: str) -> re.Pattern[str] | None:
        if framework not in self._lists:
            specific = self._env.get(f"OTEL_PYTHON_{framework.upper()}_EXCLUDED_URLS", "")
            common = self._env.get("OTEL_PYTHON_EXCLUDED_URLS", "")
            text = specific.strip() or common.strip() or DEFAULT_EXCLUDED_URLS
            # An empty entry ("a,,b") would become a pattern that matches every URL.
            patterns = [p.strip() for p in text.split(",") if p.strip()]
            # One pattern, as opentelemetry.util.http's ExcludeList joins them; searched with the
            # compiled pattern's own method (re.search would look it up in re's cache each time).
            self._lists[framework] = re.compile("|".join(patterns)) if patterns else None
        return self._lists[framework]

    def excluded(self, framework: str, url: str) -> bool:
        try:
            pattern = self._lists[framework]
        except KeyError:
            pattern = self._list(framework)
        return pattern is not None and pattern.search(url) is not None

    def remember(self, key: Hashable, framework: str, url: str) -> bool:
        """``excluded(framework, url)``, kept in ``seen`` under ``key`` (the parts ``url`` is
        made of, and ``framework``), for the first few thousand keys."""
        found = self.excluded(framework, url)
        if len(self.seen) < _SEEN_MAX:
            self.seen[key] = found
        return found


_SEEN_MAX = 4096
