"""Cleaning per category, and the query normalizer inference shares with it (no skew).

Prose loses HTML/Markdown residue, boilerplate lines and odd unicode/whitespace; fenced code
blocks pass through untouched (indentation is meaning there). Markdown headers stay: the
article chunker splits on them. ``normalize_query`` runs the same prose steps on one line.
"""

from __future__ import annotations

import html
import re
import unicodedata

from twinops.domain.documents import Category
from twinops.features.jobs import CleaningConfig

_FENCE = re.compile(r"^(```|~~~)[^\n]*\n.*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
_ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad]")
# C0/C1 control characters except tab and newline (binary residue, terminal escapes).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_HTML_BLOCK = re.compile(r"<(script|style|nav|footer|iframe)\b.*?</\1\s*>", re.DOTALL | re.IGNORECASE)
_HTML_BREAK = re.compile(r"<\s*(br|/p|/div|/li|/h[1-6]|p|div|li)\b[^>]*>", re.IGNORECASE)
_HTML_TAG = re.compile(r"</?[a-zA-Z][a-zA-Z0-9-]*(\s[^<>]*)?/?>")
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\((?:[^()\s]|\([^)]*\))+(?:\s+\"[^\"]*\")?\)")
_REF_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s+\S+.*$", re.MULTILINE)
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_ITALIC = re.compile(r"(?<![\w*])([*_])(?=\S)([^*_\n]+?)(?<=\S)\1(?![\w*])")
_RULE = re.compile(r"^\s{0,3}([-*_])(\s*\1){2,}\s*$", re.MULTILINE)
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
_BLANK_LINES = re.compile(r"\n{3,}")

# Whole lines that are page furniture, not the author's writing (kept short on purpose: a long
# line that merely mentions "subscribe" is prose).
_BOILERPLATE = re.compile(
    r"^\s*(?:"
    r"(?:subscribe|sign up|sign in|log in|follow)(?: (?:now|here|me|us|for free|to [\w ]{0,40}))?[.!]?"
    r"|share(?: this)?(?: (?:post|article|on \w+))?[.!]?"
    r"|(?:like|comment|repost|share)(?:\s*[·|•]\s*(?:like|comment|repost|share))+"
    r"|(?:…|\.\.\.)\s*see more"
    r"|(?:this (?:site|website) uses cookies|we use cookies|accept (?:all )?cookies).{0,120}"
    r"|originally published (?:at|on) .{0,120}"
    r"|thanks for reading.{0,80}"
    r"|click here.{0,80}"
    r"|all rights reserved.{0,60}"
    r"|(?:©|\(c\)|copyright)\s*\d{4}.{0,80}"
    r"|\d+\s+(?:min(?:ute)? read|claps?|likes?|comments?|reactions?)"
    r")\s*$",
    re.IGNORECASE | re.MULTILINE,
)


def normalize_unicode(text: str) -> str:
    """NFKC, unix newlines, no zero-width or control characters."""
    text = unicodedata.normalize("NFKC", text.replace("\r\n", "\n").replace("\r", "\n"))
    return _CONTROL.sub("", _ZERO_WIDTH.sub("", text))


def _strip_markup(text: str, config: CleaningConfig) -> str:
    text = _HTML_COMMENT.sub("", text)
    text = _HTML_BLOCK.sub("", text)
    text = _HTML_BREAK.sub("\n", text)
    text = _HTML_TAG.sub("", text)
    text = html.unescape(text)
    text = _IMAGE.sub(r"\1", text)
    if config.strip_markdown_links:
        text = _LINK.sub(r"\1", text)
        text = _REF_DEF.sub("", text)
    if config.strip_emphasis:
        text = _BOLD.sub(r"\2", text)
        text = _ITALIC.sub(r"\2", text)
    return _RULE.sub("", text)


def _tidy_whitespace(text: str) -> str:
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def clean_prose(text: str, config: CleaningConfig | None = None) -> str:
    """Prose cleaning shared by documents and queries (no code blocks in ``text``)."""
    config = config or CleaningConfig()
    text = _strip_markup(normalize_unicode(text), config)
    if config.strip_boilerplate:
        text = _BOILERPLATE.sub("", text)
    return _tidy_whitespace(text)


def split_code_fences(text: str) -> list[tuple[bool, str]]:
    """``text`` as (is_code, segment) pieces; fenced code blocks are single pieces."""
    pieces: list[tuple[bool, str]] = []
    position = 0
    for match in _FENCE.finditer(text):
        if match.start() > position:
            pieces.append((False, text[position : match.start()]))
        pieces.append((True, match.group(0)))
        position = match.end()
    if position < len(text):
        pieces.append((False, text[position:]))
    return pieces


def _clean_code(code: str) -> str:
    # Code keeps indentation and blank lines; only trailing spaces and tabs-at-end go.
    return "\n".join(line.rstrip() for line in code.split("\n")).strip("\n")


def _clean_mixed(text: str, config: CleaningConfig) -> str:
    parts = []
    for is_code, segment in split_code_fences(normalize_unicode(text)):
        cleaned = _clean_code(segment) if is_code else clean_prose(segment, config)
        if cleaned:
            parts.append(cleaned)
    return "\n\n".join(parts)


def _clean_repository(text: str, config: CleaningConfig) -> str:
    """Repositories are mostly code: keep every line's indentation, drop machine noise."""
    text = normalize_unicode(text)
    if "```" in text or "~~~" in text:
        return _clean_mixed(text, config)
    # Minified or generated lines (no spaces over hundreds of characters) carry no style.
    lines = [line for line in text.split("\n") if not (len(line) > 400 and " " not in line)]
    return _BLANK_LINES.sub("\n\n", _clean_code("\n".join(lines)))


def clean_text(text: str, category: Category, config: CleaningConfig | None = None) -> str:
    """The cleaned body of a document of ``category``."""
    config = config or CleaningConfig()
    if category == Category.REPOSITORIES:
        return _clean_repository(text, config)
    return _clean_mixed(text, config)


def clean_title(title: str, config: CleaningConfig | None = None) -> str:
    return " ".join(clean_prose(title, config).split())


def normalize_query(text: str) -> str:
    """The inference-side normalizer: the documents' prose cleaning, collapsed to one line.

    Embedding a query with this (then ``load_embedder``) puts it in the same text space as the
    chunks, which went through ``clean_prose`` too.
    """
    config = CleaningConfig(strip_boilerplate=False)
    return " ".join(clean_prose(text, config).split())
