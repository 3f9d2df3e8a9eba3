"""One instrumented library: its name, the module whose import patches it, the versions we
support and the module of ours that patches it (as contrib's ``package.py``).

The version is checked against the installed distribution when the library is imported: a
version we don't know gets one log line and is left alone, rather than patched and broken.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from importlib import metadata

from packaging.requirements import Requirement  # a dependency of opentelemetry-instrumentation
from packaging.version import InvalidVersion, Version

__all__ = ["Library", "installed_version"]

logger = logging.getLogger("infersight")


def installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution``, None when its metadata can't be found."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


@dataclass(frozen=True)
class Library:
    """``Library("flask", "flask", "flask >= 3.0", "flask")``: adding a library is adding one."""

    name: str  # as in instrument_all([...]) and INFERSIGHT_DISABLED_INSTRUMENTATIONS
    module: str  # importing it runs the patching (a wrapt post-import hook)
    requirement: str  # the distribution and the versions we support, as pip writes them
    patcher: str  # our module, under infersight.instrumentation, with instrument() and uninstrument()

    def supports_installed(self) -> bool:
        """False, with one log line, when the installed version is outside the supported range.
        Without metadata (a vendored copy) the library is patched, as before versions were checked."""
        requirement = Requirement(self.requirement)
        found = installed_version(requirement.name)
        if found is None:
            return True
        try:
            ok = requirement.specifier.contains(Version(found), prereleases=True)
        except InvalidVersion:
            ok = False
        if not ok:
            logger.warning(
                "infersight: not instrumenting %s %s: infersight supports %s", self.name, found, self.requirement
            )
        return ok

    def instrument(self) -> bool:
        """Patch the library if its version is supported; whether it was patched."""
        if not self.supports_installed():
            return False
        importlib.import_module(f"{__package__}.{self.patcher}").instrument()
        return True

    def uninstrument(self) -> None:
        importlib.import_module(f"{__package__}.{self.patcher}").uninstrument()
