"""The OTLP exporter's own variables, checked at start-up.

The OTel exporters read ``OTEL_EXPORTER_OTLP_[TRACES_]HEADERS``, ``_COMPRESSION``,
``_CERTIFICATE``, ``_CLIENT_KEY`` and ``_CLIENT_CERTIFICATE`` themselves, and forgive too much:
a certificate file that doesn't exist is logged and TLS goes on with the system roots, a header
that doesn't parse is skipped, so spans are refused by the collector much later, with nothing
on the metrics. infersight checks each that is in effect for traces (the ``_TRACES_`` variant
wins), and for metrics when it pushes them over OTLP (``_METRICS_``); ``Config.from_env`` turns a
problem into a ``ConfigError`` naming the variable.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from urllib.parse import unquote

__all__ = ["Problem", "check"]


class Problem(ValueError):
    """A variable the exporter can't honour: ``setting`` names it, ``var`` is where it came from."""

    def __init__(self, setting: str, message: str, var: str) -> None:
        super().__init__(message)
        self.setting, self.message, self.var = setting, message, var


_PREFIX = "OTEL_EXPORTER_OTLP_"
# RFC 9110 token: what a header name may be made of.
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# The gRPC exporter knows only gzip; the HTTP one also deflate. Unset means none for both.
_COMPRESSIONS = {"grpc": ("gzip",), "http/protobuf": ("gzip", "deflate", "none")}


def _effective(env: Mapping[str, str], name: str, signal: str = "TRACES") -> tuple[str, str] | None:
    """(variable, value) for ``name``: the signal's variant (``_TRACES_``) if set, else the general one."""
    for var in (f"{_PREFIX}{signal}_{name}", f"{_PREFIX}{name}"):
        value = env.get(var, "").strip()
        if value:
            return var, value
    return None


def check(env: Mapping[str, str], protocol: str, signal: str = "TRACES") -> None:
    """Raise ``Problem`` for the first of these variables the exporter of ``signal`` (``TRACES``
    or ``METRICS``) can't honour."""
    found = _effective(env, "HEADERS", signal)
    if found:
        _check_headers(*found)
    found = _effective(env, "COMPRESSION", signal)
    if found:
        var, value = found
        allowed = _COMPRESSIONS.get(protocol, ("gzip",))
        if value.lower() not in allowed:
            hint = "; leave it unset for no compression" if "none" not in allowed else ""
            raise Problem(
                "otlp_compression",
                f"{value!r} is not one the {protocol} exporter supports ({', '.join(allowed)}){hint}",
                var,
            )
    files = {name: _effective(env, name, signal) for name in ("CERTIFICATE", "CLIENT_KEY", "CLIENT_CERTIFICATE")}
    for name, found in files.items():
        if found:
            var, path = found
            if not os.path.isfile(path) or not os.access(path, os.R_OK):
                raise Problem(f"otlp_{name.lower()}", f"{path!r} is not a readable file", var)
    key, cert = files["CLIENT_KEY"], files["CLIENT_CERTIFICATE"]
    if key is not None and cert is None:
        raise Problem("otlp_client_key", f"needs {_PREFIX}CLIENT_CERTIFICATE set too", key[0])
    if cert is not None and key is None:
        raise Problem("otlp_client_certificate", f"needs {_PREFIX}CLIENT_KEY set too", cert[0])


def _check_headers(var: str, raw: str) -> None:
    """``key1=value1,key2=value2`` (W3C Baggage form, values percent-encoded)."""
    for item in raw.split(","):
        if not item.strip():
            continue
        name, sep, _value = item.partition("=")
        name = unquote(name).strip()
        if not sep or not _TOKEN.match(name):
            raise Problem("otlp_headers", f"{item.strip()!r} is not a name=value header", var)
