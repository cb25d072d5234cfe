"""Small text helpers the dataset builders share: words, n-grams, trimming, topic, similarity."""

from __future__ import annotations

import re
from difflib import SequenceMatcher

from twinops.domain.text import WORD as _WORD
from twinops.domain.text import words

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*)$")
_BLANK_LINES = re.compile(r"\n{3,}")

# Replies that refuse, or that talk about the source instead of asking for something.
_REFUSAL = re.compile(
    r"\b(as an ai|language model|i cannot|i can't|i can not|i'm sorry|i am sorry|i am unable|"
    r"i'm unable|cannot assist|can't help)\b",
    re.IGNORECASE,
)
_BOILERPLATE = re.compile(
    r"\b(the ((given|above|following|original|provided) )?(passage|text|excerpt|article|snippet)"
    r"|this (passage|text|excerpt)|the author)\b"
    r"|^(sure|certainly|here is|here's)\b|^this is an? (great|good|classic|perfect|excellent) example\b",
    re.IGNORECASE,
)


def word_ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    tokens = words(text)
    if len(tokens) < n:
        return {tuple(tokens)} if tokens else set()
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def sentences(text: str) -> list[str]:
    return [part.strip() for part in _SENTENCE_END.split(text.strip()) if part.strip()]


def truncate_words(text: str, max_words: int) -> str:
    """The first ``max_words`` words of ``text``, keeping its spacing (for prompt budgets)."""
    matches = list(_WORD.finditer(text))
    if len(matches) <= max_words:
        return text
    return text[: matches[max_words - 1].end()] + " ..."


def trim_answer(text: str, max_chars: int) -> str:
    """The author's text, lightly trimmed: no edge whitespace, no blank-line runs, cut at a sentence."""
    text = _BLANK_LINES.sub("\n\n", text.strip())
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    boundary = max(cut.rfind(". "), cut.rfind("! "), cut.rfind("? "), cut.rfind("\n"))
    # Keep the sentence boundary only when it does not throw most of the text away.
    return (cut[: boundary + 1] if boundary > max_chars // 2 else cut).rstrip()


def topic_of(text: str, title: str = "", max_words: int = 12) -> str:
    """A short topic phrase: a heading of the passage, else its first sentence, else the title."""
    for line in text.splitlines():
        heading = _HEADING.match(line)
        if heading and heading.group(1).strip():
            return _clean_topic(heading.group(1), max_words)
        if line.strip():
            break
    first = sentences(text)[0] if text.strip() else title
    return _clean_topic(first or title, max_words)


def _clean_topic(phrase: str, max_words: int) -> str:
    tokens = phrase.replace("#", " ").split()[:max_words]
    topic = " ".join(tokens).strip(" .,:;!?-\"'")
    if topic[:1].isupper() and not topic[1:2].isupper():
        topic = topic[0].lower() + topic[1:]
    return topic


def is_refusal(text: str) -> bool:
    return bool(_REFUSAL.search(text))


def is_boilerplate(text: str) -> bool:
    return bool(_BOILERPLATE.search(text.strip()))


def similarity(first: str, second: str) -> float:
    """Word-sequence similarity in [0, 1] (difflib ratio over casefolded words)."""
    return SequenceMatcher(None, words(first), words(second), autojunk=False).ratio()


def first_line(text: str) -> str:
    """The first non-empty line, without list markers, quotes or a leading label."""
    for raw in text.strip().splitlines():
        line = raw.strip().lstrip("-*0123456789.) ").strip()
        line = re.sub(r"^(request|instruction|question|task)\s*:\s*", "", line, flags=re.IGNORECASE)
        line = line.strip("\"'` ")
        if line:
            return line
    return ""
