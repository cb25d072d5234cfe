"""Token-aware chunking with the embedder's own tokenizer, one strategy per category.

Articles (and exports) split on Markdown headers, then paragraphs; a fenced code block is one
unit. Posts stay whole when they fit. Repositories split at top-level definitions (a blank line
followed by an unindented line), so functions stay together. Units bigger than a chunk fall back
to sentences (prose) or lines (code), then to token windows. Every chunk after the first repeats
the last ``overlap_tokens`` tokens of its predecessor. Chunk ids are ``Chunk.id``: a UUID of
(document, cleaned content hash, index), so re-chunking the same text gives the same ids.
"""

from __future__ import annotations

import re
from typing import Protocol

from twinops.domain.documents import Category, Chunk, CleanedDocument, WritingOrigin
from twinops.errors import ConfigError
from twinops.features.cleaning import split_code_fences
from twinops.features.jobs import ChunkerConfig

_HEADER = re.compile(r"^#{1,6}\s+\S.*$", re.MULTILINE)
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+(?=\S)")
# A blank line, then an unindented line that is not a closing bracket: a new top-level unit.
_CODE_UNIT_BREAK = re.compile(r"\n\s*\n(?=[^\s)\]}])")


class HFTokenizer(Protocol):
    def __call__(self, text, **kwargs): ...


class TokenCounter:
    """Token counts and character offsets from a Hugging Face (fast) tokenizer."""

    def __init__(self, tokenizer: HFTokenizer) -> None:
        self._tokenizer = tokenizer

    def counts(self, texts: list[str]) -> list[int]:
        if not texts:
            return []
        encoded = self._tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [len(ids) for ids in encoded]

    def count(self, text: str) -> int:
        return self.counts([text])[0]

    def offsets(self, text: str) -> list[tuple[int, int]]:
        encoded = self._tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return [tuple(pair) for pair in encoded["offset_mapping"]]


def _article_units(text: str) -> list[tuple[bool, str]]:
    """(starts_section, unit) pairs: headers open sections, paragraphs and code blocks are units."""
    units: list[tuple[bool, str]] = []
    for is_code, segment in split_code_fences(text):
        if is_code:
            units.append((False, segment.strip("\n")))
            continue
        for raw_paragraph in _PARAGRAPH_BREAK.split(segment):
            paragraph = raw_paragraph.strip()
            if not paragraph:
                continue
            # A header glued to its first paragraph line still opens a section.
            pieces = _HEADER.split(paragraph)
            headers = _HEADER.findall(paragraph)
            if pieces and pieces[0].strip():
                units.append((False, pieces[0].strip()))
            for header, body in zip(headers, pieces[1:], strict=True):
                units.append((True, (header + "\n" + body.strip()).strip()))
    return units


def _repository_units(text: str) -> list[tuple[bool, str]]:
    units: list[tuple[bool, str]] = []
    for is_code, segment in split_code_fences(text):
        parts = [segment] if is_code else _CODE_UNIT_BREAK.split(segment)
        units += [(False, part.strip("\n")) for part in parts if part.strip()]
    return units


