"""Quality gates: each rejection carries a reason code that the run report counts.

Raw gates (empty, oversize, binary residue) run before cleaning so that the cleaner never sees
megabytes of garbage; text gates (length, language) run on the cleaned text. PII, duplicates and
contamination have their own modules and reasons.
"""

from __future__ import annotations

import re
from enum import StrEnum
from functools import lru_cache

from pydantic import BaseModel

from twinops.domain.documents import Category
from twinops.features.cleaning import split_code_fences
from twinops.features.jobs import GateConfig


class Reason(StrEnum):
    """Why a document was kept out of the features (stable codes: reports and tests key on them)."""

    EMPTY = "empty"
    OVERSIZE = "oversize"
    BINARY_RESIDUE = "binary_residue"
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    LANGUAGE = "language"
    PII = "pii"
    EXACT_DUPLICATE = "exact_duplicate"
    NEAR_DUPLICATE = "near_duplicate"
    CONTAMINATED = "contaminated"


class Rejection(BaseModel):
    reason: Reason
    detail: str


# Characters that only appear when bytes were decoded as text: controls (not tab/newline/CR),
# the replacement character and private-use code points.
_RESIDUE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd\ue000-\uf8ff]")
_WORD = re.compile(r"\w+", re.UNICODE)
# Too little prose to tell a language from (code-only repositories, one-line posts).
_MIN_PROSE_WORDS_FOR_LANGUAGE = 8


def word_count(text: str) -> int:
    return len(_WORD.findall(text))


def check_raw(content: str, config: GateConfig) -> Rejection | None:
    """Gates on the raw text, before cleaning."""
    if not content.strip():
        return Rejection(reason=Reason.EMPTY, detail="no content")
    size = len(content.encode("utf-8", errors="replace"))
    if size > config.max_bytes:
        return Rejection(
            reason=Reason.OVERSIZE,
            detail=f"{size} bytes > cap {config.max_bytes} (gates.max_bytes)",
        )
    residue = len(_RESIDUE.findall(content))
    ratio = residue / max(len(content), 1)
    if ratio > config.binary_residue_max_ratio:
        return Rejection(
            reason=Reason.BINARY_RESIDUE,
            detail=f"{ratio:.1%} control/replacement characters (> {config.binary_residue_max_ratio:.1%})",
        )
    return None


@lru_cache(maxsize=1)
def _identifier():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def prose_of(text: str) -> str:
    """The text outside fenced code blocks (what the language gate judges)."""
    return "\n".join(segment for is_code, segment in split_code_fences(text) if not is_code)


def detect_language(text: str) -> tuple[str | None, float]:
    """(ISO 639-1 code, confidence) of the prose in ``text``; (None, 0) when too little prose."""
    prose = prose_of(text)
    if word_count(prose) < _MIN_PROSE_WORDS_FOR_LANGUAGE:
        return None, 0.0
    language, confidence = _identifier().classify(prose[:20_000])
    return language, float(confidence)


def check_cleaned(text: str, category: Category, config: GateConfig) -> tuple[Rejection | None, str | None]:
    """Gates on the cleaned text: (rejection or None, detected language)."""
    words = word_count(text)
    if words == 0:
        return Rejection(reason=Reason.EMPTY, detail="nothing left after cleaning"), None
    if words < config.min_words:
        return Rejection(reason=Reason.TOO_SHORT, detail=f"{words} words < {config.min_words}"), None
    if words > config.max_words:
        return Rejection(reason=Reason.TOO_LONG, detail=f"{words} words > {config.max_words}"), None
    language, confidence = detect_language(text)
    # Repositories are judged on their prose only; pure code has no language to gate on.
    if config.languages and language is not None and category != Category.REPOSITORIES:
        allowed = language in config.languages and confidence >= config.min_language_confidence
        if not allowed:
            return (
                Rejection(
                    reason=Reason.LANGUAGE,
                    detail=f"detected {language} ({confidence:.2f}); allowed {','.join(config.languages)}",
                ),
                language,
            )
    return None, language
