"""Three models behind one Flask server, each with its own P99 objective:

* ``realtime`` (100 ms P99): served directly on the request thread;
* ``batch`` (2 s P99): requests wait in a queue; a worker thread runs up to ``--max-batch``
  of them together (or whatever came within ``--max-wait-ms``) in one forward pass;
* ``embedder`` (5 s P99): a GPU-heavy neighbour on the same GPU, off until
  ``POST /admin/neighbour {"on": true}``. Switched on, it takes the GPU from ``realtime``,
  whose P99 goes over its objective: the GPUNoisyNeighbour alert names it (shared_gpu.py).

This uses the explicit API: stages around the tokenizer, the forward pass and the softmax;
``infersight.batch(handles, model=...)`` around the batched call, so each waiting request gets
its own model span, its queue wait and one batch-size observation per batch.

    python examples/multi_model/app.py --port 8000
    curl -s localhost:8000/predict/batch -H 'content-type: application/json' -d '{"text": "fine"}'
    curl -s localhost:8000/admin/neighbour -H 'content-type: application/json' -d '{"on": true}'

Without a GPU, ``EXAMPLE_FAKE_GPU=1`` gives infersight a fake one whose utilization follows
the models' work; ``INFERSIGHT_GPU_HOURLY_COST=H100=4`` prices it, for the cost panels.
"""

from __future__ import annotations

import argparse
import os
import queue
import sys
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from flask import Flask, jsonify, request
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import infersight
from infersight.instrumentation import instrument_all

EXAMPLES = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(EXAMPLES))
import shared_gpu  # noqa: E402

import faults  # noqa: E402
from sentiment_model import DEFAULT_MODEL, model_path  # noqa: E402

MODELS = {
    "realtime": {"version": "1", "slo_p99_seconds": 0.1},
    "batch": {"version": "1", "slo_p99_seconds": 2.0},
    "embedder": {"version": "1", "slo_p99_seconds": 5.0},
}

_fake_nvml = shared_gpu.install_fake_nvml() if shared_gpu.FAKE_GPU else None
infersight.init(service="multi-model-server", models=MODELS)
instrument_all()


class Classifier:
    """Tokenizer + model, loaded once; ``forward`` runs one padded batch."""

    def __init__(self, name: str, path: str) -> None:
        start = time.perf_counter()
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForSequenceClassification.from_pretrained(path).eval()
        if isinstance(gpu, shared_gpu.CudaGpu):
            self.model = self.model.to("cuda")
        self.labels = self.model.config.id2label
        infersight.record_model_load(name, time.perf_counter() - start)

    def tokenize(self, texts: list[str]) -> Any:
        return self.tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")

    def forward(self, inputs: Any) -> torch.Tensor:
        assert gpu is not None, "load() first"
        with torch.inference_mode(), gpu.hold():  # the shared GPU: one model at a time
            if isinstance(gpu, shared_gpu.CudaGpu):
                inputs = {k: v.to("cuda") for k, v in inputs.items()}
            return self.model(**inputs).logits.cpu()

    def label(self, logits: torch.Tensor) -> dict[str, Any]:
        probs = torch.softmax(logits, dim=-1)
        index = int(probs.argmax())
        return {"label": self.labels[index], "score": round(float(probs[index]), 4)}


@dataclass
class Pending:
    text: str
    handle: Any  # infersight.current_request_handle() of the waiting request
    enqueued: float = field(default_factory=time.monotonic)
    result: Future[torch.Tensor] = field(default_factory=Future)


