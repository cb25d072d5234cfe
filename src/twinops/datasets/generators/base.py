"""The one interface every generator backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

from pydantic import BaseModel, ConfigDict

from twinops.datasets.prompts import PromptTemplate

# Called after each finished item so the CLI can advance a progress bar.
ProgressCallback = Callable[[int], None]


class Generated(BaseModel):
    """One generation: ``text`` when it worked, else ``dropped`` names the reason."""

    model_config = ConfigDict(frozen=True)

    text: str | None = None
    dropped: str | None = None

    @classmethod
    def ok(cls, text: str) -> Generated:
        return cls(text=text) if text.strip() else cls(dropped="empty_output")

    @classmethod
    def drop(cls, reason: str) -> Generated:
        return cls(dropped=reason)


class Generator(ABC):
    """Fills a versioned prompt for many items and returns one ``Generated`` per item, in order.

    Backends never raise for one bad item (a timeout, invalid JSON): that item comes back with
    ``dropped`` set. They raise ``TwinopsError`` only for problems that would fail every item.
    """

    name: str
    # True for a backend of rules whose output is the dataset templates themselves: the builder
    # then makes every row from the templates and counts them as such, never as generated.
    templated: bool = False

    @property
    @abstractmethod
    def version(self) -> str:
        """What identifies this backend's behaviour (model and weights, endpoint model, rules)."""

    @property
    def ref(self) -> str:
        return f"generator:{self.name}@{self.version}"

    @abstractmethod
    def generate(
        self,
        prompt: PromptTemplate,
        items: Sequence[dict[str, str]],
        *,
        on_progress: ProgressCallback | None = None,
    ) -> list[Generated]:
        """One result per item of ``items`` (each the variables of ``prompt``)."""

    def close(self) -> None:  # noqa: B027 - most backends hold nothing to release
        """Release clients or models; the builder calls it when done."""
