"""Run the collector tier on loopback: one agent (collector-config/agent.yaml) in front of N gateways
(collector-config/otelcol.yaml), each gateway's Tempo exporter feeding its own endpoint.

Two ways for the agent to find the gateways:

- ``static``: the agent's resolver lists the gateways' addresses (127.0.0.1, one port each).
  Runs anywhere, but the ring never changes.
- ``dns``: as shipped. Gateway i listens on 127.0.0.(i+2), all on the same port, and the agent
  resolves one hostname through an /etc/hosts of its own (a file bind-mounted in a private
  mount namespace, so the machine's /etc/hosts is untouched). ``Tier.set_gateways_in_dns()``
  rewrites it, as Kubernetes does with a headless Service's records when a pod goes.
  Needs ``unshare`` and mount rights (root, or user namespaces); ``dns_unavailable()`` says why not.

Used by tests/scale/ and benchmarks/tier_throughput.py.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from stack import LOOPBACK, ROOT, free_port, http_get, loopback_config, wait_until

AGENT_CONFIG = ROOT / "collector-config" / "agent.yaml"
GATEWAY_CONFIG = ROOT / "collector-config" / "otelcol.yaml"
GATEWAY_HOSTNAME = "gateways.infersight.test"


@dataclass
class Gateway:
    name: str
    otlp_grpc: str
    telemetry_url: str
    health_url: str
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def kill(self) -> None:
        """SIGKILL: what it held in memory (tail-sampling buffers, batches) is lost."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)


@dataclass
class Tier:
    agent_otlp_grpc: str
    agent_telemetry_url: str
    agent_log: Path
    agent_pid: int
    gateways: list[Gateway]
    hosts_file: Path | None

    def set_gateways_in_dns(self, gateways: list[Gateway]) -> None:
        """What the agent's resolver finds from now on (``dns`` mode only)."""
        if self.hosts_file is None:
            raise RuntimeError("the tier runs with the static resolver")
        _write_hosts(self.hosts_file, gateways)


def dns_unavailable() -> str | None:
    """Why the ``dns`` mode cannot run here, or None when it can."""
    if shutil.which("unshare") is None:
        return "no unshare(1) on this machine"
    res = subprocess.run(
        [*_unshare(), "sh", "-c", "mount --bind /dev/null /etc/hostname"], capture_output=True, text=True, timeout=10
    )
    if res.returncode != 0:
        return f"cannot bind-mount in a private mount namespace: {res.stderr.strip()[:200]}"
    return None


def _unshare() -> list[str]:
    # As root a mount namespace is enough; otherwise map ourselves to root in a user namespace.
    base = ["unshare", "--mount", "--propagation", "private"]
    return base if os.geteuid() == 0 else [*base, "--map-root-user"]


def _write_hosts(path: Path, gateways: list[Gateway]) -> None:
    # In place (same inode): the agent sees this file through a bind mount.
    lines = [f"{LOOPBACK} localhost"] + [f"{g.otlp_grpc.split(':')[0]} {GATEWAY_HOSTNAME}" for g in gateways]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def agent_config(gateway_endpoints: list[str] | None, dns_port: int | None) -> tuple[dict[str, Any], dict[str, int]]:
    """The shipped agent config on loopback ports; the resolver static (``gateway_endpoints``) or
    DNS on GATEWAY_HOSTNAME:``dns_port``, re-resolved every second."""
    cfg: dict[str, Any] = yaml.safe_load(AGENT_CONFIG.read_text())
    ports = {name: free_port() for name in ("otlp_grpc", "otlp_http", "telemetry", "health_check")}
    protocols = cfg["receivers"]["otlp"]["protocols"]
    protocols["grpc"]["endpoint"] = f"{LOOPBACK}:{ports['otlp_grpc']}"
    protocols["http"]["endpoint"] = f"{LOOPBACK}:{ports['otlp_http']}"
    cfg["extensions"]["health_check"]["endpoint"] = f"{LOOPBACK}:{ports['health_check']}"
    pull = cfg["service"]["telemetry"]["metrics"]["readers"][0]["pull"]["exporter"]["prometheus"]
    pull["host"], pull["port"] = LOOPBACK, ports["telemetry"]
    for name, exporter in cfg["exporters"].items():
        if name.split("/")[0] != "loadbalancing":
            continue
        if gateway_endpoints is not None:
            exporter["resolver"] = {"static": {"hostnames": list(gateway_endpoints)}}
        else:
            exporter["resolver"]["dns"].update(hostname=GATEWAY_HOSTNAME, port=str(dns_port), interval="1s")
    return cfg, ports


