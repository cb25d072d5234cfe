"""The canary's share of traffic includes RAG's: RAG reaches the LLM through the weighted router.

On a cluster RAG calls the InferenceService's own route, which carries the canary weights; on one
machine `twinops serve all --canary-dir` points RAG at the local router. Here the real RAG server
process (over the planted index of test_rag_server.py) calls the real router app, which splits
between two OpenAI chat stand-ins at 50%; each answer says which backend wrote it
(``llm_backend``, from the router's ``x-twinops-backend``).
"""

from __future__ import annotations

import pytest
from tests.rollout.conftest import serve_app
from tests.serving.conftest import start_server
from tests.serving.test_rag_server import rag_env  # noqa: F401 - the planted index, a module fixture
from tests.support.chat_stand_in import chat_stand_in

from twinops.serving.local import LocalServers, ask_rag
from twinops.serving.router import RouterConfig, create_app

pytestmark = pytest.mark.slow
QUESTIONS = 40


def test_at_50_percent_about_half_of_the_rag_answers_come_from_the_canary(rag_env) -> None:  # noqa: F811
    stable, stable_url, _ = chat_stand_in(lambda _q: (200, "The stable model answers [1]."))
    canary, canary_url, _ = chat_stand_in(lambda _q: (200, "The canary model answers [1]."))
    config = RouterConfig(stable=stable_url, canary=canary_url, canary_percent=50)
    try:
        with serve_app(create_app(config, seed=11)) as router_url, LocalServers(rag_env) as servers:
            rag = start_server(
                servers, "rag", "--llm_url", f"{router_url}/openai/v1", "--index_refresh_seconds", "0"
            )
            answers = [
                ask_rag(rag.openai_url, f"How should registry aliases be used? ({number})", max_tokens=16)
                for number in range(QUESTIONS)
            ]
    finally:
        for backend in (stable, canary):
            backend.close()

    backends = [answer["llm_backend"] for answer in answers]
    from_canary = backends.count("canary")
    assert set(backends) == {"stable", "canary"}
    assert 0.35 * QUESTIONS <= from_canary <= 0.65 * QUESTIONS, backends
    # The text came from the backend the answer names.
    assert all(("canary" in a["answer"]) == (a["llm_backend"] == "canary") for a in answers)
