"""Shared by the server benchmarks: our built collector on loopback, /proc readings, scraping.

The collector runs with the shipped collector-config/otelcol.yaml, rewritten by
tools/stack/collector.py's ``loopback_config`` (free loopback ports, queue under a temp dir);
its trace exporter points at a second collector instance that only counts (debug exporter), so
the whole shipped pipeline, sending queue included, does its real work.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

from stack import (  # noqa: E402
    LOOPBACK,
    collector_binary,
    free_port,
    http_get,
    loopback_config,
    run_collector,
)

SHIPPED_CONFIG = ROOT / "collector-config" / "otelcol.yaml"
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Collector:
    pid: int
    otlp_grpc: str  # host:port
    telemetry_url: str  # the collector's own metrics (:8888 in production)
    log: Path


def binary_or_none() -> Path | None:
    """Our built collector, or None when tools/build-collector.sh has not run here."""
    binary = collector_binary()
    return binary if binary.exists() else None


def sink_config(port: int) -> dict[str, Any]:
    """A collector that accepts OTLP and drops it after a one-line log per batch."""
    return {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"{LOOPBACK}:{port}"}}}},
        "exporters": {"debug": {"verbosity": "basic"}},
        "service": {
            "telemetry": {"metrics": {"level": "none"}, "logs": {"level": "warn"}},
            "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["debug"]}},
        },
    }


def pinned(cpus: set[int] | None) -> Any:
    """A preexec_fn that pins the child to ``cpus`` (None: no pinning)."""
    if not cpus or not hasattr(os, "sched_setaffinity"):
        return None
    return lambda: os.sched_setaffinity(0, cpus)


@contextlib.contextmanager
def shipped_collector(
    tmp: Path,
    binary: Path,
    fast: bool = False,
    cpus: set[int] | None = None,
    edit: Callable[[dict[str, Any]], None] | None = None,
) -> Iterator[Collector]:
    """The shipped config on loopback, its trace exporter feeding a sink collector; both stopped on exit.

    ``edit`` may change the rewritten config before it is written (what-if runs)."""
    sink_port = free_port()
    sink_cfg = tmp / "sink.yaml"
    sink_cfg.write_text(yaml.safe_dump(sink_config(sink_port)))
    cfg, ports = loopback_config(yaml.safe_load(SHIPPED_CONFIG.read_text()), tmp, f"{LOOPBACK}:{sink_port}", fast=fast)
    cfg["exporters"]["debug"]["verbosity"] = "basic"
    if edit is not None:
        edit(cfg)
    main_cfg = tmp / "otelcol.yaml"
    main_cfg.write_text(yaml.safe_dump(cfg))
    with contextlib.ExitStack() as stack:
        stack.enter_context(_started(binary, sink_cfg, tmp / "sink.log", None, cpus))
        main = stack.enter_context(
            _started(binary, main_cfg, tmp / "otelcol.log", f"http://{LOOPBACK}:{ports['health_check']}/", cpus)
        )
        yield Collector(
            main.pid,
            f"{LOOPBACK}:{ports['otlp_grpc']}",
            f"http://{LOOPBACK}:{ports['telemetry']}/metrics",
            tmp / "otelcol.log",
        )


@contextlib.contextmanager
def _started(
    binary: Path, config: Path, log: Path, health: str | None, cpus: set[int] | None
) -> Iterator[subprocess.Popen[bytes]]:
    if cpus and Path("/usr/bin/taskset").exists():
        # run_collector has no pinning hook: a wrapper that execs the binary under taskset.
        wrapper = log.with_suffix(".sh")
        wrapper.write_text(f'#!/bin/sh\nexec taskset -c {",".join(map(str, sorted(cpus)))} {binary} "$@"\n')
        wrapper.chmod(0o755)
        binary = wrapper
    with run_collector(binary, config, log, health_url=health) as proc:
        if health is None:
            time.sleep(0.5)
        yield proc


def raise_priority() -> bool:
    """Nice -10 for this process, so that the processes it starts (which inherit it) are
    shielded from other work on a shared machine. Needs root or CAP_SYS_NICE; else a no-op."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, -10)
        return True
    except PermissionError:
        return False


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """Resident set size now, from /proc/<pid>/status (``RssAnon``: the heap part, without the
    binary's and libraries' file-backed pages)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no {field} for {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far, from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)


def scrape(url: str) -> dict[str, float]:
    """Prometheus text exposition summed per metric name (labels dropped; ``_total`` removed)."""
    status, body = http_get(url, timeout=5)
    if status != 200:
        raise OSError(f"GET {url} -> {status}")
    out: dict[str, float] = {}
    for line in body.splitlines():
        if not line or line.startswith("#"):
            continue
        name_part, _, value = line.rpartition(" ")
        name = name_part.split("{", 1)[0].strip().removesuffix("_total")
        try:
            out[name] = out.get(name, 0.0) + float(value)
        except ValueError:
            continue
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


def round_verdict(values: list[float], meets: Any, fails: Any, spread: str) -> str:
    """A verdict only where every round agrees; otherwise the machine cannot tell."""
    if all(fails(v) for v in values):
        return f"NOT met in any round: {spread}"
    if all(meets(v) for v in values):
        return f"met in every round: {spread}"
    return f"not resolvable on this machine: {spread}"


def export_to_shipped_collector(stack: contextlib.ExitStack, tmp: Path, cpus: set[int]) -> str:
    """Point this process's OTLP exporter (and its children's) at our built collector running the
    shipped config, started on ``stack``; without a built one, turn trace export off. Returns
    the line the benchmarks print about it."""
    binary = binary_or_none()
    if binary is None:
        os.environ["OTEL_TRACES_EXPORTER"] = "none"
        return "OTEL_TRACES_EXPORTER=none (no built collector; run tools/build-collector.sh)"
    collector = stack.enter_context(shipped_collector(tmp, binary, cpus=cpus))
    os.environ |= {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{collector.otlp_grpc}",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
    }
    return "OTLP/gRPC to our built collector (shipped config on loopback)"
