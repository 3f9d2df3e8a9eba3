"""A FastAPI + transformers sentiment server, written as one usually is, plus one line:
``import infersight.auto``. The FastAPI twin of examples/flask_sentiment: a server span per
request named after its route, ``preprocess`` / ``model`` / ``postprocess`` stage spans from
the pipeline, latency histograms with trace exemplars on ``/metrics``, and the model's load time.
``/predict/stream`` streams the label as server-sent events (its time to first byte is a
histogram of its own).

    python examples/fastapi_sentiment/app.py --port 8000 [--model distilbert-base-uncased-finetuned-sst-2-english]
    curl -s localhost:8000/predict -H 'content-type: application/json' -d '{"text": "great movie"}'

``--threads N`` bounds the pool of threads the sync endpoints run in (anyio's default: 40):
requests beyond N wait for a thread, and that wait is part of the time outside the stages.

or under uvicorn directly (with ``--workers N``, set PROMETHEUS_MULTIPROC_DIR to an empty
directory first): ``uvicorn app:app --app-dir examples/fastapi_sentiment --port 8000``.

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
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio.to_thread
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel

EXAMPLES = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(EXAMPLES))
import faults  # noqa: E402
from sentiment_model import DEFAULT_MODEL, load_model  # noqa: E402

_model_name = os.environ.get("MODEL", str(DEFAULT_MODEL))
_threads = 0  # --threads: the sync endpoints' thread pool size (0: anyio's default, 40)


@asynccontextmanager
async def _lifespan(_: FastAPI) -> AsyncIterator[None]:
    if _threads:  # the limiter belongs to the event loop: set it once the loop runs
        anyio.to_thread.current_default_thread_limiter().total_tokens = _threads
    yield


app = FastAPI(lifespan=_lifespan)
faults.install(app)
_classifier: Any = None
_load_lock = threading.Lock()


class Text(BaseModel):
    text: str = ""


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


@app.post("/predict")
def predict(body: Text) -> Any:  # sync: FastAPI runs it in its thread pool
    if not body.text:
        return JSONResponse({"error": 'expected JSON {"text": "..."}'}, status_code=400)
    return classify(body.text)


@app.post("/predict/stream")
def predict_stream(body: Text) -> StreamingResponse:
    def events() -> Iterator[str]:
        yield "event: start\ndata: {}\n\n"
        yield f"data: {json.dumps(classify(body.text or ' '))}\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok", "model": _model_name}


def main() -> None:
    global _model_name, _threads
    parser = argparse.ArgumentParser(description="Sentiment server (FastAPI + transformers).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--model", default=_model_name, help="local dir or hub id (env MODEL)")
    parser.add_argument("--threads", type=int, default=0, help="threads for the sync endpoints (default: 40)")
    args = parser.parse_args()
    _model_name, _threads = args.model, args.threads
    classifier()  # load before serving, so the first request is not a cold start
    print(f"serving {_model_name} on http://{args.host}:{args.port}", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