def gateway_config(tmp: Path, grpc_endpoint: str, tempo_endpoint: str) -> tuple[dict[str, Any], dict[str, int]]:
    """The shipped gateway (one-box) config on loopback, fast flushes, OTLP gRPC on ``grpc_endpoint``."""
    cfg, ports = loopback_config(yaml.safe_load(GATEWAY_CONFIG.read_text()), tmp, tempo_endpoint)
    cfg["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"] = grpc_endpoint
    cfg["exporters"]["debug"]["verbosity"] = "basic"
    cfg["service"]["telemetry"]["logs"]["level"] = "warn"
    return cfg, ports


@contextlib.contextmanager
def _process(argv: list[str], log: Path, health_url: str, timeout: float = 30.0) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        try:

            def healthy() -> bool:
                if proc.poll() is not None:
                    raise RuntimeError(f"{argv[-1]} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
                return http_get(health_url)[0] == 200

            wait_until(healthy, timeout, f"healthy at {health_url}")
            yield proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)


@contextlib.contextmanager
def run_tier(binary: Path, tmp: Path, tempo_endpoints: list[str], mode: str = "static") -> Iterator[Tier]:
    """One agent and ``len(tempo_endpoints)`` gateways, gateway i exporting to ``tempo_endpoints[i]``;
    all stopped on exit."""
    if mode not in ("static", "dns"):
        raise ValueError(f"mode: static or dns, not {mode!r}")
    shared_port = free_port()
    with contextlib.ExitStack() as stack:
        gateways = []
        for i, tempo in enumerate(tempo_endpoints):
            gdir = tmp / f"gateway-{i}"
            gdir.mkdir(parents=True, exist_ok=True)
            grpc = f"127.0.0.{i + 2}:{shared_port}" if mode == "dns" else f"{LOOPBACK}:{free_port()}"
            cfg, ports = gateway_config(gdir, grpc, tempo)
            path = gdir / "otelcol.yaml"
            path.write_text(yaml.safe_dump(cfg))
            gw = Gateway(
                f"gateway-{i}",
                grpc,
                f"http://{LOOPBACK}:{ports['telemetry']}/metrics",
                f"http://{LOOPBACK}:{ports['health_check']}/",
                gdir / "otelcol.log",
            )
            gw.proc = stack.enter_context(_process([str(binary), "--config", str(path)], gw.log, gw.health_url))
            gateways.append(gw)

        hosts: Path | None = None
        if mode == "dns":
            hosts = tmp / "hosts"
            _write_hosts(hosts, gateways)
            cfg, ports = agent_config(None, shared_port)
        else:
            cfg, ports = agent_config([g.otlp_grpc for g in gateways], None)
        path = tmp / "agent.yaml"
        path.write_text(yaml.safe_dump(cfg))
        argv = [str(binary), "--config", str(path)]
        if hosts is not None:
            # exec keeps the pid, so stopping the process stops the agent itself.
            script = f'mount --bind "{hosts}" /etc/hosts && exec "$0" "$@"'
            argv = [*_unshare(), "sh", "-c", script, *argv]
        log = tmp / "agent.log"
        agent = stack.enter_context(_process(argv, log, f"http://{LOOPBACK}:{ports['health_check']}/"))
        yield Tier(
            f"{LOOPBACK}:{ports['otlp_grpc']}",
            f"http://{LOOPBACK}:{ports['telemetry']}/metrics",
            log,
            agent.pid,
            gateways,
            hosts,
        )


def metric(url: str, name: str, label: str = "") -> float:
    """Sum of the samples of ``name`` (``_total`` optional) whose label text contains ``label``."""
    status, body = http_get(url, timeout=5)
    if status != 200:
        raise OSError(f"GET {url} -> {status}")
    total = 0.0
    for line in body.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        sample, _, labels = head.partition("{")
        if sample.removesuffix("_total") == name.removesuffix("_total") and label in labels:
            total += float(value)
    return total
