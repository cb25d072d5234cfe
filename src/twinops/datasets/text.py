"""Small text helpers the dataset builders share: words, n-grams, trimming, key phrases, similarity."""

from __future__ import annotations

import re
from difflib import SequenceMatcher

from twinops.domain.text import WORD as _WORD
from twinops.domain.text import words

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
# Where a sentence or a paragraph ends inside a text, and whether the text ends one.
_FIRST_BREAK = re.compile(r"[.!?][\"')\]]?\s+|\n\s*\n")
_ENDS_SENTENCE = re.compile(r"[.!?:;\"')\]`*]\s*$")
_PHRASE_TOKEN = re.compile(r"[\w][\w'\u2019+-]*|[^\w\s]", re.UNICODE)
_BLANK_LINES = re.compile(r"\n{3,}")

# Replies that refuse, or that talk about the source instead of asking for something. ("language
# model" alone is a topic the author may well write about; "as a language model" is a refusal.)
_REFUSAL = re.compile(
    r"\b(as an ai|(as|i am|i'm|i'm just|i am just) an? (ai|large )?language model|i cannot|i can't|"
    r"i can not|i'm sorry|i am sorry|i am unable|"
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


def clean_passage(text: str) -> str:
    """A chunk as an answer: no sentence cut at either edge, no blank-line runs.

    Chunks overlap and are cut by tokens, so one may open in the middle of a sentence ("exact
    dataset versions it saw and...") and stop in the middle of a word. The opening fragment goes
    when the text starts in lower case; the closing one when the text does not end a sentence.
    Either cut is skipped when it would throw away more than half of the text.
    """
    text = _BLANK_LINES.sub("\n\n", text.strip())
    if text[:1].islower():
        boundary = _FIRST_BREAK.search(text)
        if boundary and boundary.end() < len(text) // 2:
            text = text[boundary.end() :].lstrip()
    if text and not _ENDS_SENTENCE.search(text):
        last = max(text.rfind(mark) for mark in (". ", "! ", "? ", ".\n", "!\n", "?\n", ":\n"))
        if last > len(text) // 2:
            text = text[: last + 1]
    return text.strip()


def paragraphs(text: str) -> list[str]:
    """The blank-line separated paragraphs of ``text`` (list items of one list stay together)."""
    return [part.strip() for part in re.split(r"\n\s*\n", text) if part.strip()]


def stop_words() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return ENGLISH_STOP_WORDS


# Verb forms that end or open a run of content words ("the training step does", "kept getting
# wrong") without a tagger to tell them from nouns; past forms in -ed are caught by their suffix.
_VERBS = frozenset(
    (  # noqa: SIM905 - prose reads better than a list literal
        "does did gets got getting holds held goes went sent know knows knew say says said make makes "
        "made take takes took keep keeps kept come comes came look looks move moves run runs ran live "
        "lives submit submits need needs want wants feel feels find finds found give gives gave use uses "
        "seem seems become becomes became tell tells told start starts began end ends work works think "
        "thinks thought try tries let lets put puts sit sits stay stays turn turns show shows wrote "
        "write writes ask asks asked happen happens mean means means call calls read reads learn learns "
        "learned is are was were be been being has have had"
    ).split()
)


def _trim_verbs(run: list[str]) -> list[str]:
    def verb(word: str) -> bool:
        word = word.casefold()
        return word in _VERBS or (len(word) > 4 and word.endswith(("ed", "ly")))

    while run and verb(run[-1]):
        run = run[:-1]
    while run and verb(run[0]) and len(run) > 1:
        run = run[1:]
    return run


def key_phrases(text: str, count: int = 3, max_words: int = 3, context: str = "") -> list[str]:
    """The ``count`` phrases that best say what ``text`` is about (RAKE: Rose et al., 2010).

    Candidates are the runs of content words between stop words and punctuation, at most
    ``max_words`` long, without verb forms at their edges (``_VERBS``, -ed, -ly); a word scores its
    degree over its frequency (words that occur inside longer phrases score higher), a phrase the
    sum of its words, times how often a phrase of two words or more occurs in ``context`` (the whole
    document: what the author repeats is what they write about, and repeated phrases are nearly
    always nouns). Words
    keep their case unless they are ordinary words capitalised only because a sentence starts with
    them.
    """
    stop = stop_words()
    candidates: list[list[str]] = []
    for sentence in sentences(text.replace("#", " ")):
        run: list[str] = []
        for position, token in enumerate(_PHRASE_TOKEN.findall(sentence)):
            word = token.casefold()
            if not token[0].isalnum() or word in stop or word.isdigit() or (len(word) < 3 and not run):
                if run:
                    candidates.append(run)
                run = []
                continue
            run.append(token.lower() if position == 0 and token[1:].islower() else token)
        if run:
            candidates.append(run)
    candidates = [run for run in map(_trim_verbs, candidates) if run and len(run) <= max_words]
    frequency: dict[str, int] = {}
    degree: dict[str, int] = {}
    for run in candidates:
        for word in run:
            key = word.casefold()
            frequency[key] = frequency.get(key, 0) + 1
            degree[key] = degree.get(key, 0) + len(run)
    scored: dict[str, float] = {}
    for run in candidates:
        phrase = " ".join(run)
        if phrase.casefold() not in {known.casefold() for known in scored}:
            repeats = 1
            if len(run) > 1:  # a repeated single word is as often a verb or a filler
                pattern = r"\b" + re.escape(phrase.casefold()) + r"\b"
                repeats = max(1, len(re.findall(pattern, (context or text).casefold())))
            scored[phrase] = repeats * sum(degree[w.casefold()] / frequency[w.casefold()] for w in run)
    # Highest score first; ties keep the order of appearance.
    return sorted(scored, key=lambda phrase: -scored[phrase])[:count]


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
