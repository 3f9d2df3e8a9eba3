"""A Flask + transformers sentiment server, written as one usually is, plus one line:
``import infersight.auto``. That line alone gives a server span per request, ``preprocess`` /
``model`` / ``postprocess`` stage spans from the pipeline, latency histograms with trace
exemplars on ``/metrics``, and the model's load time.

    python examples/flask_sentiment/app.py --port 8000 [--model distilbert-base-uncased-finetuned-sst-2-english]
    curl -s localhost:8000/predict -H 'content-type: application/json' -d '{"text": "great movie"}'

Settings come from the environment (INFERSIGHT_MODELS for the P99 objective, OTEL_* for the
trace exporter); see sdk/infersight/config.py. The only demo-specific parts are the fault
switches (examples/faults.py), called from the pipeline's own stage methods.
"""

import infersight.auto  # noqa: F401, I001  (the one added line: first, before the app imports)

import argparse
import json
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, request

EXAMPLES = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(EXAMPLES))
import faults  # noqa: E402
from sentiment_model import DEFAULT_MODEL, load_model  # noqa: E402

app = Flask(__name__)
faults.install(app)
_model_name = os.environ.get("MODEL", str(DEFAULT_MODEL))
_classifier: Any = None
_load_lock = threading.Lock()


def classifier() -> Any:
    global _classifier
    with _load_lock:
        if _classifier is None or faults.take_cold_start():
            _classifier = load_model(_model_name)
        return _classifier


def classify(text: str) -> dict[str, Any]:
    clf = classifier()
    # Long inputs are cut to what the model's position embeddings can take.
    max_length = getattr(clf.model.config, "max_position_embeddings", 512)
    result = clf(text, truncation=True, max_length=max_length)[0]
    return {"label": result["label"], "score": round(float(result["score"]), 4)}


def _text() -> str | None:
    body = request.get_json(silent=True) or {}
    text = body.get("text")
    return text if isinstance(text, str) and text else None


@app.post("/predict")
def predict() -> Any:
    text = _text()
    if text is None:
        return jsonify(error='expected JSON {"text": "..."}'), 400
    return jsonify(classify(text))


@app.post("/predict/stream")
def predict_stream() -> Any:
    """Server-sent events: the request ends at the last byte, and its time to first byte is a
    histogram of its own."""
    text = _text() or " "

    def events() -> Iterator[str]:
        yield "event: start\ndata: {}\n\n"
        yield f"data: {json.dumps(classify(text))}\n\n"

    return Response(events(), mimetype="text/event-stream")


@app.get("/healthz")
def healthz() -> Any:
    return jsonify(status="ok", model=_model_name)


def main() -> None:
    global _model_name
    parser = argparse.ArgumentParser(description="Sentiment server (Flask + transformers).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--model", default=_model_name, help="local dir or hub id (env MODEL)")
    args = parser.parse_args()
    _model_name = args.model
    classifier()  # load before serving, so the first request is not a cold start
    print(f"serving {_model_name} on http://{args.host}:{args.port}", flush=True)
    app.run(host=args.host, port=args.port, threaded=True)


if __name__ == "__main__":
    main()