class DynamicBatcher:
    """Collect up to ``max_batch`` requests or wait ``max_wait_s``, then run them as one."""

    def __init__(self, clf: Classifier, model: str, max_batch: int, max_wait_s: float) -> None:
        self.clf, self.model = clf, model
        self.max_batch, self.max_wait_s = max_batch, max_wait_s
        self.queue: queue.Queue[Pending] = queue.Queue(maxsize=1024)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"batcher-{model}", daemon=True)
        self._thread.start()

    def submit(self, text: str, timeout_s: float = 30.0) -> torch.Tensor:
        item = Pending(text, infersight.current_request_handle())
        self.queue.put(item, timeout=timeout_s)
        return item.result.result(timeout=timeout_s)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _collect(self) -> list[Pending]:
        try:
            items = [self.queue.get(timeout=0.1)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + self.max_wait_s
        while len(items) < self.max_batch:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                items.append(self.queue.get(timeout=left))
            except queue.Empty:
                break
        return items

    def _run(self) -> None:
        while not self._stop.is_set():
            items = self._collect()
            if not items:
                continue
            started = time.monotonic()
            for item in items:
                infersight.record_queue_wait(started - item.enqueued, request=item.handle)
            try:
                with infersight.batch([i.handle for i in items], model=self.model):
                    faults.delay("model")
                    logits = self.clf.forward(self.clf.tokenize([i.text for i in items]))
            except Exception as exc:  # every waiting request gets the error
                for item in items:
                    item.result.set_exception(exc)
                continue
            for item, row in zip(items, logits, strict=True):
                item.result.set_result(row)


app = Flask(__name__)
faults.install(app)
_model_path = os.environ.get("MODEL", str(DEFAULT_MODEL))
realtime: Classifier | None = None
batcher: DynamicBatcher | None = None
gpu: shared_gpu.SimulatedGpu | shared_gpu.CudaGpu | None = None
neighbour: shared_gpu.Neighbour | None = None


def load(path: str, max_batch: int = 8, max_wait_ms: float = 20.0, device: str = "cpu") -> None:
    global realtime, batcher, gpu, neighbour
    gpu = shared_gpu.CudaGpu() if device == "cuda" else shared_gpu.SimulatedGpu()
    if _fake_nvml is not None and isinstance(gpu, shared_gpu.SimulatedGpu):
        shared_gpu.drive_fake_utilization(_fake_nvml, gpu)
    neighbour = shared_gpu.Neighbour(gpu)
    path = model_path(path)
    realtime = Classifier("realtime", path)
    batcher = DynamicBatcher(Classifier("batch", path), "batch", max_batch, max_wait_ms / 1000)


def _text() -> str | None:
    body = request.get_json(silent=True) or {}
    text = body.get("text")
    return text if isinstance(text, str) and text else None


@app.post("/predict/realtime")
def predict_realtime() -> Any:
    assert realtime is not None, "load() first"
    infersight.set_model("realtime")
    with infersight.preprocess():
        text = _text()
        if text is None:
            return jsonify(error='expected JSON {"text": "..."}'), 400
        faults.delay("preprocess")
        inputs = realtime.tokenize([text])
    with infersight.model():
        faults.delay("model")
        logits = realtime.forward(inputs)[0]
    with infersight.postprocess():
        faults.delay("postprocess")
        return jsonify(realtime.label(logits))


@app.post("/predict/batch")
def predict_batch() -> Any:
    assert batcher is not None, "load() first"
    infersight.set_model("batch")
    with infersight.preprocess():
        text = _text()
        if text is None:
            return jsonify(error='expected JSON {"text": "..."}'), 400
        faults.delay("preprocess")
    logits = batcher.submit(text)  # the model stage is recorded by the batcher
    with infersight.postprocess():
        faults.delay("postprocess")
        return jsonify(batcher.clf.label(logits))


@app.post("/admin/neighbour")
def admin_neighbour() -> Any:
    """``{"on": true}`` starts the GPU-heavy ``embedder``, ``{"on": false}`` stops it."""
    assert neighbour is not None, "load() first"
    body = request.get_json(silent=True) or {}
    neighbour.switch(bool(body.get("on")))
    return jsonify(on=neighbour.on, device=neighbour.gpu.name)


@app.get("/healthz")
def healthz() -> Any:
    return jsonify(status="ok" if batcher is not None else "loading", models=sorted(MODELS))


def main() -> None:
    parser = argparse.ArgumentParser(description="Multi-model server with a dynamic batcher.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--model", default=_model_path, help="local dir or hub id (env MODEL)")
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--max-wait-ms", type=float, default=20.0)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the models run")
    args = parser.parse_args()
    load(args.model, args.max_batch, args.max_wait_ms, args.device)
    print(f"serving realtime + batch ({args.model}) on http://{args.host}:{args.port}", flush=True)
    app.run(host=args.host, port=args.port, threaded=True)


if __name__ == "__main__":
    main()
