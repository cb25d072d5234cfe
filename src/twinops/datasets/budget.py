"""The generator within a time budget, batch by batch, with its progress told as it goes.

A model-backed generator (the local SmolLM2, an endpoint) is the slow part of the dataset step:
on 2 CPU cores each batch takes seconds, and 800 chunks used to take hours with nothing printed.
``GenerationRun`` calls it ``batch_size`` items at a time, so that:

- once ``budget_seconds`` have been spent on generation (all prompts together), every item not yet
  generated comes back dropped as ``budget_spent`` and the builder makes it from the templates: the
  step always ends, in about the budget plus the template work;
- after each batch a progress event goes out (``twinops.domain.progress.ProgressCallback``): items
  done of the total, and a note with rows made and dropped, the rate and the time left (the
  smaller of what the rate predicts and what the budget allows). The CLI and the pipeline
  component decide how to show it.

The items are sent in the order given, so the caller puts first what matters most.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from twinops.datasets.generators import Generated, Generator
from twinops.datasets.prompts import PromptTemplate
from twinops.domain.progress import ProgressCallback, duration

BUDGET_SPENT = "budget_spent"
# Checks one generated text; returns why it is unusable, or None. Only feeds the progress counts.
Check = Callable[[int, str], str | None]


class ProgressMeter:
    """Counts rows made and dropped for one step and reports them with a rate and time left."""

    def __init__(
        self,
        step: str,
        total: int,
        on_progress: ProgressCallback | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        deadline: float | None = None,
    ) -> None:
        self.step = step
        self.total = total
        self.made = 0
        self.dropped = 0
        self.templated = 0  # left to the templates when the budget ran out
        self._on_progress = on_progress
        self._clock = clock
        self._started = clock()
        self._deadline = deadline

    @property
    def done(self) -> int:
        return self.made + self.dropped + self.templated

    def rate(self) -> float:
        """Items per second so far (0 before the first one)."""
        elapsed = self._clock() - self._started
        return self.done / elapsed if elapsed > 0 and self.done else 0.0

    def seconds_left(self) -> float | None:
        """What the rate predicts for the rest, no more than the budget allows (None: unknown)."""
        rate = self.rate()
        left = (self.total - self.done) / rate if rate else (0.0 if self.done >= self.total else None)
        if self._deadline is not None:
            budget_left = max(0.0, self._deadline - self._clock())
            left = budget_left if left is None else min(left, budget_left)
        return left

    def note(self) -> str:
        left = self.seconds_left()
        templated = f", {self.templated} left to the templates (budget spent)" if self.templated else ""
        return (
            f"{self.made} made, {self.dropped} dropped{templated}, {self.rate():.2f} rows/s, "
            f"{'?' if left is None else duration(left)} left"
        )

    def advance(self, made: int = 0, dropped: int = 0, templated: int = 0) -> None:
        self.made += made
        self.dropped += dropped
        self.templated += templated
        if self._on_progress is not None:
            self._on_progress(self.step, self.done, self.total, self.note())


class GenerationRun:
    """``generator`` (None: templates only) limited to ``budget_seconds`` of generation in all."""

    def __init__(
        self,
        generator: Generator | None,
        *,
        budget_seconds: float | None,
        batch_size: int,
        on_progress: ProgressCallback | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.generator = generator
        self.batch_size = max(1, batch_size)
        self.on_progress = on_progress
        self._clock = clock
        self._budget = budget_seconds
        self._started = 0.0
        self._deadline: float | None = None  # set by the first generation: model loading counts
        self.seconds_spent = 0.0

    @property
    def available(self) -> bool:
        """Whether a generator is there and its budget is not spent yet."""
        if self.generator is None or (self._budget is not None and self._budget <= 0):
            return False
        return self._deadline is None or self._clock() < self._deadline

    def meter(self, step: str, total: int) -> ProgressMeter:
        return ProgressMeter(step, total, self.on_progress, clock=self._clock, deadline=self._deadline)

    def generate(
        self,
        prompt: PromptTemplate,
        items: Sequence[dict[str, str]],
        *,
        step: str,
        check: Check,
        share: float = 1.0,
    ) -> list[Generated]:
        """One result per item, in order; those the budget left no time for are ``budget_spent``.

        ``share``: this call stops once that fraction of the whole budget is spent (counted from
        the first generation), leaving the rest to later calls.
        """
        if self._deadline is None and self._budget is not None:
            self._started = self._clock()
            self._deadline = self._started + self._budget
        until = self._deadline
        if until is not None and share < 1.0:
            until = self._started + self._budget * share
        meter = ProgressMeter(step, len(items), self.on_progress, clock=self._clock, deadline=until)
        results: list[Generated] = []
        for start in range(0, len(items), self.batch_size):
            if not self.available or (until is not None and self._clock() >= until):
                break
            began = self._clock()
            batch = self.generator.generate(prompt, items[start : start + self.batch_size])
            self.seconds_spent += self._clock() - began
            usable = [
                result.text is not None and check(start + offset, result.text) is None
                for offset, result in enumerate(batch)
            ]
            results += batch
            meter.advance(made=sum(usable), dropped=len(batch) - sum(usable))
        if len(results) < len(items):
            skipped = len(items) - len(results)
            results += [Generated.drop(BUDGET_SPENT)] * skipped
            meter.advance(templated=skipped)
        return results