class Chunker:
    """Splits cleaned documents into ``Chunk``s no longer than ``chunk_tokens`` tokens."""

    def __init__(self, tokenizer: HFTokenizer, config: ChunkerConfig, *, max_seq_length: int | None) -> None:
        # [CLS] and [SEP] (or their equivalents) take two positions of the model's window.
        if max_seq_length is not None and config.chunk_tokens > max_seq_length - 2:
            raise ConfigError(
                f"chunking.chunk_tokens={config.chunk_tokens} exceeds the embedder's window "
                f"({max_seq_length} tokens incl. 2 special): lower chunking.chunk_tokens so chunks "
                "are not truncated"
            )
        self.config = config
        self.tokens = TokenCounter(tokenizer)

    def params(self) -> dict:
        return self.config.model_dump(mode="json")

    # --- splitting --------------------------------------------------------------------------
    def _windows(self, text: str, size: int) -> list[str]:
        offsets = [pair for pair in self.tokens.offsets(text) if pair[1] > pair[0]]
        stride = max(size - self.config.overlap_tokens, 1)
        windows = []
        for start in range(0, len(offsets), stride):
            window = offsets[start : start + size]
            windows.append(text[window[0][0] : window[-1][1]])
            if start + size >= len(offsets):
                break
        return windows

    def _split_oversize(self, unit: str, size: int, *, code: bool) -> list[str]:
        """Pieces of ``unit`` of at most ``size`` tokens: sentences or lines, then windows."""
        parts = unit.split("\n") if code else _SENTENCE_END.split(unit)
        joiner = "\n" if code else " "
        pieces: list[str] = []
        current: list[str] = []
        current_tokens = 0
        for part, tokens in zip(parts, self.tokens.counts(parts), strict=True):
            if tokens > size:
                if current:
                    pieces.append(joiner.join(current))
                    current, current_tokens = [], 0
                pieces += self._windows(part, size)
                continue
            if current and current_tokens + tokens > size:
                pieces.append(joiner.join(current))
                current, current_tokens = [], 0
            current.append(part)
            current_tokens += tokens
        if current:
            pieces.append(joiner.join(current))
        return [piece for piece in pieces if piece.strip()]

    def _tail(self, text: str) -> str:
        """The last ``overlap_tokens`` tokens of ``text``, starting at a word boundary."""
        if self.config.overlap_tokens == 0:
            return ""
        offsets = [pair for pair in self.tokens.offsets(text) if pair[1] > pair[0]]
        if len(offsets) <= self.config.overlap_tokens:
            return ""
        start = offsets[-self.config.overlap_tokens][0]
        while start < len(text) and start > 0 and not text[start - 1].isspace():
            start += 1
        return text[start:].strip()

    # --- packing ----------------------------------------------------------------------------
    def split_text(self, text: str, category: Category) -> list[str]:
        """The chunk texts of ``text`` (a cleaned document body) for ``category``."""
        size = self.config.chunk_tokens
        if not text.strip():
            return []
        if category == Category.POSTS and self.tokens.count(text) <= size:
            return [text.strip()]
        is_code = category == Category.REPOSITORIES
        units = _repository_units(text) if is_code else _article_units(text)
        # Room for the overlap carried into every chunk but the first.
        budget = size - self.config.overlap_tokens
        pieces: list[tuple[bool, str, int]] = []
        for (opens_section, unit), tokens in zip(
            units, self.tokens.counts([u for _, u in units]), strict=True
        ):
            if tokens <= budget:
                pieces.append((opens_section, unit, tokens))
                continue
            unit_is_code = is_code or unit.startswith(("```", "~~~"))
            for index, part in enumerate(self._split_oversize(unit, budget, code=unit_is_code)):
                pieces.append((opens_section and index == 0, part, self.tokens.count(part)))

        groups: list[list[str]] = []
        current: list[str] = []
        current_tokens = 0
        for opens_section, piece, tokens in pieces:
            section_break = opens_section and current_tokens >= self.config.min_chunk_tokens
            if current and (section_break or current_tokens + tokens > budget):
                groups.append(current)
                current, current_tokens = [], 0
            current.append(piece)
            current_tokens += tokens
        if current:
            # A tiny trailing piece reads better attached to its predecessor.
            if groups and current_tokens < self.config.min_chunk_tokens:
                merged = groups[-1] + current
                if self.tokens.count("\n\n".join(merged)) <= budget:
                    groups[-1] = merged
                    current = []
            if current:
                groups.append(current)

        texts: list[str] = []
        for group in groups:
            body = "\n\n".join(group)
            tail = self._tail(texts[-1]) if texts else ""
            texts.append(f"{tail}\n\n{body}" if tail else body)
        return texts

    def chunk(self, document: CleanedDocument) -> list[Chunk]:
        texts = self.split_text(document.content, document.category)
        counts = self.tokens.counts(texts)
        return [
            Chunk(
                **WritingOrigin.fields_of(document),
                chunk_index=index,
                content=text,
                token_count=tokens,
                document_content_hash=document.content_hash,
            )
            for index, (text, tokens) in enumerate(zip(texts, counts, strict=True))
        ]
