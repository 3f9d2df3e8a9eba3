"""Read the PromQL out of Grafana dashboard JSON and run it on a real Prometheus.

``panel_queries`` lists each panel's target expressions; ``substitute_variables`` turns a
Grafana query into plain PromQL the way Grafana would with every variable at "All";
``query_range`` runs it. Used by tests/test_dashboards.py and reusable by end-to-end tests.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
DASHBOARD_DIR = ROOT / "grafana-dashboards" / "dashboards"

# Grafana's built-in variables, as Grafana would fill them for a 1 h range at a 15 s scrape
# interval. $__rate_interval is max(4 x scrape interval, $__interval + scrape interval) = 1m.
BUILTINS = {
    "__rate_interval": "1m",
    "__interval": "1m",
    "__interval_ms": "60000",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
}
# Dashboard variables (model, version, instance, gpu) set to "All": the dashboards match
# them with =~ and allValue ".*", so All becomes .* in the query.
ALL_VALUE = ".*"

_VARIABLE = re.compile(r"\$\{(\w+)(?::[\w]+)?\}|\[\[(\w+)(?::[\w]+)?\]\]|\$(\w+)")


def load_dashboards(directory: Path = DASHBOARD_DIR) -> dict[str, dict[str, Any]]:
    """File name -> dashboard JSON of every ``*.json`` in ``directory``."""
    return {path.name: json.loads(path.read_text()) for path in sorted(directory.glob("*.json"))}


def iter_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows included, and the panels nested in collapsed rows."""
    for panel in dashboard.get("panels") or []:
        yield panel
        yield from panel.get("panels") or []


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """``(panel title, expr)`` for every visible Prometheus target of every panel."""
    queries = []
    for panel in iter_panels(dashboard):
        for target in panel.get("targets") or []:
            if target.get("hide") or not target.get("expr"):
                continue
            queries.append((str(panel.get("title", "")), str(target["expr"])))
    return queries


def substitute_variables(expr: str, values: dict[str, str] | None = None) -> str:
    """``expr`` with Grafana variables replaced: built-ins from ``BUILTINS``, dashboard variables
    from ``values`` or else ``.*``. An unknown ``$__`` built-in raises, so none slips through."""
    values = values or {}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        if name in BUILTINS:
            return BUILTINS[name]
        if name.startswith("__"):
            raise KeyError(f"no substitution for Grafana built-in ${name} in: {expr}")
        return values.get(name, ALL_VALUE)

    return _VARIABLE.sub(replace, expr)


def query_range(
    base_url: str, expr: str, start: float, end: float, step: str = "60s", timeout: float = 10.0
) -> dict[str, Any]:
    """POST /api/v1/query_range; returns the decoded answer (errors included, never raises on 4xx)."""
    body = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step}).encode()
    request = urllib.request.Request(f"{base_url}/api/v1/query_range", data=body)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            answer: dict[str, Any] = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        answer = json.loads(exc.read() or b"{}")
    return answer
