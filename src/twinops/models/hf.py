"""Small Hugging Face building blocks every loader shares (``loaders`` and ``gptq`` both import
them, so neither imports the other to get them)."""

from __future__ import annotations

from pathlib import Path


def load_tokenizer(reference: str | Path):
    """The model's tokenizer, with the EOS token as pad token where it has none (batching pads)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(reference)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def error_line(error: BaseException, limit: int = 300) -> str:
    """``Type: first line of the message``, cut to ``limit`` characters: an error inside one line."""
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
