"""The examples' model: a tiny sentiment model built locally on first use, or any directory or
hub id you pass; plus a pipeline class that runs the demo's fault switches inside its stages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import TextClassificationPipeline, pipeline

import faults

DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "tiny-sentiment"


def model_path(name: str | Path | None = None) -> str:
    """``name`` unchanged, except the default model, which is built when missing."""
    path = Path(name) if name else DEFAULT_MODEL
    if path == DEFAULT_MODEL and not (DEFAULT_MODEL / "config.json").exists():
        from build_model import build

        build(DEFAULT_MODEL)
    return str(name) if name else str(DEFAULT_MODEL)


class SentimentPipeline(TextClassificationPipeline):
    """The stock pipeline with the demo's fault switches inside its three stages."""

    def preprocess(self, *args: Any, **kwargs: Any) -> Any:
        faults.delay("preprocess")
        faults.tokenizer_delay(args[0] if args else kwargs.get("inputs"))
        return super().preprocess(*args, **kwargs)

    def _forward(self, *args: Any, **kwargs: Any) -> Any:
        faults.delay("model")
        return super()._forward(*args, **kwargs)

    def postprocess(self, *args: Any, **kwargs: Any) -> Any:
        faults.delay("postprocess")
        faults.locked("postprocess")
        return super().postprocess(*args, **kwargs)


def load_model(name: str | Path | None = None) -> Any:
    return pipeline("text-classification", model=model_path(name), pipeline_class=SentimentPipeline)
