"""TWINOPS_HOME must be a folder this process can write: data, models, service state live there.

``ensure_home`` creates it when missing and proves it writable with a temporary file, so an
unwritable or read-only home fails once, with one line, before a command has written anything.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from twinops.errors import ConfigError
from twinops.settings import Settings


def ensure_home(settings: Settings) -> Path:
    """The home folder, created if missing; ``ConfigError`` naming TWINOPS_HOME when unwritable."""
    home = settings.home
    try:
        home.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=home):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ConfigError(
            f"TWINOPS_HOME={home} is not a writable folder ({reason}): set TWINOPS_HOME to a folder "
            "you can write, or fix its permissions",
            setting="TWINOPS_HOME",
        ) from error
    return home
