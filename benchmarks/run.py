"""Run every benchmark and write their output to docs/benchmarks.md (``make bench``).

Each benchmark prints its own table; figures are ratios measured side by side in one run.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHES = [
    ("Request path (issue: SDK core, performance)", ["benchmarks/request_path.py"]),
    ("Instructions per request (callgrind)", ["benchmarks/instructions.py"]),
    ("GPU sampler and stage-boundary snapshots", ["benchmarks/gpu_bench.py"]),
    ("Drift capture and window computation", ["benchmarks/drift_bench.py"]),
    ("CPU per request by thread", ["benchmarks/cpu_split.py"]),
    ("Real server under load",
     ["benchmarks/server_load.py", "--variants", "bare,infersight,otel-flask,infersight-keep10"]),
    ("Queueing alone: why added CPU is added P99 at a fixed load", ["benchmarks/queueing.py"]),
    ("P99 at half load in one process", ["benchmarks/paced_load.py"]),
    ("Server memory", ["benchmarks/memory.py"]),
    ("Collector capacity", ["benchmarks/collector_load.py"]),
]


def main() -> int:
    out = [
        "<!-- written by `make bench` (benchmarks/run.py); do not edit by hand -->",
        "# Benchmarks",
        "",
        f"Run on {dt.date.today()} with `make bench`: {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}. Absolute times are indicative; compare ratios.",
    ]
    failed = 0
    for title, argv in BENCHES:
        script = ROOT / argv[0]
        if not script.exists():
            continue
        cmd = [sys.executable, *argv]
        print(f"== {title}: {' '.join(argv)}", flush=True)
        result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1200)
        print(result.stdout)
        if result.returncode != 0:
            failed += 1
            print(result.stderr[-3000:], file=sys.stderr)
        body = result.stdout.strip() or result.stderr.strip()[-2000:]
        out += ["", f"## {title}", "", f"Command: `python {' '.join(argv)}`", "", body]
    (ROOT / "docs" / "benchmarks.md").write_text("\n".join(out) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
