"""Words of a text, as every part that compares texts by their words splits them."""

from __future__ import annotations

import re

WORD = re.compile(r"\w+(?:['\u2019]\w+)?", re.UNICODE)


def words(text: str) -> list[str]:
    """The casefolded words of ``text`` (letters, digits, underscores; inner apostrophes kept)."""
    return [word.casefold() for word in WORD.findall(text)]
