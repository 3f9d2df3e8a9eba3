"""HuggingFace ``transformers`` pipelines: preprocess / _forward / postprocess become the stages
``preprocess`` / ``model`` / ``postprocess``, labelled with the pipeline's model name.

Subclasses override those methods, so each pipeline class's own methods are wrapped: all
classes known at instrumentation time, and any later class when its first instance is built.
Covers transformers 4.44+ and 5.x.

``pipeline(...)`` is a model load: its ``from_pretrained`` calls (the model's and the tokenizer's
files read) and the pipeline's set-up (``Pipeline.__init__``, which moves the model to its
device) are its parts, and the first request after it ends a cold start (``_coldstart``).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import wrapt

from .. import _coldstart, _errors, _runtime
from .._records import current_request, current_stage
from ..conventions import ATTR, COLD_READ_WEIGHTS, COLD_TO_DEVICE, SPAN
from ._common import is_wrapped

__all__ = ["instrument", "model_label", "uninstrument"]

_STAGE_OF = {"preprocess": SPAN.PREPROCESS, "_forward": SPAN.MODEL, "postprocess": SPAN.POSTPROCESS}
_patched: set[type] = set()


def model_label(pipeline: Any) -> str:
    """The model label: the configured name if set, else the model's id or directory name."""
    explicit = getattr(pipeline, "_infersight_model", None)
    if explicit:
        return str(explicit)
    name = getattr(getattr(pipeline, "model", None), "name_or_path", "") or ""
    name = str(name).rstrip("/\\")
    if os.path.isabs(name) or name.startswith("."):
        name = os.path.basename(name)
    label = name or type(pipeline).__name__
    try:
        pipeline._infersight_model = label  # computed once per pipeline, not per stage call
    except AttributeError:
        pass
    return label


def _pipeline_attrs(pipeline: Any) -> dict[str, Any] | None:
    """The attributes every stage of this pipeline carries, built once per pipeline."""
    cached: Any = getattr(pipeline, "_infersight_attrs", False)
    if cached is not False:
        return cached  # type: ignore[no-any-return]
    task = getattr(pipeline, "task", None)
    attrs = {ATTR.PIPELINE_TASK: str(task)} if task else None
    try:
        pipeline._infersight_attrs = attrs
    except AttributeError:
        pass
    return attrs


def _count_tokens(output: Any) -> int:
    ids = output.get("input_ids") if isinstance(output, dict) or hasattr(output, "get") else None
    shape = getattr(ids, "shape", None)
    if shape is not None and len(shape) >= 1:
        return int(shape[-1])
    return -1


def _stage_wrapper(stage_name: str) -> Any:
    def wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        outer = current_stage.get()
        if outer is not None and outer.name == stage_name and not outer.end_ns:
            return wrapped(*args, **kwargs)  # a subclass calling super(): one span, not two
        model = model_label(instance)
        st, tokens = _runtime.start_stage(stage_name, model)
        if st is not None:
            st.base_attrs = _pipeline_attrs(instance)
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            _runtime.end_stage(st, tokens, exc)
            raise
        _runtime.end_stage(st, tokens, None)
        if stage_name == SPAN.PREPROCESS and st is not None:
            try:
                count = _count_tokens(result)
                if count >= 0:
                    st.set_attr(ATTR.INPUT_TOKENS, count)
                    rec = current_request.get()
                    if rec is not None:
                        rec.tokens = count if rec.tokens < 0 else rec.tokens + count
            except Exception as exc:
                _errors.report("transformers", exc)
        return result

    return wrapper


def _patch_class(cls: type) -> None:
    if cls in _patched:
        return
    _patched.add(cls)
    for method, stage_name in _STAGE_OF.items():
        if method in cls.__dict__ and not is_wrapped(cls.__dict__[method]):
            wrapt.wrap_function_wrapper(cls, method, _stage_wrapper(stage_name))


def _all_subclasses(cls: type) -> list[type]:
    out, todo = [], [cls]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(current.__subclasses__())
    return out


def _part_wrapper(phase: str) -> Any:
    """Times a part of a model load on the loading thread; outside a load, or inside another
    part (a from_pretrained calling another), it only calls through."""

    def wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        tracker = _coldstart.tracker
        if not tracker.loading() or getattr(_in_part, "on", False):
            return wrapped(*args, **kwargs)
        _in_part.on = True
        start = _coldstart.now_ns()
        try:
            return wrapped(*args, **kwargs)
        finally:
            _in_part.on = False
            tracker.part(phase, start, _coldstart.now_ns())

    return wrapper


