"""LLM-as-judge: accuracy and style on a 1-3 scale from an OpenAI-compatible endpoint.

Used only when ``TWINOPS_JUDGE_URL`` (and ``TWINOPS_JUDGE_MODEL``) are set; the evaluation says it
skipped the judge otherwise. The rubric is in ``prompts/judge.md``. Requests go through the
``openai`` SDK (``twinops.infra.llm_client``: retries, 429 with ``Retry-After``) and ask for
structured output, ``Verdict``; a reply that does not validate scores nothing (None).
"""

from __future__ import annotations

from pathlib import Path
from string import Template

from pydantic import BaseModel, Field, ValidationError

from twinops.infra.llm_client import CompletionFailed, Endpoint, chat_client, complete_json
from twinops.settings import Settings

PROMPT_FILE = Path(__file__).with_name("prompts") / "judge.md"


class Criterion(BaseModel):
    analysis: str = ""
    score: int = Field(ge=1, le=3)


class Verdict(BaseModel):
    """The judge's reply: one criterion for accuracy, one for style."""

    accuracy: Criterion
    style: Criterion


def judge_status(settings: Settings) -> str | None:
    """None when the judge can run, else why it is skipped."""
    if not settings.judge_url:
        return "skipped: TWINOPS_JUDGE_URL is not set"
    if not settings.judge_model:
        return "skipped: TWINOPS_JUDGE_MODEL is not set"
    return None


def parse_scores(content: str) -> tuple[int, int] | None:
    """(accuracy, style) from the judge's reply, or None when it is not a valid ``Verdict``."""
    try:
        verdict = Verdict.model_validate_json((content or "").strip())
    except ValidationError:
        return None
    return verdict.accuracy.score, verdict.style.score


class Judge:
    def __init__(self, settings: Settings, *, timeout: float = 60.0, max_retries: int = 2) -> None:
        self.endpoint = Endpoint(
            url=settings.judge_url or "",
            model=settings.judge_model or "",
            api_key=settings.judge_api_key,
            url_setting="TWINOPS_JUDGE_URL",
            model_setting="TWINOPS_JUDGE_MODEL",
            key_setting="TWINOPS_JUDGE_API_KEY",
        )
        self.model = self.endpoint.model
        self.url = self.endpoint.url.rstrip("/")
        self.client = chat_client(self.endpoint, timeout=timeout, max_retries=max_retries)
        self.template = Template(PROMPT_FILE.read_text(encoding="utf-8"))

    def close(self) -> None:
        self.client.close()

    def score(self, instruction: str, reference: str, answer: str) -> tuple[int, int] | None:
        prompt = self.template.safe_substitute(instruction=instruction, reference=reference, answer=answer)
        messages = [{"role": "user", "content": prompt}]
        try:
            content = complete_json(self.client, self.endpoint, messages, Verdict, max_tokens=256)
        except CompletionFailed:
            return None
        return parse_scores(content)
