"""The base LLM through transformers: the offline default (``make run``).

Greedy and batched with a small ``max_new_tokens`` so a 135M model turns a demo corpus into
datasets in minutes on two CPU cores. Small models do not follow JSON reliably, so this backend
asks in plain text and takes the first line (instructions) or the whole reply (answers).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from twinops.datasets.generators.base import Generated, Generator, ProgressCallback
from twinops.datasets.prompts import PromptTemplate
from twinops.datasets.text import first_line
from twinops.domain.hashing import content_hash
from twinops.models.resolve import llm_path
from twinops.settings import Settings


def _model_fingerprint(reference: str) -> str:
    path = Path(reference)
    if not (path / "config.json").exists():
        return content_hash(reference)[:12]
    weights = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin"))
    return content_hash(
        path.name, (path / "config.json").read_text(), [(w.name, w.stat().st_size) for w in weights]
    )[:12]


def free_cores() -> int:
    """Cores not already busy (load average), at least one.

    Decoding runs hundreds of small ops per token, each ending in a thread barrier; on cores that
    other processes already fill, every barrier waits for a descheduled thread, and two threads
    measured several times slower than one. Idle cores are used in full.
    """
    cores = os.cpu_count() or 1
    try:
        busy = round(os.getloadavg()[0])
    except OSError:  # no load average on this platform
        return cores
    return max(1, min(cores, cores - busy + 1))


class LocalGenerator(Generator):
    name = "local"

    def __init__(
        self,
        settings: Settings,
        *,
        batch_size: int = 8,
        max_new_tokens: int | None = None,
        threads: int | None = None,
    ) -> None:
        self._reference = llm_path(settings)  # fails early, with one line, when the model is missing
        self.batch_size = max(1, batch_size)
        self.threads = threads
        self.max_new_tokens = max_new_tokens
        self._model = None
        self._tokenizer = None

    @property
    def version(self) -> str:
        return _model_fingerprint(self._reference)

    def _load(self):
        if self._model is None:
            from twinops.models.loaders import load_causal_lm

            self._model, self._tokenizer = load_causal_lm(self._reference)
            self._model.eval()
            # Decoder-only models must be padded on the left for batched generation.
            self._tokenizer.padding_side = "left"
        return self._model, self._tokenizer

    def close(self) -> None:
        self._model = None
        self._tokenizer = None

    def generate(
        self,
        prompt: PromptTemplate,
        items: Sequence[dict[str, str]],
        *,
        on_progress: ProgressCallback | None = None,
    ) -> list[Generated]:
        if not items:
            return []
        _, tokenizer = self._load()
        texts = [
            tokenizer.apply_chat_template(prompt.messages(item), tokenize=False, add_generation_prompt=True)
            for item in items
        ]
        # Similar lengths in one batch waste less padding; results go back in input order.
        order = sorted(range(len(texts)), key=lambda index: len(texts[index]))
        results: list[Generated | None] = [None] * len(texts)
        max_new_tokens = self.max_new_tokens or prompt.max_new_tokens
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            replies = self._generate_batch(
                [texts[index] for index in batch], max_new_tokens, one_line=prompt.output == "instruction"
            )
            for index, reply in zip(batch, replies, strict=True):
                results[index] = Generated.ok(first_line(reply) if prompt.output == "instruction" else reply)
            if on_progress:
                on_progress(len(batch))
        return [result or Generated.drop("empty_output") for result in results]

    def _generate_batch(self, texts: list[str], max_new_tokens: int, *, one_line: bool) -> list[str]:
        import torch

        model, tokenizer = self._load()
        previous_threads = torch.get_num_threads()
        torch.set_num_threads(self.threads or free_cores())
        try:
            return self._decode(model, tokenizer, texts, max_new_tokens, one_line=one_line)
        finally:
            torch.set_num_threads(previous_threads)

    @staticmethod
    def _decode(model, tokenizer, texts: list[str], max_new_tokens: int, *, one_line: bool) -> list[str]:
        import torch

        encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            output = model.generate(
                **encoded,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                # Greedy decoding of small models loops; forbidding repeated 4-grams stops that.
                no_repeat_ngram_size=4,
                pad_token_id=tokenizer.pad_token_id,
                # A one-line answer is complete at its newline: stop decoding there.
                **({"stop_strings": ["\n"], "tokenizer": tokenizer} if one_line else {}),
            )
        new_tokens = output[:, encoded["input_ids"].shape[1] :]
        return [text.strip() for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
