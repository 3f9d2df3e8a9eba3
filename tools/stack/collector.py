"""Our OpenTelemetry Collector on loopback, and an OTLP sink standing in for Tempo.

The binary is built by tools/build-collector.sh and cached outside the repo under the hash of
collector-config/builder-config.yaml; ``collector_binary()`` computes the same path.
``run_collector()`` starts it on a given config and always stops it.
"""

from __future__ import annotations

import contextlib
import hashlib
import subprocess
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import yaml

from .paths import ROOT, cache_dir
from .processes import LOOPBACK, free_port, spawn, stop, wait_answering

__all__ = [
    "OtlpSink",
    "collector_binary",
    "ensure_collector",
    "loopback_config",
    "manifest_modules",
    "run_collector",
    "running_sink",
]

MANIFEST = ROOT / "collector-config" / "builder-config.yaml"
BUILD_SCRIPT = ROOT / "tools" / "build-collector.sh"
BINARY_NAME = "otelcol-infersight"


def collector_binary() -> Path:
    """Where tools/build-collector.sh puts the binary for the current manifest."""
    key = hashlib.sha256(MANIFEST.read_bytes()).hexdigest()[:16]
    return cache_dir() / "otelcol" / key / BINARY_NAME


def ensure_collector(timeout: float = 1800) -> Path:
    """The binary, building it first when it is not cached (minutes on a cold machine)."""
    binary = collector_binary()
    if not binary.exists():
        subprocess.run(["bash", str(BUILD_SCRIPT)], cwd=ROOT, check=True, timeout=timeout, stdout=subprocess.DEVNULL)
    if not binary.exists():
        raise FileNotFoundError(f"{BUILD_SCRIPT} ran but {binary} is missing")
    return binary


def manifest_modules() -> dict[str, list[str]]:
    """Go module paths in the manifest, by kind (receivers, processors, ...)."""
    manifest = yaml.safe_load(MANIFEST.read_text())
    kinds = ("receivers", "processors", "connectors", "exporters", "extensions")
    return {k: [e["gomod"].split()[0] for e in manifest.get(k) or []] for k in kinds}


def loopback_config(
    config: dict[str, Any], tmp: Path, tempo_endpoint: str, fast: bool = True
) -> tuple[dict[str, Any], dict[str, int]]:
    """A copy of the shipped config that runs on this machine.

    Every listener moves to a free loopback port, the Tempo exporter points at
    ``tempo_endpoint``, file_storage writes under ``tmp``; with ``fast``, span metrics
    flush every second and tail sampling decides after a second. Everything else (the
    pipelines, processors, policies, queue) stays as shipped. Returns the config and
    the ports by name: otlp_grpc, otlp_http, prometheus, telemetry, health_check,
    pprof, zpages.
    """
    cfg: dict[str, Any] = yaml.safe_load(yaml.safe_dump(config))  # deep copy
    names = ("otlp_grpc", "otlp_http", "prometheus", "telemetry", "health_check", "pprof", "zpages")
    ports = {name: free_port() for name in names}

    protocols = cfg["receivers"]["otlp"]["protocols"]
    protocols["grpc"]["endpoint"] = f"{LOOPBACK}:{ports['otlp_grpc']}"
    protocols["http"]["endpoint"] = f"{LOOPBACK}:{ports['otlp_http']}"
    ext = cfg["extensions"]
    for name in ("health_check", "pprof", "zpages"):
        ext[name]["endpoint"] = f"{LOOPBACK}:{ports[name]}"
    queue_dir = tmp / "queue"
    queue_dir.mkdir(parents=True, exist_ok=True)
    ext["file_storage"]["directory"] = str(queue_dir)
    if "compaction" in ext["file_storage"]:
        ext["file_storage"]["compaction"]["directory"] = str(queue_dir)

    exporters = cfg["exporters"]
    exporters["prometheus"]["endpoint"] = f"{LOOPBACK}:{ports['prometheus']}"
    tempo = next(k for k in exporters if k.split("/")[0] == "otlp_grpc")
    exporters[tempo]["endpoint"] = tempo_endpoint

    pull = cfg["service"]["telemetry"]["metrics"]["readers"][0]["pull"]["exporter"]["prometheus"]
    pull["host"], pull["port"] = LOOPBACK, ports["telemetry"]

    if fast:
        cfg["connectors"]["span_metrics"]["metrics_flush_interval"] = "1s"
        cfg["processors"]["tail_sampling"]["decision_wait"] = "1s"
        cfg["processors"]["batch"]["timeout"] = "200ms"
    return cfg, ports


@contextlib.contextmanager
def run_collector(
    binary: Path,
    config_path: Path,
    log_path: Path,
    health_url: str | None = None,
    startup_timeout: float = 20.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``binary --config config_path``, logging to ``log_path``; stopped on exit.

    With ``health_url`` it first waits for that URL to answer 200 (health_check).
    """
    proc = spawn([str(binary), "--config", str(config_path)], log_path)
    try:
        if health_url:
            try:
                wait_answering(proc, health_url, startup_timeout, what="collector")
            except RuntimeError as exc:
                raise RuntimeError(f"{exc}:\n{log_path.read_text(errors='replace')[-3000:]}") from exc
        yield proc
    finally:
        stop(proc, timeout=10)


class OtlpSink:
    """An OTLP gRPC trace endpoint standing in for Tempo or a collector: remembers every span it
    gets, with its resource's attributes, by trace id. ``start()``/``stop()``; ``env()`` points an
    SDK at it."""

    def __init__(self, port: int | None = None, workers: int = 2) -> None:
        import grpc
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

        self.spans: dict[str, list[tuple[dict[str, str], Any]]] = {}  # trace id -> [(resource, span)]
        self.received = 0  # span count, duplicates included
        self._lock = threading.Lock()
        sink = self

        class Service(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:
                with sink._lock:
                    for rs in request.resource_spans:
                        resource = {a.key: a.value.string_value for a in rs.resource.attributes}
                        for ss in rs.scope_spans:
                            for span in ss.spans:
                                sink.spans.setdefault(span.trace_id.hex(), []).append((resource, span))
                                sink.received += 1
                return trace_service_pb2.ExportTraceServiceResponse()

        self.port = port or free_port()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Service(), self.server)  # type: ignore[no-untyped-call]
        self.server.add_insecure_port(f"{LOOPBACK}:{self.port}")

    def start(self) -> OtlpSink:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop(grace=None)

    def env(self) -> dict[str, str]:
        return {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{LOOPBACK}:{self.port}",
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
        }

    def traces(self) -> dict[str, list[tuple[dict[str, str], Any]]]:
        with self._lock:
            return {k: list(v) for k, v in self.spans.items()}

    def trace_ids(self) -> set[str]:
        with self._lock:
            return set(self.spans)

    def span_ids(self) -> set[bytes]:
        with self._lock:
            return {span.span_id for spans in self.spans.values() for _, span in spans}


@contextlib.contextmanager
def running_sink(port: int | None = None, workers: int = 2) -> Iterator[OtlpSink]:
    sink = OtlpSink(port, workers).start()
    try:
        yield sink
    finally:
        sink.stop()
