"""Chunking with the real MiniLM tokenizer (the tokenizer only: fast)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from twinops.domain import Category, CleanedDocument, Platform
from twinops.errors import ConfigError
from twinops.features.chunking import Chunker
from twinops.features.jobs import ChunkerConfig

SENTENCE = "Chunk boundaries should follow the structure of the text rather than a fixed character count. "


@pytest.fixture(scope="module")
def tokenizer(bundled_models_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(bundled_models_dir / "all-minilm-l6-v2")


def _document(content: str, category: Category = Category.ARTICLES) -> CleanedDocument:
    return CleanedDocument(
        document_id="doc-1",
        author_id="author-1",
        author_name="Ada",
        platform=Platform.WEB,
        category=category,
        source_url="https://ada.dev/x",
        content=content,
        source_content_hash="h",
    )


def test_article_chunks_respect_size_headers_and_code(tokenizer) -> None:
    chunker = Chunker(tokenizer, ChunkerConfig(chunk_tokens=64, overlap_tokens=8), max_seq_length=256)
    code = "```python\ndef keep_me_whole(x):\n    return x + 1\n```"
    text = f"# Part one\n\n{SENTENCE * 6}\n\n# Part two\n\n{SENTENCE}\n\n{code}\n\n{SENTENCE * 2}"
    chunks = chunker.chunk(_document(text))
    assert len(chunks) >= 3
    assert all(0 < c.token_count <= 64 for c in chunks)
    assert [c.chunk_index for c in chunks] == list(range(len(chunks)))
    assert any(code in c.content for c in chunks), "a code block is never split when it fits"
    assert any(c.content.lstrip().startswith("# Part two") or "\n\n# Part two" in c.content for c in chunks)
    # Overlap: each chunk after the first starts with the tail of its predecessor.
    for previous, current in itertools.pairwise(chunks):
        head = current.content.split("\n\n")[0]
        assert head in previous.content
    # Deterministic ids.
    assert [c.id for c in chunker.chunk(_document(text))] == [c.id for c in chunks]


def test_short_post_stays_whole_and_long_one_splits(tokenizer) -> None:
    chunker = Chunker(tokenizer, ChunkerConfig(chunk_tokens=48, overlap_tokens=0), max_seq_length=256)
    short = "Shipped it!\nThanks to everyone who reviewed the design."
    assert [c.content for c in chunker.chunk(_document(short, Category.POSTS))] == [short]
    long_post = "\n\n".join([SENTENCE * 2] * 4)
    parts = chunker.chunk(_document(long_post, Category.POSTS))
    assert len(parts) > 1 and all(p.token_count <= 48 for p in parts)


def test_repository_chunks_keep_functions_together(tokenizer) -> None:
    chunker = Chunker(tokenizer, ChunkerConfig(chunk_tokens=48, overlap_tokens=0), max_seq_length=256)
    functions = [f"def function_{i}(a, b):\n    total = a + b\n\n    return total * {i}\n" for i in range(6)]
    chunks = chunker.chunk(_document("\n\n".join(functions), Category.REPOSITORIES))
    assert len(chunks) > 1
    for i in range(6):
        holders = [c for c in chunks if f"def function_{i}(" in c.content]
        assert len(holders) == 1 and f"return total * {i}" in holders[0].content


def test_oversize_unit_falls_back_to_token_windows(tokenizer) -> None:
    chunker = Chunker(tokenizer, ChunkerConfig(chunk_tokens=32, overlap_tokens=4), max_seq_length=256)
    wall = " ".join(f"word{i}" for i in range(300))  # one "sentence", far over the size
    chunks = chunker.chunk(_document(wall))
    assert len(chunks) > 3 and all(c.token_count <= 32 for c in chunks)


def test_chunks_larger_than_the_model_window_are_refused(tokenizer) -> None:
    with pytest.raises(ConfigError, match="chunk_tokens"):
        Chunker(tokenizer, ChunkerConfig(chunk_tokens=300), max_seq_length=256)
