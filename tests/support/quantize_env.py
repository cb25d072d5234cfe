"""The GPTQ environment's interpreter, or a skip when `.venv-quantize` is absent (and only then)."""

from __future__ import annotations

from pathlib import Path

import pytest

from twinops.errors import ServiceUnavailable
from twinops.quantize.runner import quantize_python
from twinops.settings import Settings


def quantize_env_or_skip(settings: Settings) -> Path:
    """``.venv-quantize``'s python. Absent: skip (it is a separate make target). Present: whatever
    fails afterwards (gptqmodel, the job, the output) fails the test instead of hiding as a skip."""
    try:
        return quantize_python(settings)
    except ServiceUnavailable as error:
        pytest.skip(f"{error}")
