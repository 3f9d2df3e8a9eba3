"""Run every benchmark and write their output to docs/benchmarks.md (``make bench``).

Each benchmark prints its own table; figures are ratios measured side by side in one run. The
page says which machine ran them (cores, architecture, VM or not, GPU, load) and when, and
nothing about the checkout: readers compare machines, not revisions.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHES = [
    ("Request path", ["benchmarks/request_path.py"]),
    ("Instructions per request (callgrind)", ["benchmarks/instructions.py"]),
    ("The background worker alone, in instructions (callgrind)", ["benchmarks/worker_instructions.py"]),
    ("GPU sampler and stage-boundary snapshots", ["benchmarks/gpu_bench.py"]),
    ("Drift capture and window computation", ["benchmarks/drift_bench.py"]),
    ("CPU per request by thread", ["benchmarks/cpu_split.py"]),
    (
        "Real server under load",
        ["benchmarks/server_load.py", "--variants", "bare,infersight,otel-flask,infersight-keep10"],
    ),
    ("Queueing alone: why added CPU is added P99 at a fixed load", ["benchmarks/queueing.py"]),
    ("P99 at half load in one process", ["benchmarks/paced_load.py"]),
    ("The 1000-TPS scorer: the gRPC example, open loop", ["benchmarks/scorer.py"]),
    ("Server memory", ["benchmarks/memory.py"]),
    ("Collector capacity", ["benchmarks/collector_load.py"]),
]


def _gpu_names() -> list[str]:
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        result = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in result.stdout.splitlines() if line.strip()] if result.returncode == 0 else []


def _is_vm() -> bool:
    try:
        return " hypervisor" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def machine_label(cores: int, arch: str, *, virtual: bool, gpus: list[str], load: float) -> str:
    """What ran the tables, e.g. `2-core x86-64 VM, shared` or `16-core x86-64 host with one NVIDIA H200`."""
    arch = arch.replace("x86_64", "x86-64").replace("aarch64", "arm64") or "unknown"
    label = f"{cores}-core {arch} {'VM' if virtual else 'host'}"
    if gpus:
        count = "one" if len(gpus) == 1 else str(len(gpus))
        label += f" with {count} {gpus[0]}" if len(set(gpus)) == 1 else f" with {', '.join(gpus)}"
    # Other jobs already running when the benchmarks start slow every absolute time down.
    if load >= 1.0:
        label += ", shared"
    return label


def this_machine(load: float) -> str:
    return machine_label(os.cpu_count() or 1, platform.machine(), virtual=_is_vm(), gpus=_gpu_names(), load=load)


def header(label: str, load: float, today: dt.date) -> list[str]:
    return [
        "<!-- written by `make bench` (benchmarks/run.py); do not edit by hand -->",
        "# Benchmarks",
        "",
        f"Run on {today} with `make bench` on a {label} (load average {load:.1f} when it started), "
        f"Python {platform.python_version()}. Absolute times are indicative; compare ratios.",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machine", default="", help='label for the tables, e.g. "2-core x86-64 VM, shared"')
    args = parser.parse_args(argv)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    label = args.machine or this_machine(load)
    out = header(label, load, dt.date.today())
    failed = 0
    for title, argv_ in BENCHES:
        script = ROOT / argv_[0]
        if not script.exists():
            continue
        cmd = [sys.executable, *argv_]
        print(f"== {title}: {' '.join(argv_)}", flush=True)
        result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1200)
        print(result.stdout)
        if result.returncode != 0:
            failed += 1
            print(result.stderr[-3000:], file=sys.stderr)
        body = result.stdout.strip() or result.stderr.strip()[-2000:]
        out += ["", f"## {title}", "", f"Command: `python {' '.join(argv_)}`, on a {label}.", "", body]
    (ROOT / "docs" / "benchmarks.md").write_text("\n".join(out) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
