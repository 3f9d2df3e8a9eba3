"""Cost of the shipped rules at scale: every prometheus-rules/*.rules.yaml evaluated by a real
Prometheus over synthetic series for ``--models`` x ``--versions`` (default 50 x 5).

    python benchmarks/rule_cost.py [--models 50] [--versions 5] [--seconds 45] [--quick]

The series are the infersight metrics the rules read, with every label combination the SDK
exports (conventions: request histograms by model, version and outcome; stage histograms by
model and stage; one series per model for the SLO gauges and counters; a few GPUs, each shared
by several models with a GPU-seconds counter per model), served by
a local target whose counters advance every second. Prometheus scrapes it every second (so a
5 m window holds ~``--seconds`` samples per series, as many as 15 s scrapes give in 5-10 min)
and evaluates all rule groups every 5 s. Read from Prometheus itself:
``prometheus_rule_group_last_duration_seconds`` per group (median over the run's cycles), the
head series, and evaluation failures; a query checks that the rules produced one P99 per model
version.

Why not ``promtool test rules``: its test engine refuses queries over 50,000 samples ("query
processing would load too many samples"), which the bucket-rate rules exceed from 5 x 2 up.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import product
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "sdk"), str(ROOT / "tools")]

from infersight.conventions import LATENCY_BUCKETS, METRIC, STAGES  # noqa: E402
from stack import LOOPBACK, find_binary, free_port, http_get, prometheus, require  # noqa: E402

GPUS = 8


@dataclass(frozen=True)
class Histogram:
    name: str
    labels: dict[str, str]
    per_s: int  # requests a second
    median_s: float


@dataclass(frozen=True)
class Series:
    name: str
    labels: dict[str, str]
    per_s: float  # counters: increase a second; gauges: 0 and ``value``
    value: float = 0.0


def _labels(values: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in values.items()) + "}"


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(bound)


def _share_below(bound: float, median_s: float) -> float:
    """Log-normal latency around ``median_s``: the share of requests at or under ``bound``."""
    if math.isinf(bound):
        return 1.0
    return 0.5 * (1 + math.erf(math.log(bound / median_s) / (0.6 * math.sqrt(2))))


def synthetic(models: int, versions: int) -> tuple[list[Histogram], list[Series]]:
    hists: list[Histogram] = []
    series: list[Series] = []
    for m, v in product(range(models), range(1, versions + 1)):
        model = f"m{m:02d}"
        for outcome, rate in (("success", 10), ("error", 1)):
            labels = {"model": model, "version": str(v), "endpoint": "/predict", "outcome": outcome}
            hists.append(Histogram(METRIC.REQUEST_DURATION.name, labels, rate, 0.02 * (1 + m % 7)))
        series.append(Series(METRIC.MODEL_INFO.name, {"model": model, "version": str(v)}, 0, 1))
    for m in range(models):
        model = f"m{m:02d}"
        for i, stage in enumerate(STAGES):
            labels = {"model": model, "stage": stage}
            hists.append(Histogram(METRIC.STAGE_DURATION.name, labels, 10 * versions, 0.005 * (1 + i)))
            series.append(Series(METRIC.ERRORS.sample_name, {**labels, "exception_type": "ValueError"}, 0.1))
        series.append(Series(METRIC.REQUESTS_OVER_SLO.sample_name, {"model": model}, 0.2))
        series.append(Series(METRIC.MODEL_SLO_P99.name, {"model": model}, 0, 0.5))
    for g in range(GPUS):
        gpu = {"gpu": str(g), "uuid": f"GPU-{g}", "name": "H100"}
        series.append(Series(METRIC.GPU_UP.name, gpu, 0, 1))
        series.append(Series(METRIC.GPU_MEMORY_USED.name, gpu, 0, 4e10))
        series.append(Series(METRIC.GPU_MEMORY_TOTAL.name, gpu, 0, 8e10))
        process = {"gpu": str(g), "uuid": f"GPU-{g}"}
        series.append(Series(METRIC.GPU_TORCH_ALLOCATED.name, process, 0, 2e10))
        series.append(Series(METRIC.GPU_TORCH_RESERVED.name, process, 0, 3e10))
        series.append(Series(METRIC.GPU_HOURLY_COST.name, gpu, 0, 4))
    series.append(Series(METRIC.GPU_SAMPLER_UP.name, {}, 0, 1))
    for m in range(models):  # the GPUs are shared: model m runs on GPU m % GPUS
        labels = {"model": f"m{m:02d}", "gpu": str(m % GPUS), "uuid": f"GPU-{m % GPUS}"}
        series.append(Series(METRIC.MODEL_GPU_SECONDS.sample_name, labels, 0.01 * (1 + m % 5)))
    return hists, series


def exposition(hists: list[Histogram], series: list[Series], elapsed_s: float) -> str:
    """Prometheus text format of everything, ``elapsed_s`` after the start."""
    t = int(elapsed_s)
    lines = []
    for h in hists:
        for bound in (*LATENCY_BUCKETS, math.inf):
            le = "+Inf" if math.isinf(bound) else repr(bound)
            count = round(h.per_s * _share_below(bound, h.median_s)) * t
            lines.append(f"{h.name}_bucket{_labels({**h.labels, 'le': le})} {count}")
        lines.append(f"{h.name}_count{_labels(h.labels)} {h.per_s * t}")
        lines.append(f"{h.name}_sum{_labels(h.labels)} {h.per_s * t * h.median_s:.6g}")
    for s in series:
        lines.append(f"{s.name}{_labels(s.labels)} {s.value or s.per_s * t:.6g}")
    return "\n".join(lines) + "\n"


def backfill(data_dir: Path, hists: list[Histogram], series: list[Series], zero: float, step_s: int) -> int:
    """The series the long-window (SLO) rules read, from ``zero`` (wall clock) to now every ``step_s``,
    written as TSDB blocks into ``data_dir`` with promtool; returns the sample count."""
    counts = [(f"{h.name}_count{_labels(h.labels)}", h.per_s) for h in hists if h.name == METRIC.REQUEST_DURATION.name]
    over = [(f"{s.name}{_labels(s.labels)}", s.per_s) for s in series if s.name == METRIC.REQUESTS_OVER_SLO.sample_name]
    stamps = range(int(zero) + step_s, int(time.time()) - step_s, step_s)
    text = data_dir.parent / "backfill.om"
    with open(text, "w") as f:
        for name, per_s in counts + over:
            f.writelines(f"{name} {per_s * (t - zero):.0f} {t}\n" for t in stamps)
        f.write("# EOF\n")
    res = subprocess.run(
        [require("promtool"), "tsdb", "create-blocks-from", "openmetrics", str(text), str(data_dir)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    text.unlink()
    if res.returncode != 0:
        raise RuntimeError(f"promtool backfill failed:\n{(res.stdout + res.stderr)[-2000:]}")
    return len(stamps) * len(counts + over)


@contextlib.contextmanager
def target(hists: list[Histogram], series: list[Series], zero: float) -> Iterator[str]:
    """An HTTP /metrics serving the synthetic series, counters at their values ``time.time() - zero``
    seconds after they started; yields host:port."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = exposition(hists, series, time.time() - zero).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((LOOPBACK, free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{LOOPBACK}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def own_metrics(url: str) -> dict[str, float]:
    """Prometheus' own /metrics, ``name{labels}`` -> value."""
    status, body = http_get(f"{url}/metrics", timeout=5)
    if status != 200:
        raise OSError(f"{url}/metrics -> {status}")
    out = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def query(url: str, expr: str) -> float:
    status, body = http_get(f"{url}/api/v1/query?query={urllib.parse.quote(expr)}", timeout=10)
    result = json.loads(body)["data"]["result"] if status == 200 else []
    return float(result[0]["value"][1]) if result else 0.0


