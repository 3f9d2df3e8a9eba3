"""``import infersight.auto``: the one line. Configures from the environment and instruments
Flask, gRPC and transformers pipelines as the app imports them.

Invalid settings raise ``ConfigError`` here, at start-up, naming the variable.
"""

from __future__ import annotations

from ._startup import init
from .instrumentation import instrument_all

__all__: list[str] = []

init()
instrument_all()
