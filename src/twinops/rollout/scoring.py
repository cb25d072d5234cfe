"""Scoring a served model on the golden set, as the controller's pluggable ``Scorer``.

A ``Scorer`` is any callable ``(openai_base_url, model_name) -> float`` (higher is better); the
controller calls it on the stable model once (the baseline) and on the canary at every step.
``GoldenScorer`` is the default and reuses the evaluation code: the questions of the latest golden
``DatasetVersion`` (``twinops.evaluation.data.load_golden``), answered greedily through the
server's OpenAI chat route (``twinops.serving.clients.ChatClient``), scored by mean ROUGE-L
against the references (``twinops.evaluation.metrics.rouge_l``). It is light on purpose: a few
questions, short answers, no judge and no embedder to load.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from twinops.settings import Settings

Scorer = Callable[[str, str], float]
GOLDEN_FLAG = "--golden"


class GoldenScorer:
    """Mean ROUGE-L of the served model's answers to the first ``limit`` golden questions."""

    def __init__(
        self, settings: Settings, *, golden: str = "latest", limit: int = 8, max_tokens: int = 64
    ) -> None:
        self.settings = settings
        self.golden = golden
        self.limit = limit
        self.max_tokens = max_tokens
        self._rows = None
        self.label: str | None = None

    def rows(self):
        """The golden rows, read once (a missing golden set is one ``NotFound`` line)."""
        if self._rows is None:
            from twinops.evaluation.data import load_golden

            self._rows, self.label = load_golden(self.golden, self.settings, self.limit)
        return self._rows

    def __call__(self, openai_url: str, model: str) -> float:
        from twinops.evaluation.metrics import mean, rouge_l

        rows = self.rows()
        answers = asyncio.run(self._answers(openai_url, model, [row.instruction for row in rows]))
        return mean(rouge_l(answers, [row.reference for row in rows]))

    async def _answers(self, openai_url: str, model: str, questions: list[str]) -> list[str]:
        from twinops.serving.clients import ChatClient

        async with ChatClient(openai_url, model, setting="--isvc") as chat:
            answers = []
            for question in questions:
                reply = await chat.chat(
                    [{"role": "user", "content": question}], max_tokens=self.max_tokens, temperature=0.0
                )
                answers.append(reply.text)
            return answers
