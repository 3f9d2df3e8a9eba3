"""The fault matrix's server: the tiny sentiment model under one model label per fault, so that
each fault has series of its own in Prometheus (no fault sees another's 5 m window), and the
example fault switches (examples/faults.py, ``POST /admin/faults``) inside its pipeline stages.

    python tests/e2e/matrix_app.py --port 8000 --model DIR --labels a,b,c --workdir DIR [--relay-to URL]

``POST /relay/<name>`` makes it a client too: it calls ``<relay-to>/predict/<name>`` with
``requests`` (instrumented by the same import), so its outgoing calls' latency and network time
are on its /metrics; the e2e stack points ``--relay-to`` at a delay proxy in front of itself.
"""

import infersight.auto  # noqa: F401, I001  (as the examples: first)

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import requests
from flask import Flask, jsonify, request

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
import faults
from sentiment_model import load_model

app = Flask(__name__)
faults.install(app)
pipelines: dict[str, Any] = {}
relay_to = ""


@app.post("/predict/<name>")
def predict(name: str) -> Any:
    clf = pipelines.get(name)
    if clf is None:
        return jsonify(error=f"no model {name}"), 404
    text = (request.get_json(silent=True) or {}).get("text") or " "
    result = clf(text, truncation=True, max_length=clf.model.config.max_position_embeddings)[0]
    return jsonify(label=result["label"])


@app.post("/relay/<name>")
def relay(name: str) -> Any:
    answer = requests.post(f"{relay_to}/predict/{name}", json=request.get_json(silent=True) or {}, timeout=30)
    return answer.content, answer.status_code, {"Content-Type": "application/json"}


@app.get("/healthz")
def healthz() -> Any:
    return jsonify(status="ok", models=sorted(pipelines))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--labels", required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--relay-to", default="", help="base URL /relay/<name> calls")
    args = parser.parse_args()
    global relay_to
    relay_to = args.relay_to.rstrip("/")
    for label in args.labels.split(","):
        # The model label is the model directory's name: one link per label.
        link = Path(args.workdir) / label
        if not link.exists():
            os.symlink(args.model, link)
        pipelines[label] = load_model(link)
    app.run(host="127.0.0.1", port=args.port, threaded=True)


if __name__ == "__main__":
    main()
