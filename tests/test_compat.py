"""Every private internal infersight reaches (``infersight._compat``) is where it looks for it.

An upgrade of opentelemetry-sdk or prometheus_client that moves one of them fails here, instead
of silently turning off drop counting, fork safety, batched metric writes or the fast encoder.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from infersight import _compat

SDK = Path(__file__).resolve().parents[1] / "sdk" / "infersight"


@pytest.mark.parametrize("name", sorted(_compat.PROBES))
def test_each_probe_finds_its_target_on_the_installed_versions(name: str) -> None:
    try:
        found = _compat.PROBES[name]()
    except ModuleNotFoundError as exc:  # an optional library (FastAPI, ...) this env lacks
        pytest.skip(f"{name}: {exc.name} is not installed")
    assert found, f"{name}: the internal moved in this version; see infersight/_compat.py"


def test_the_multiprocess_lock_is_found_in_multiprocess_mode(tmp_path: Path) -> None:
    # prometheus_client picks its value class when it is imported, from the environment.
    code = textwrap.dedent(
        """
        import prometheus_client
        from infersight import _compat
        print(_compat.multiprocess_values_lock() is not None)
        """
    )
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code], env={**env, **_pythonpath()}, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.strip() == "True", out.stderr


def _pythonpath() -> dict[str, str]:
    import os

    return {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}


def _rename(monkeypatch: pytest.MonkeyPatch, cls: type, name: str) -> None:
    """Simulate an upgrade that renamed the method ``cls.name`` (wherever in its bases it is)."""
    for klass in cls.__mro__:
        if name in vars(klass):
            monkeypatch.setattr(klass, name + "_renamed", vars(klass)[name], raising=False)
            monkeypatch.delattr(klass, name)


def _rename_instance_attribute(monkeypatch: pytest.MonkeyPatch, cls: type, name: str) -> None:
    """Simulate an upgrade that renamed an attribute ``cls.__init__`` sets."""
    real_init = cls.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        setattr(self, name + "_renamed", self.__dict__.pop(name))

    monkeypatch.setattr(cls, "__init__", init)


def test_a_renamed_batch_processor_internal_fails_its_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    _provider, processor = _compat._batch_processor_fixture()
    core_type = type(processor._batch_processor)
    processor.shutdown()
    assert _compat.PROBES["otel.batch_export_locks"]() and _compat.PROBES["otel.batch_queues"]()
    monkeypatch.setattr(core_type, "_export", lambda self, strategy: None)  # it would need the lock
    _rename_instance_attribute(monkeypatch, core_type, "_export_lock")
    assert not _compat.PROBES["otel.batch_export_locks"]()
    _rename_instance_attribute(monkeypatch, core_type, "_queue")
    assert not _compat.PROBES["otel.batch_queues"]()


def test_a_renamed_histogram_internal_fails_its_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    from prometheus_client.metrics import Histogram

    real_init = Histogram._metric_init

    def renamed(self: Any) -> None:
        real_init(self)
        self._bucket_values = self.__dict__.pop("_buckets")

    monkeypatch.setattr(Histogram, "_metric_init", renamed)
    assert not _compat.PROBES["prometheus.histogram_parts"]()


def test_a_renamed_exporter_hook_fails_its_probe_and_the_stock_encoder_is_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    from infersight._tracing import _make_exporter
    from infersight.config import Config

    _rename(monkeypatch, OTLPSpanExporter, "_translate_data")
    assert not _compat.PROBES["otel.exporter_hooks"]()
    exporter = _make_exporter(Config.from_env(traces_exporter="otlp", otlp_protocol="grpc"))
    try:
        assert type(exporter) is OTLPSpanExporter
    finally:
        assert exporter is not None
        exporter.shutdown()


def test_no_other_module_reaches_into_another_librarys_internals() -> None:
    """Private attributes of objects that aren't ours are read in ``_compat`` only: an
    attribute access ``x._name`` whose object isn't ``self``/``cls``, or a ``getattr`` of a
    ``"_name"`` string, outside ``_compat.py``, must be on one of infersight's own objects."""
    own = _own_private_names()
    found = []
    for path in sorted(SDK.rglob("*.py")):
        if path.name == "_compat.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            name = None
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                    name = node.attr
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "hasattr")
                and len(node.args) > 1
                and isinstance(node.args[1], ast.Constant)
                and str(node.args[1].value).startswith("_")
                and not str(node.args[1].value).startswith("__")
            ):
                name = str(node.args[1].value)
            if name is not None and name not in own:
                found.append(f"{path.relative_to(SDK)}:{node.lineno} {name}")
    assert not found, "reach other libraries' internals through infersight._compat:\n" + "\n".join(found)


def _own_private_names() -> set[str]:
    """Names infersight itself defines: its private modules, functions, classes and attributes."""
    names = {p.stem for p in SDK.rglob("_*.py")}
    for path in SDK.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.alias):
                names.add(node.asname or node.name.split(".")[0])
    return {n for n in names if n.startswith("_")}


def test_importing_infersight_imports_no_grpc() -> None:
    """A Flask app that exports over HTTP never pays for importing grpc (the gRPC exporter
    is reached only when it is used)."""
    code = "import sys, infersight, infersight.auto; print('grpc' in sys.modules)"
    env = {"PATH": "/usr/bin:/bin", "OTEL_TRACES_EXPORTER": "none", "INFERSIGHT_METRICS_PORT": "0", **_pythonpath()}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr[-2000:]


@pytest.mark.parametrize(
    ("framework", "probe"), [("litserve", "litserve.queue_and_hooks"), ("bentoml", "bentoml.endpoint_steps")]
)
def test_framework_probes_find_their_targets_in_the_frameworks_envs(framework: str, probe: str) -> None:
    """LitServe and BentoML live in envs of their own (tools/build-framework-env.sh): their
    probes run there, on the pinned versions."""
    from tests.support.frameworks import ROOT, framework_python

    python = framework_python(framework)
    code = f"import sys; from infersight import _compat; sys.exit(0 if _compat.PROBES[{probe!r}]() else 3)"
    done = subprocess.run(
        [python, "-c", code], env={"PYTHONPATH": str(ROOT / "sdk")}, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"{probe}: the internal moved; see infersight/_compat.py\n{done.stderr[-2000:]}"
