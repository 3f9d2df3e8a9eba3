"""The benchmarks' inference server: Flask + a transformers text-classification pipeline, as a
user writes it. Self-contained (its tiny model and tokenizer are built in memory at start-up),
so the benchmarks do not depend on examples/.

    BENCH_VARIANT=bare|infersight|otel-flask gunicorn -k gthread -w 1 --threads 4 benchmarks.bench_app:app

Variants, chosen by ``BENCH_VARIANT`` before anything else is imported:
  bare        the server as written, no telemetry
  infersight  the same file with its one added line, ``import infersight.auto``: a server span,
              and preprocess / model / postprocess stage spans from the pipeline's own methods
  otel-flask  opentelemetry-instrumentation-flask only (``FlaskInstrumentor().instrument_app``),
              exporting over OTLP like infersight (OTEL_TRACES_EXPORTER / OTEL_EXPORTER_OTLP_*)

The model (a 1-layer DistilBERT, random weights) costs about 1.5 ms per request on one CPU
thread; with tokenization and softmax the pipeline is about 2-3 ms, a small real model's cost.
``BENCH_DEVICE=cuda`` puts the model on the GPU (the pipeline's ``device``).
"""

import os

VARIANT = os.environ.get("BENCH_VARIANT", "bare")
if VARIANT == "infersight":
    import infersight.auto  # noqa: F401  (the one line a user adds)

import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402
from flask import Flask, jsonify, request  # noqa: E402
from transformers import (  # noqa: E402
    BertTokenizerFast,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    pipeline,
)

MODEL_NAME = "bench-sentiment"
WORDS = "good great bad awful the a movie service it was is model server this that food day and very".split()


def build_pipeline() -> Any:
    torch.manual_seed(0)
    torch.set_num_threads(1)  # one core per worker, as in a pre-fork deployment
    with tempfile.TemporaryDirectory() as tmp:
        vocab = Path(tmp) / "vocab.txt"
        vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
        tokenizer = BertTokenizerFast(
            vocab_file=str(vocab), do_lower_case=True, model_input_names=["input_ids", "attention_mask"]
        )
    config = DistilBertConfig(
        vocab_size=tokenizer.vocab_size,
        dim=32,
        n_layers=1,
        n_heads=2,
        hidden_dim=64,
        num_labels=2,
        id2label={0: "NEGATIVE", 1: "POSITIVE"},
        label2id={"NEGATIVE": 0, "POSITIVE": 1},
    )
    config.name_or_path = MODEL_NAME  # the model label infersight puts on its metrics
    model = DistilBertForSequenceClassification(config).eval()
    return pipeline(
        "text-classification", model=model, tokenizer=tokenizer, device=os.environ.get("BENCH_DEVICE", "cpu")
    )


app = Flask(__name__)
classifier = build_pipeline()


@app.post("/predict")
def predict() -> Any:
    body = request.get_json(silent=True) or {}
    text = body.get("text")
    if not isinstance(text, str) or not text:
        return jsonify(error='expected JSON {"text": "..."}'), 400
    result = classifier(text, truncation=True)[0]
    return jsonify(label=result["label"], score=round(float(result["score"]), 4))


if VARIANT == "otel-flask":
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.flask import FlaskInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    _provider = TracerProvider(resource=Resource.create({"service.name": "bench-otel-flask"}))
    if os.environ.get("OTEL_TRACES_EXPORTER", "otlp") != "none":
        _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(_provider)
    FlaskInstrumentor().instrument_app(app, tracer_provider=_provider)
elif VARIANT not in ("bare", "infersight"):
    raise SystemExit(f"BENCH_VARIANT must be bare, infersight or otel-flask, got {VARIANT!r}")
