"""Jaeger v2, the native stack's trace backend, on loopback.

The binary is built by tools/build-jaeger.sh and cached outside the repo under the hash of
tools/jaeger.pin; ``jaeger_binary()`` computes the same path. ``run_jaeger()`` starts it with
in-memory storage (bounded), an OTLP gRPC receiver and the query API on free loopback ports,
and always stops it. ``Jaeger`` reads traces back through infersight.traceview.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .paths import ROOT, cache_dir
from .processes import LOOPBACK, free_port, spawn, stop, wait_answering

if TYPE_CHECKING:
    from infersight import traceview

__all__ = ["Jaeger", "ensure_jaeger", "jaeger_binary", "jaeger_config", "run_jaeger"]

PIN = ROOT / "tools" / "jaeger.pin"
BUILD_SCRIPT = ROOT / "tools" / "build-jaeger.sh"
MAX_TRACES = 20_000  # the memory store's bound: older traces are dropped


def jaeger_binary() -> Path:
    """Where tools/build-jaeger.sh puts the binary for the current pin."""
    key = hashlib.sha256(PIN.read_bytes()).hexdigest()[:16]
    return cache_dir() / "jaeger" / key / "jaeger"


def ensure_jaeger(timeout: float = 3600) -> Path:
    """The binary, building it first when it is not cached (many minutes on a cold machine)."""
    binary = jaeger_binary()
    if not binary.exists():
        subprocess.run(["bash", str(BUILD_SCRIPT)], cwd=ROOT, check=True, timeout=timeout, stdout=subprocess.DEVNULL)
    if not binary.exists():
        raise FileNotFoundError(f"{BUILD_SCRIPT} ran but {binary} is missing")
    return binary


def jaeger_config(ports: dict[str, int], max_traces: int = MAX_TRACES) -> dict[str, Any]:
    """All-in-one on loopback: OTLP gRPC in, memory storage, query API (HTTP) and health check."""
    return {
        "service": {
            "extensions": ["jaeger_storage", "jaeger_query", "healthcheckv2"],
            "pipelines": {
                "traces": {"receivers": ["otlp"], "processors": ["batch"], "exporters": ["jaeger_storage_exporter"]}
            },
            # No self-telemetry listener: one port less to collide on.
            "telemetry": {"metrics": {"level": "none"}, "logs": {"level": "warn"}},
        },
        "extensions": {
            "healthcheckv2": {"use_v2": True, "http": {"endpoint": f"{LOOPBACK}:{ports['health']}"}},
            "jaeger_query": {
                "storage": {"traces": "memstore"},
                "http": {"endpoint": f"{LOOPBACK}:{ports['query_http']}"},
                "grpc": {"endpoint": f"{LOOPBACK}:{ports['query_grpc']}"},
            },
            "jaeger_storage": {"backends": {"memstore": {"memory": {"max_traces": max_traces}}}},
        },
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"{LOOPBACK}:{ports['otlp_grpc']}"}}}},
        "processors": {"batch": {"timeout": "200ms"}},
        "exporters": {"jaeger_storage_exporter": {"trace_storage": "memstore"}},
    }


@dataclass
class Jaeger:
    """A running Jaeger: where to send OTLP, where to query, and reads of what it stored."""

    process: subprocess.Popen[bytes]
    ports: dict[str, int]
    log_path: Path

    @property
    def url(self) -> str:
        """The query service (Jaeger's API; Grafana's Jaeger data source URL)."""
        return f"http://{LOOPBACK}:{self.ports['query_http']}"

    @property
    def otlp_endpoint(self) -> str:
        """host:port of the OTLP gRPC receiver (an exporter's ``endpoint``)."""
        return f"{LOOPBACK}:{self.ports['otlp_grpc']}"

    def trace(self, trace_id: str) -> traceview.Trace | None:
        """The stored trace, or None (imported here: the SDK is on the path by then)."""
        from infersight import traceview

        try:
            return traceview.fetch_trace(self.url, trace_id)
        except traceview.TraceNotFound:
            return None

    def traces(
        self, service: str, since: float, min_duration_s: float | None = None, limit: int = 200
    ) -> dict[str, traceview.Trace]:
        from infersight import traceview

        return traceview.find_traces(self.url, service, since, min_duration_s=min_duration_s, limit=limit)

    def log(self, tail: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""


@contextlib.contextmanager
def run_jaeger(
    workdir: Path, binary: Path | None = None, startup_timeout: float = 30.0, max_traces: int = MAX_TRACES
) -> Iterator[Jaeger]:
    """Start Jaeger on free loopback ports (config and log in ``workdir``); stopped on exit."""
    binary = binary or ensure_jaeger()
    workdir.mkdir(parents=True, exist_ok=True)
    ports = {name: free_port() for name in ("otlp_grpc", "query_http", "query_grpc", "health")}
    config = workdir / "jaeger.yaml"
    config.write_text(yaml.safe_dump(jaeger_config(ports, max_traces), sort_keys=False))
    log = workdir / "jaeger.log"
    # GOMAXPROCS: a small backend on a shared machine.
    env = {**os.environ, "GOMAXPROCS": os.environ.get("GOMAXPROCS", "2")}
    proc = spawn([str(binary), "--config", str(config)], log, env)
    try:
        health = f"http://{LOOPBACK}:{ports['health']}/status"
        try:
            wait_answering(proc, health, startup_timeout, what="jaeger")
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}:\n{log.read_text(errors='replace')[-3000:]}") from exc
        yield Jaeger(proc, ports, log)
    finally:
        stop(proc, timeout=10)
