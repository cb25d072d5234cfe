"""Words of a text, as every part that compares texts by their words splits them."""

from __future__ import annotations

import re

WORD = re.compile(r"\w+(?:['\u2019]\w+)?", re.UNICODE)
_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def words(text: str) -> list[str]:
    """The casefolded words of ``text`` (letters, digits, underscores; inner apostrophes kept)."""
    return [word.casefold() for word in WORD.findall(text)]


def slug(text: str) -> str:
    """``text`` in lowercase letters and digits joined by '-' (``"item"`` when nothing is left)."""
    return _NOT_SLUG.sub("-", text.casefold()).strip("-") or "item"
