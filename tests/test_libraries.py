"""The instrumented libraries as objects: version range checked, hooks and entry point from one list."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from packaging.requirements import Requirement

import infersight.instrumentation as instrumentation
from infersight.instrumentation import (
    LIBRARIES,
    InfersightInstrumentor,
    Library,
    _library,
    instrument_all,
    uninstrument_all,
)
from infersight.instrumentation._common import is_wrapped

ROOT = Path(__file__).resolve().parent.parent
FLASK = next(library for library in LIBRARIES if library.name == "flask")


@pytest.fixture
def clean() -> Iterator[None]:
    uninstrument_all()
    yield
    uninstrument_all()


def _infersight_records(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "infersight"]


def test_out_of_range_version_logs_one_line_and_is_not_instrumented(
    clean: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    looked_up: list[str] = []

    def fake_version(distribution: str) -> str:
        looked_up.append(distribution)
        return "2.3.1"

    monkeypatch.setattr(_library, "installed_version", fake_version)
    caplog.set_level(logging.INFO, logger="infersight")
    instrument_all(["flask"])  # flask is imported: the check and the patching happen now
    assert looked_up == ["flask"]
    assert not is_wrapped(Flask.__dict__["__call__"])
    lines = _infersight_records(caplog)
    assert len(lines) == 1, lines
    assert "flask" in lines[0] and "2.3.1" in lines[0] and FLASK.requirement in lines[0]


def test_in_range_version_is_instrumented_silently(
    clean: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_library, "installed_version", lambda distribution: "3.1.0")
    caplog.set_level(logging.INFO, logger="infersight")
    instrument_all(["flask"])
    assert is_wrapped(Flask.__dict__["__call__"])
    assert _infersight_records(caplog) == []
    uninstrument_all()
    assert not is_wrapped(Flask.__dict__["__call__"])


def test_without_metadata_the_library_is_still_instrumented(clean: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_library, "installed_version", lambda distribution: None)
    instrument_all(["flask"])
    assert is_wrapped(Flask.__dict__["__call__"])


def test_supported_ranges_hold_the_installed_versions() -> None:
    for library in LIBRARIES:
        assert library.supports_installed(), library


def test_instrumentation_dependencies_come_from_the_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    deps = InfersightInstrumentor().instrumentation_dependencies()
    assert list(deps) == [library.requirement for library in LIBRARIES]
    assert {Requirement(dep).name for dep in deps} == {
        "flask",
        "starlette",
        "fastapi",
        "litserve",
        "bentoml",
        "ray",
        "grpcio",
        "tritonclient",
        "nvidia-pytriton",
        "requests",
        "httpx",
        "transformers",
    }
    extra = Library("extra", module="extra_lib", requirement="extra-lib >= 1.0", patcher="extra")
    monkeypatch.setattr(instrumentation, "LIBRARIES", (*LIBRARIES, extra))
    assert list(InfersightInstrumentor().instrumentation_dependencies())[-1] == "extra-lib >= 1.0"


def test_instrumentor_runs_with_a_listed_library_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each library is optional: BaseInstrumentor's all-or-nothing dependency check is skipped."""
    calls: list[dict[str, object]] = []

    class Probe(InfersightInstrumentor):  # type: ignore[misc]
        _instance = None  # BaseInstrumentor is a per-class singleton; not InfersightInstrumentor's

        def _instrument(self, **kwargs: object) -> None:
            calls.append(kwargs)

        def _uninstrument(self, **kwargs: object) -> None:
            pass

    missing = Library("missing", module="missing_lib", requirement="infersight-missing-lib >= 1", patcher="missing")
    monkeypatch.setattr(instrumentation, "LIBRARIES", (*LIBRARIES, missing))
    probe = Probe()
    probe.instrument()
    try:
        assert len(calls) == 1
    finally:
        probe.uninstrument()


def test_post_import_hook_runs_the_objects_instrument(clean: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A library added as one object: its hook fires when its module is first imported."""
    patched: list[str] = []
    patcher = types.ModuleType("infersight.instrumentation._probe_patcher")
    patcher.instrument = lambda: patched.append("instrument")  # type: ignore[attr-defined]
    patcher.uninstrument = lambda: patched.append("uninstrument")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, patcher.__name__, patcher)
    probe = Library(
        "probe", module="infersight_probe_lib", requirement="infersight-probe-lib >= 1", patcher="_probe_patcher"
    )
    monkeypatch.setattr(instrumentation, "LIBRARIES", (*LIBRARIES, probe))
    monkeypatch.setattr(_library, "installed_version", lambda distribution: "1.2")

    instrument_all(["probe"])
    assert patched == []  # not imported yet
    monkeypatch.setitem(sys.modules, "infersight_probe_lib", types.ModuleType("infersight_probe_lib"))
    import wrapt

    wrapt.notify_module_loaded(sys.modules["infersight_probe_lib"])  # what the import finder does
    assert patched == ["instrument"]
    uninstrument_all()
    assert patched == ["instrument", "uninstrument"]


HOOKS_SCRIPT = """
import json, sys
from infersight.instrumentation import LIBRARIES, instrument_all
from infersight.instrumentation._library import Library

fired = []
real = Library.instrument
def spy(self):
    fired.append([self.name, real(self)])
    return fired[-1][1]
Library.instrument = spy

before = sorted(l.module for l in LIBRARIES if l.module in sys.modules)
instrument_all()
assert fired == [], fired  # nothing imported yet, nothing patched
import flask, grpc, grpc.aio  # transformers: the hook is the same code, without torch's import time
import fastapi  # imports starlette.applications: FastAPI apps are Starlette apps
from starlette.applications import Starlette
from infersight.instrumentation._common import is_wrapped
print(json.dumps({"before": before, "fired": sorted(fired),
                  "flask": is_wrapped(flask.Flask.__dict__["__call__"]),
                  "starlette": is_wrapped(Starlette.__dict__["__call__"]),
                  "fastapi": is_wrapped(fastapi.FastAPI.__dict__["__init__"]),
                  "grpc": is_wrapped(vars(grpc)["server"]), "aio": is_wrapped(vars(grpc.aio)["server"])}))
"""


def test_hooks_fire_on_import_in_a_fresh_interpreter() -> None:
    result = subprocess.run([sys.executable, "-c", HOOKS_SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out == {
        "before": [],
        "fired": [["fastapi", True], ["flask", True], ["grpc", True], ["grpc_client", True], ["starlette", True]],
        "flask": True,
        "starlette": True,
        "fastapi": True,
        "grpc": True,
        "aio": True,
    }