def rule_times(url: str) -> dict[str, float]:
    """The last evaluation time of each rule (ms), from the rules API."""
    status, body = http_get(f"{url}/api/v1/rules", timeout=10)
    if status != 200:
        raise OSError(f"{url}/api/v1/rules -> {status}")
    out = {}
    for group in json.loads(body)["data"]["groups"]:
        for rule in group["rules"]:
            out[rule["name"]] = float(rule.get("evaluationTime", 0.0)) * 1000
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=50)
    parser.add_argument("--versions", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=45, help="scraping and evaluating this long")
    parser.add_argument("--rules", type=Path, default=ROOT / "prometheus-rules", help="what-if: another rules folder")
    parser.add_argument(
        "--history-hours",
        type=float,
        default=0,
        help="backfill the SLO rules' inputs this far "
        "back (72: their 3 d window), so long windows read production-sized data",
    )
    parser.add_argument("--history-step", type=int, default=60, help="seconds between backfilled samples")
    parser.add_argument("--quick", action="store_true", help="smoke run: 5 models x 2 versions for 15 s")
    args = parser.parse_args()
    if args.quick:
        args.models, args.versions, args.seconds = 5, 2, 15
    if find_binary("prometheus") is None:
        print("### Rule evaluation cost\n\nNo prometheus on PATH (tools/setup.sh installs it); nothing measured.")
        return 0
    hists, series = synthetic(args.models, args.versions)
    n_input = sum(len(LATENCY_BUCKETS) + 3 for _ in hists) + len(series)
    rule_files = sorted(args.rules.resolve().glob("*.rules.yaml"))
    rules = sum(len(g["rules"]) for p in rule_files for g in yaml.safe_load(p.read_text())["groups"])
    eval_s = 5
    samples: dict[str, list[float]] = {}
    zero = time.time() - args.history_hours * 3600
    backfilled = 0
    with tempfile.TemporaryDirectory(prefix="infersight-rules-") as tmp, target(hists, series, zero) as addr:
        if args.history_hours:
            data = Path(tmp) / "prometheus-data"  # where stack.prometheus() keeps its TSDB
            data.mkdir()
            backfilled = backfill(data, hists, series, zero, args.history_step)
        config = Path(tmp) / "prometheus.yml"
        config.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": f"{eval_s}s"},
                    "rule_files": [str(p) for p in rule_files],
                    "scrape_configs": [{"job_name": "model-server", "static_configs": [{"targets": [addr]}]}],
                }
            )
        )
        with prometheus(config, Path(tmp), timeout=30) as prom:
            start = time.monotonic()
            seen: set[float] = set()
            while time.monotonic() - start < args.seconds:
                time.sleep(1.0)
                m = own_metrics(prom.url)
                stamp = sum(v for k, v in m.items() if k.startswith("prometheus_rule_group_last_evaluation_timestamp"))
                # One reading per evaluation cycle, after the window holds a few samples.
                if stamp in seen or time.monotonic() - start < min(10.0, args.seconds / 2):
                    continue
                seen.add(stamp)
                for k, v in m.items():
                    if k.startswith("prometheus_rule_group_last_duration_seconds"):
                        group = k.split('rule_group="', 1)[1].split('"', 1)[0].rsplit(";", 1)[-1]
                        samples.setdefault(group, []).append(v)
            m = own_metrics(prom.url)
            failures = sum(v for k, v in m.items() if k.startswith("prometheus_rule_evaluation_failures_total"))
            head = m.get("prometheus_tsdb_head_series", 0.0)
            p99s = query(prom.url, "count(model_version:infersight_request_duration_seconds:p99_5m)")
            rule_ms = rule_times(prom.url)
            window = f"{int(args.history_hours * 60) + 1}m"
            seen_back = query(prom.url, f"sum(count_over_time({METRIC.REQUESTS_OVER_SLO.sample_name}[{window}]))")
    per_group = {g: statistics.median(v) * 1000 for g, v in samples.items()}
    total_ms = sum(per_group.values())
    heaviest = sorted(per_group.items(), key=lambda kv: -kv[1])[:3]
    lines = [
        "### Rule evaluation cost (a real Prometheus on synthetic series)",
        "",
        f"{args.models} models x {args.versions} versions: **{n_input} input series** (head: {head:.0f} with "
        f"the recorded ones), {rules} rules in {len(rule_files)} files and {len(per_group)} groups, evaluated "
        f"every {eval_s} s; median of {min((len(v) for v in samples.values()), default=0)} readings per group "
        f"(prometheus_rule_group_last_duration_seconds).",
        "",
        f"- backfilled: {backfilled} samples of the SLO rules' inputs over {args.history_hours:g} h, one every "
        f"{args.history_step} s (over-SLO counters: {seen_back:.0f} samples in Prometheus)"
        if backfilled
        else "- no backfill: windows longer than the run read only its samples",
        f"- **all groups: {total_ms:.0f} ms per evaluation cycle** "
        f"({total_ms / 15000:.1%} of a 15 s evaluation interval); evaluation failures: {failures:.0f}",
        "- heaviest groups: " + ", ".join(f"{g} {ms:.0f} ms" for g, ms in heaviest),
        "- heaviest rules (last evaluation): "
        + ", ".join(f"{r} {ms:.0f} ms" for r, ms in sorted(rule_ms.items(), key=lambda kv: -kv[1])[:4]),
        f"- check: {p99s:.0f} model versions have a recorded P99 (expected {args.models * args.versions})",
    ]
    print("\n".join(lines))
    return 0 if p99s == args.models * args.versions and failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
