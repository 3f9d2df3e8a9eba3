"""``python tools/demo.py`` end to end: real server, Prometheus, Alertmanager and webhook;
a fault injected after 10 s makes a latency alert reach the webhook; everything is stopped."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from stack import find_binary, jaeger_binary

ROOT = Path(__file__).resolve().parent.parent
LATENCY_ALERTS = ("InferenceP99AboveSLO", "InferenceLatencySLOBurnRate")


def _processes_mentioning(text: str) -> list[str]:
    """Pids whose command line or environment mentions ``text`` (the demo's temp dir)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        for part in ("cmdline", "environ"):
            try:
                if text.encode() in Path(f"/proc/{pid}/{part}").read_bytes():
                    found.append(pid)
                    break
            except OSError:
                continue
    return found


@pytest.mark.slow
@pytest.mark.stack
@pytest.mark.skipif(
    find_binary("prometheus") is None or find_binary("alertmanager") is None,
    reason="prometheus / prometheus-alertmanager not installed (tools/setup.sh)",
)
def test_demo_runs_end_to_end_and_cleans_up() -> None:
    proc = subprocess.run(
        [sys.executable, "tools/demo.py", "--duration", "60", "--fault-at", "10", "--no-tty"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=150,
    )
    out = proc.stdout
    assert proc.returncode == 0, f"{out[-3000:]}\n{proc.stderr[-3000:]}"

    frames = out.split("--- frame t=")[1:]
    assert len(frames) >= 8, out[-3000:]
    inject = out.index("injecting slow postprocess")
    before = [f for f in frames if out.index(f) < inject]
    after = [f for f in frames if out.index(f) > inject]
    assert before and after
    # Before the fault the model meets its objective; after it, the table says it does not.
    assert any(re.search(r"^tiny-sentiment .* ok ", f, re.M) for f in before), before[-1]
    assert re.search(r"^tiny-sentiment .* OVER ", after[-1], re.M), after[-1]
    assert re.search(r"^  postprocess +\d", after[-1], re.M)

    # The trace is one step away: with Jaeger built (tools/setup.sh), the slowest request's
    # trace is drawn under the table after the fault, its postprocess stage waiting (a sleep).
    if jaeger_binary().exists():
        assert "slowest recent request" in out[inject:], after[-1]
        waits = re.findall(r"^\s+postprocess\s+\|[^|]*\|\s+\S+\s+cpu \S+ \(\d+%\) wait ([\d.]+)ms", out[inject:], re.M)
        assert waits and max(float(w) for w in waits) >= 150, out[inject:][-3000:]

    # Alerts arrive at the webhook only after the fault, and name the latency objective.
    webhook = [m.start() for m in re.finditer(r"webhook /\w+: FIRING (\w+)", out)]
    assert webhook, out[-3000:]
    assert min(webhook) > inject, "an alert fired before the fault was injected"
    received = re.search(r"^alerts received by the webhook: (.*)$", out, re.M)
    assert received and any(a in received.group(1) for a in LATENCY_ALERTS), out[-1500:]

    # Everything stopped, the temporary directory removed.
    workdir = re.search(r"\(logs: (\S+)\)", out)
    assert workdir, out[:2000]
    assert not Path(workdir.group(1)).exists()
    assert _processes_mentioning(workdir.group(1)) == []
    assert "all processes stopped" in out


@pytest.mark.parametrize(
    ("argv", "server", "extra", "switches"),
    [
        (["--fault", "payload_jump"], "flask", [], {"slow_tokenizer_ms_per_kb": 50.0}),
        (["--fault", "large_payload", "--fault-ms", "400"], "flask", [], {"slow_tokenizer_ms_per_kb": 100.0}),
        (["--fault", "load_spike"], "fastapi", ["--threads", "2"], {"slow_model_ms": 40.0}),
        (["--fault", "load_spike", "--no-fault"], "flask", [], {}),
        (["--fault", "gil_hog", "--server", "fastapi"], "fastapi", [], {}),
    ],
)
def test_demo_fault_arguments_set_up_the_server(
    tmp_path: Path, argv: list[str], server: str, extra: list[str], switches: dict[str, float]
) -> None:
    """--fault payload_jump / load_spike: the server the demo starts and the switches it has from
    the start (the faults themselves are the load's; the end-to-end run above covers the loop)."""
    import argparse

    import demo

    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    args = parser.parse_args(argv)
    fault_file = tmp_path / "faults.json"
    name, args_out, _ = demo.server_setup(args, fault_file)
    assert (name, args_out) == (server, extra)
    assert {k: v for k, v in json.loads(fault_file.read_text()).items() if v} == switches
    with pytest.raises(SystemExit):
        parser.parse_args(["--fault", "no_such_fault"])
