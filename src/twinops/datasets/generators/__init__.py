"""Generator backends behind one interface: ``local`` (default), ``openai``, ``extractive``."""

from __future__ import annotations

from typing import Literal

from twinops.datasets.generators.base import Generated, Generator, ProgressCallback
from twinops.settings import Settings

GeneratorName = Literal["local", "openai", "extractive"]


def make_generator(
    name: GeneratorName, settings: Settings, *, batch_size: int = 8, threads: int | None = None
) -> Generator:
    """The backend called ``name``, configured from ``settings`` (heavy imports only when used)."""
    if name == "extractive":
        from twinops.datasets.generators.extractive import ExtractiveGenerator

        return ExtractiveGenerator()
    if name == "openai":
        from twinops.datasets.generators.openai import OpenAIGenerator

        return OpenAIGenerator.from_settings(settings, batch_size=batch_size)
    if name == "local":
        from twinops.datasets.generators.local import LocalGenerator

        return LocalGenerator(settings, batch_size=batch_size, threads=threads)
    from twinops.errors import ConfigError

    raise ConfigError(f"unknown generator {name!r}: use local, openai or extractive")


__all__ = ["Generated", "Generator", "GeneratorName", "ProgressCallback", "make_generator"]