_in_part = threading.local()
_to_device = _part_wrapper(COLD_TO_DEVICE)


def _init_wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    result = _to_device(wrapped, instance, args, kwargs)
    try:
        for cls in type(instance).__mro__:
            if getattr(cls, "__module__", "").startswith("transformers") or cls is type(instance):
                _patch_class(cls)
    except Exception as exc:
        _errors.report("transformers", exc)
    return result


def _call_wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A pipeline called outside any request (a script, a batch job) gets a request of its own,
    so its three stages share one trace. Inside a request it only names the model."""
    rt = _runtime.get_runtime()
    if rt is None:
        return wrapped(*args, **kwargs)
    model = model_label(instance)
    rec = current_request.get()
    tokens = None
    if rec is None and current_stage.get() is None:
        name = f"{SPAN.PIPELINE} {getattr(instance, 'task', '')}".strip()
        rec, tokens = _runtime.start_request(name, endpoint=SPAN.PIPELINE)
    if rec is not None:
        rec.set_model(model)
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        if tokens is not None:
            _runtime.finish_request(rec, tokens, exc)
        raise
    if tokens is not None:
        _runtime.finish_request(rec, tokens, None)
    drift = rt.drift
    if drift is not None:
        try:
            drift.capture_pipeline(model, instance, args[0] if args else kwargs.get("inputs"), result)
        except Exception as exc:
            _errors.report("drift.capture", exc)
    return result


def _factory_wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``transformers.pipeline(...)``: how long the model took to load (cold start)."""
    start = time.perf_counter()
    load = _coldstart.tracker.begin_load()
    try:
        result = wrapped(*args, **kwargs)
    except BaseException:
        _coldstart.tracker.end_load(load, None)
        raise
    try:
        model = model_label(result)
        _coldstart.tracker.end_load(load, model)
        rt = _runtime.get_runtime()
        if rt is not None and rt.metrics is not None:
            rt.metrics.record_model_load(model, None, time.perf_counter() - start)
    except Exception as exc:
        _errors.report("transformers", exc)
    return result


def _loaders() -> list[type]:
    """The classes whose ``from_pretrained`` reads a model's or a tokenizer's files."""
    import transformers

    return [transformers.PreTrainedModel, transformers.PreTrainedTokenizerBase]


def instrument() -> None:
    import transformers.pipelines as pipelines
    from transformers.pipelines.base import Pipeline

    for cls in _all_subclasses(Pipeline):
        _patch_class(cls)
    if not is_wrapped(Pipeline.__dict__["__init__"]):
        wrapt.wrap_function_wrapper(Pipeline, "__init__", _init_wrapper)
    if not is_wrapped(Pipeline.__dict__["__call__"]):
        wrapt.wrap_function_wrapper(Pipeline, "__call__", _call_wrapper)
    for cls in _loaders():
        if not is_wrapped(cls.__dict__["from_pretrained"]):
            wrapt.wrap_function_wrapper(cls, "from_pretrained", _part_wrapper(COLD_READ_WEIGHTS))
    if not is_wrapped(pipelines.pipeline):
        wrapt.wrap_function_wrapper(pipelines, "pipeline", _factory_wrapper)
        try:
            import transformers

            # The top-level lazy module caches attributes once resolved.
            if "pipeline" in vars(transformers):
                transformers.pipeline = pipelines.pipeline
        except Exception:
            pass


def uninstrument() -> None:
    try:
        import transformers.pipelines as pipelines
        from transformers.pipelines.base import Pipeline
    except ImportError:
        return
    for cls in list(_patched):
        for method in _STAGE_OF:
            _restore(cls, method)
    _patched.clear()
    for name in ("__init__", "__call__"):
        _restore(Pipeline, name)
    for cls in _loaders():
        _restore(cls, "from_pretrained")
    _restore(pipelines, "pipeline")


def _restore(owner: Any, attr: str) -> None:
    current: Any = vars(owner).get(attr)
    if is_wrapped(current):
        setattr(owner, attr, current.__wrapped__)
