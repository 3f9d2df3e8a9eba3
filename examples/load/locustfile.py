"""Locust load for the example servers: steady traffic, or a spike.

    locust -f examples/load/locustfile.py --host http://127.0.0.1:8000             # web UI
    locust -f examples/load/locustfile.py --host http://127.0.0.1:8000 --headless -u 10 -t 2m
    LOAD_SHAPE=spike locust -f examples/load/locustfile.py --host ... --headless

Knobs (environment):
  LOAD_PATH         request path (default /predict; /predict/realtime or /predict/batch for
                    examples/multi_model)
  LOAD_SHAPE        steady (default: users from -u) or spike (base users, then 5x for 30 s
                    every 2 minutes; stops after LOAD_SPIKE_MINUTES, default 10)
  LOAD_BASE_USERS   users outside a spike (default 5)
  LOAD_WAIT_S       think time between a user's requests (default 0.1)
  LOAD_LARGE_SHARE  share of requests with a large body, 0-1 (default 0)
  LOAD_LARGE_KB     size of a large body in KiB (default 64)
  LOAD_SHIFT_SHARE  share of requests with shifted input (unseen words, longer texts), 0-1
                    (default 0); raise it during a run to make the drift monitor fire
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

from locust import HttpUser, LoadTestShape, constant, task

sys.path.insert(0, str(Path(__file__).resolve().parent))
from http_load import make_text

PATH = os.environ.get("LOAD_PATH", "/predict")
SHAPE = os.environ.get("LOAD_SHAPE", "steady")
BASE_USERS = int(os.environ.get("LOAD_BASE_USERS", "5"))
LARGE_SHARE = float(os.environ.get("LOAD_LARGE_SHARE", "0"))
LARGE_KB = int(os.environ.get("LOAD_LARGE_KB", "64"))
SHIFT_SHARE = float(os.environ.get("LOAD_SHIFT_SHARE", "0"))


def pick_mode(rng: random.Random) -> str:
    roll = rng.random()
    if roll < LARGE_SHARE:
        return "large"
    if roll < LARGE_SHARE + SHIFT_SHARE:
        return "shift"
    return "normal"


class InferenceUser(HttpUser):
    wait_time = constant(float(os.environ.get("LOAD_WAIT_S", "0.1")))

    def on_start(self) -> None:
        self.rng = random.Random()

    @task
    def predict(self) -> None:
        mode = pick_mode(self.rng)
        self.client.post(PATH, json={"text": make_text(mode, self.rng, LARGE_KB)}, name=f"{PATH} [{mode}]")


if SHAPE == "spike":

    class SpikeShape(LoadTestShape):
        """Base load with a 5x spike for 30 s every 2 minutes."""

        period_s, spike_s = 120, 30
        limit_s = 60 * float(os.environ.get("LOAD_SPIKE_MINUTES", "10"))

        def tick(self) -> tuple[int, float] | None:
            t = self.get_run_time()
            if t > self.limit_s:
                return None
            in_spike = t % self.period_s >= self.period_s - self.spike_s
            users = BASE_USERS * 5 if in_spike else BASE_USERS
            return users, float(users)

elif SHAPE != "steady":
    raise SystemExit(f"LOAD_SHAPE must be steady or spike, got {SHAPE!r}")
