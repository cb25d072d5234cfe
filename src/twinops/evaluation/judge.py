"""LLM-as-judge: accuracy and style on a 1-3 scale from an OpenAI-compatible endpoint.

Used only when ``TWINOPS_JUDGE_URL`` (and ``TWINOPS_JUDGE_MODEL``) are set; the evaluation says it
skipped the judge otherwise. The rubric is in ``prompts/judge.md``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from string import Template

import httpx

from twinops.errors import ConfigError, ServiceUnavailable
from twinops.settings import Settings

PROMPT_FILE = Path(__file__).with_name("prompts") / "judge.md"
_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


def judge_status(settings: Settings) -> str | None:
    """None when the judge can run, else why it is skipped."""
    if not settings.judge_url:
        return "skipped: TWINOPS_JUDGE_URL is not set"
    if not settings.judge_model:
        return "skipped: TWINOPS_JUDGE_MODEL is not set"
    return None


def parse_scores(content: str) -> tuple[int, int] | None:
    """(accuracy, style) from the judge's reply, or None when it is not the asked-for JSON."""
    match = _JSON_OBJECT.search(content or "")
    if not match:
        return None
    try:
        payload = json.loads(match.group(0))
        scores = int(payload["accuracy"]["score"]), int(payload["style"]["score"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    return scores if all(1 <= score <= 3 for score in scores) else None


class Judge:
    def __init__(self, settings: Settings, *, timeout: float = 60.0) -> None:
        self.model = settings.judge_model
        self.url = (settings.judge_url or "").rstrip("/")
        headers = {"Authorization": f"Bearer {settings.judge_api_key}"} if settings.judge_api_key else {}
        self.client = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)
        self.template = Template(PROMPT_FILE.read_text(encoding="utf-8"))

    def close(self) -> None:
        self.client.close()

    def score(self, instruction: str, reference: str, answer: str) -> tuple[int, int] | None:
        prompt = self.template.safe_substitute(instruction=instruction, reference=reference, answer=answer)
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": 0,
            "max_tokens": 256,
        }
        try:
            response = self.client.post("/chat/completions", json=body)
        except httpx.HTTPError as error:
            raise ServiceUnavailable(
                f"the judge at {self.url} is unreachable ({error.__class__.__name__}): fix TWINOPS_JUDGE_URL",
                setting="TWINOPS_JUDGE_URL",
            ) from error
        if response.status_code in (401, 403, 404):
            raise ConfigError(
                f"the judge at {self.url} answered {response.status_code} for model {self.model!r}: "
                "fix TWINOPS_JUDGE_URL / TWINOPS_JUDGE_MODEL / TWINOPS_JUDGE_API_KEY",
                setting="TWINOPS_JUDGE_URL",
            )
        if response.status_code >= 400:
            return None
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            return None
        return parse_scores(content)
