"""Run by tests/test_ray_serve.py with the Ray env's python: a local Ray cluster, the app of
``ray_serve_app`` with two replicas, ``N`` requests through Serve's HTTP proxy.

argv: requests, proxy port. Also ``ingress_app`` (FastAPI), with ``INGRESS_REQUESTS`` requests.
Prints one JSON line (``{"sent": N, "labels": {...}}``) once every
request was answered, then keeps the cluster up until stdin closes, so the test can read the
collector, and shuts Ray down."""

from __future__ import annotations

import json
import sys
import urllib.request

import ray
from ray import serve

INGRESS_REQUESTS = 4


def main() -> None:
    requests, port = int(sys.argv[1]), int(sys.argv[2])
    # Replicas are processes Ray starts: the environment they need is passed explicitly.
    env = {k: v for k, v in __import__("os").environ.items() if k.startswith(("OTEL_", "INFERSIGHT_", "PYTHON"))}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env})
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    from ray_serve_app import app, ingress_app

    serve.run(app, name="classify", route_prefix="/classify")
    serve.run(ingress_app, name="items", route_prefix="/api")
    labels: dict[str, int] = {}
    for i in range(requests):
        body = json.dumps({"text": "good" if i % 2 else "bad"}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/classify", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            label = json.loads(resp.read())["label"]
            labels[label] = labels.get(label, 0) + 1
    for i in range(INGRESS_REQUESTS):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/items/{i}", timeout=30) as resp:
            assert json.loads(resp.read()) == {"item": i}
    print(json.dumps({"sent": requests, "labels": labels}), flush=True)
    sys.stdin.read()  # until the test is done reading the collector
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
