"""The background worker alone, counted in instructions: bench_app-shaped records drained K at a time.

    python benchmarks/worker_instructions.py [--requests 100] [--per-drain 1,1000]
                                             [--modes spans,metrics] [--compare NAME=DIR]

``benchmarks/instructions.py`` runs the whole server under callgrind (minutes per variant: it
imports torch). This one builds the records the bench_app server's requests leave (a Flask
request with eight attributes, its body sizes, tokens and client varying as in real traffic,
preprocess / model / postprocess stages with the pipeline's shared task attribute, stage CPU
times) without the server, hands them to infersight's worker
K records per drain, and counts the instructions of every thread but the main one per record:
the worker (metrics, spans) and the span export (infersight's OTLP exporter, its gRPC call a
no-op). K=1 is a drain per request, as under valgrind's ~50x slowdown in instructions.py or at
low load; K=1000 is a saturated server's. ``spans``: every span exported; ``metrics``:
INFERSIGHT_TRACES=false. ``--compare NAME=DIR`` also counts DIR/sdk (another checkout).
Needs valgrind; prints a line and exits 0 without it.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WARM_UP = 50


def child(requests: int, per_drain: int, mode: str) -> None:
    os.environ |= {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",  # never called: NullTraceClient
        "INFERSIGHT_GPU": "off",
        "INFERSIGHT_METRICS_PORT": "0",
        "INFERSIGHT_GIL_PROBE": "false",
    }
    if mode == "metrics":
        os.environ |= {"INFERSIGHT_TRACES": "false", "OTEL_TRACES_EXPORTER": "none"}
    sys.path.insert(0, str(HERE))
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    import infersight
    import infersight.auto  # as bench_app: the provider and exporter from OTEL_*
    from infersight._records import RequestRecord, StageRecord
    from instructions import null_grpc

    provider = trace.get_tracer_provider()
    if mode != "metrics" and isinstance(provider, TracerProvider):
        null_grpc(provider)
    rt = infersight.get_runtime()
    assert rt is not None
    worker = rt.worker
    worker._stopping = True  # drained here, K records at a time, on a thread of its own
    worker._wake.set()
    if worker._thread is not None:
        worker._thread.join()
    task = {"infersight.pipeline.task": "text-classification"}  # shared by the stages

    def make(i: int) -> RequestRecord:
        rec = RequestRecord("POST /predict", 1, "/predict", (i * 7919 + 12345) << 60 | i, 0, True)
        size_in, size_out, tokens = 40 + (i * 37) % 400, 34 + i % 3, 8 + (i * 37) % 100
        rec.attrs = {
            "http.request.method": "POST",
            "url.path": "/predict",
            "url.scheme": "http",
            "http.response.status_code": 200,
            "http.route": "/predict",
            "client.address": f"10.0.0.{i % 4}",  # a few clients
            "http.request.body.size": size_in,  # texts of many lengths
            "http.response.body.size": size_out,
        }
        rec.model, rec.outcome, rec.status_code = "bench-sentiment", "success", 200
        rec.payload_in, rec.payload_out, rec.tokens = size_in, size_out, tokens
        for j, name in enumerate(("preprocess", "model", "postprocess")):
            stage = StageRecord(name, "bench-sentiment", rec, rec.span_id, rec.trace_id, True)
            stage.base_attrs = task
            if j == 0:
                stage.attrs = {"infersight.input.tokens": tokens}
            stage.start_ns = rec.start_ns + 300_000 + j * 1_000_000 + i
            stage.end_ns = stage.start_ns + 700_000 + i
            stage.cpu_start_ns = 1_000_000 * j
            stage.cpu_end_ns = stage.cpu_start_ns + 500_000 + i
            rec.stages.append(stage)
        rec.end_ns = rec.start_ns + 3_500_000 + i
        return rec

    def run(records: list[Any]) -> None:
        def work() -> None:
            for i in range(0, len(records), per_drain):
                worker._queue.extend(records[i : i + per_drain])
                try:
                    worker.drain(periodic=True)  # as the worker's own loop drains
                except TypeError:  # an SDK before periodic drains
                    worker.drain()
            worker.drain()
            flush = getattr(provider, "force_flush", None)
            if flush is not None:
                flush()

        thread = threading.Thread(target=work)
        thread.start()
        thread.join()

    run([make(i) for i in range(WARM_UP)])
    gc.collect()
    gc.freeze()
    run([make(i) for i in range(requests)])


def background(out: Path) -> int:
    """Instructions of every thread but the main one, from callgrind's per-thread files."""
    total = 0
    for path in out.parent.glob(out.name + "-*"):
        found = re.search(r"^(?:summary|totals): (\d+)", path.read_text(errors="replace"), re.M)
        if found and not path.name.endswith("-01"):
            total += int(found.group(1))
    return total


def count(requests: int, per_drain: int, mode: str, sdk: str | None, tmp: Path) -> int:
    out = tmp / f"cg.{mode}.{per_drain}.{requests}.{abs(hash(sdk))}"
    env = os.environ | {"PYTHONHASHSEED": "0"}
    if sdk:
        env["PYTHONPATH"] = os.pathsep.join([sdk, env.get("PYTHONPATH", "")])
    cmd = ["valgrind", "--tool=callgrind", "--separate-threads=yes", "--dump-instr=no"]
    cmd += [f"--callgrind-out-file={out}", sys.executable, __file__, "--child", str(requests), str(per_drain), mode]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200)
    if result.returncode != 0:
        raise SystemExit(f"valgrind run failed:\n{result.stderr[-2000:]}")
    return background(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--per-drain", default="1,1000", help="records per drain, comma-separated")
    parser.add_argument("--modes", default="spans,metrics")
    parser.add_argument("--compare", action="append", default=[], metavar="NAME=DIR")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(int(args.child[0]), int(args.child[1]), args.child[2])
        return
    if shutil.which("valgrind") is None:
        print("valgrind not installed: no instruction counts (apt-get install valgrind)")
        return
    sdks: dict[str, str | None] = {"": None} | {
        f" [{n}]": str(Path(d).resolve() / "sdk") for n, d in (c.split("=", 1) for c in args.compare)
    }
    print("| mode | records per drain | SDK | background instructions per request (thousands) |")
    print("| --- | ---: | --- | ---: |")
    with tempfile.TemporaryDirectory(prefix="infersight-worker-instr-") as folder:
        tmp = Path(folder)
        for mode in args.modes.split(","):
            for per_drain in (int(k) for k in args.per_drain.split(",")):
                for label, sdk in sdks.items():
                    none = count(0, per_drain, mode, sdk, tmp)
                    some = count(args.requests, per_drain, mode, sdk, tmp)
                    per = (some - none) / args.requests / 1e3
                    print(f"| {mode} | {per_drain} | {label.strip(' []') or 'this'} | {per:.1f} |", flush=True)


if __name__ == "__main__":
    main()
