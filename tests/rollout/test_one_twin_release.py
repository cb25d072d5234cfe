"""One twin's release leaves the other twins alone: on the local router, a canary scoped to one twin
(``canary_model``) takes only that twin's requests, its release moves only that twin's aliases, and
the other twin's answers are the same before, during and after.

Real router app on uvicorn, real controller, real MLflow registry (sqlite); the LLM servers are
light OpenAI-chat stand-ins that answer as a multi-twin server would (the answer depends on the
model named), so no model loads.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from tests.rollout.conftest import serve_app
from tests.support.chat_stand_in import ChatStandIn, chat_completion

from twinops.domain.twins import twin_model_name
from twinops.infra.registry import CHALLENGER, CHAMPION
from twinops.serving.router import RouterConfig, create_app, requested_model

pytestmark = pytest.mark.slow  # runs a canary through the controller

RELEASED = twin_model_name("Maren Oyelaran")
OTHER = twin_model_name("Ada Quill")
GOLDEN = [
    ("What do you watch at low tide?", "The pools, and the patience of limpets."),
    ("Why carry a notebook?", "Because the notebook makes me look."),
]


def _twin_server(name: str) -> tuple[ChatStandIn, str]:
    """A stand-in multi-twin server: each model answers its golden questions, tagged by server."""
    answers = dict(GOLDEN)

    def reply(path: str, body: dict) -> tuple[int, dict]:
        content = answers.get(body["messages"][-1]["content"], f"{name} answers as {body['model']}")
        return 200, chat_completion(content)

    server = ChatStandIn(reply)
    return server, server.root


def _ask(router_url: str, model: str) -> str:
    response = httpx.post(
        f"{router_url}/openai/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "Say something."}]},
        timeout=10,
    )
    response.raise_for_status()
    return response.json()["choices"][0]["message"]["content"]


@pytest.fixture
def two_twins(mlflow_settings, tmp_path: Path):
    """Both twins at v1 champion and v2 challenger."""
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_settings.mlflow_tracking_uri)
    for twin in (RELEASED, OTHER):
        client.create_registered_model(twin)
        for number, alias in ((1, CHAMPION), (2, CHALLENGER)):
            folder = tmp_path / f"{twin}-v{number}"
            folder.mkdir()
            (folder / "config.json").write_text('{"model_type": "llama"}', encoding="utf-8")
            version = client.create_model_version(twin, source=str(folder), tags={"model_dir": str(folder)})
            client.set_registered_model_alias(twin, alias, version.version)
    return client


def test_a_twins_release_leaves_the_other_twins_alias_and_answers_unchanged(
    two_twins, mlflow_settings, tmp_path: Path
) -> None:
    from twinops.rollout.runner import release_challenger

    golden = tmp_path / "golden"
    golden.mkdir()
    rows = [{"instruction": q, "reference": a, "document_id": "d", "chunk_id": "c"} for q, a in GOLDEN]
    (golden / "test.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    stable, stable_url = _twin_server("stable")
    canary, canary_url = _twin_server("canary")
    config = RouterConfig(stable=stable_url, canary=canary_url, canary_model=RELEASED)
    try:
        with serve_app(create_app(config, seed=1)) as router_url:
            before = [_ask(router_url, OTHER) for _ in range(5)]
            # The whole canary, at 100 % for its twin: the other twin's requests still never reach it.
            httpx.post(f"{router_url}/router/config", json={"canary_percent": 100}, timeout=10)
            assert _ask(router_url, RELEASED) == f"canary answers as {RELEASED}"
            during = [_ask(router_url, OTHER) for _ in range(20)]
            httpx.post(f"{router_url}/router/config", json={"canary_percent": 0}, timeout=10)

            release = release_challenger(
                mlflow_settings,
                router_url=router_url,
                stable_label=f"{RELEASED} v1 (champion)",
                golden=str(golden),
                golden_limit=2,
                twin=RELEASED,
            )
            after = [_ask(router_url, OTHER) for _ in range(5)]
            router = httpx.get(f"{router_url}/router/state", timeout=10).json()
    finally:
        for server in (stable, canary):
            server.close()

    assert release.state.phase == "promoted", release.serving
    assert two_twins.get_registered_model(RELEASED).aliases == {CHAMPION: 2}
    # The other twin: its aliases, its answers and its traffic are untouched.
    assert two_twins.get_registered_model(OTHER).aliases == {CHAMPION: 1, CHALLENGER: 2}
    assert set(before) == set(during) == set(after) == {f"stable answers as {OTHER}"}
    canary_models = [request["body"]["model"] for request in canary.requests]
    assert OTHER not in canary_models and RELEASED in canary_models
    # Promoted, a one-twin canary leaves the many-twin stable server in place (it follows the alias).
    assert router["stable"] == stable_url and router["canary"] is None and router["canary_model"] is None
    assert (mlflow_settings.home / "rollout" / f"{RELEASED}.json").is_file()
    assert not (mlflow_settings.home / "rollout" / f"{OTHER}.json").exists()


def test_the_router_reads_the_model_a_request_names() -> None:
    assert requested_model("/v2/models/twin-llm-bo/infer", b"") == "twin-llm-bo"
    assert requested_model("/v1/models/twin-llm:predict", b"{}") == "twin-llm"
    assert requested_model("/openai/v1/chat/completions", b'{"model": "twin-llm-bo"}') == "twin-llm-bo"
    assert requested_model("/openai/v1/chat/completions", b"not json") is None
    assert requested_model("/openai/v1/models", b"") is None


def test_a_canary_scoped_to_another_twin_is_refused(two_twins, mlflow_settings) -> None:
    from twinops.errors import ConfigError
    from twinops.rollout.runner import RolloutOptions, start_rollout

    stable, stable_url = _twin_server("stable")
    canary, canary_url = _twin_server("canary")
    config = RouterConfig(stable=stable_url, canary=canary_url, canary_model=RELEASED)
    try:
        with serve_app(create_app(config)) as router_url:
            options = RolloutOptions(isvc=OTHER, model_name=OTHER, router=router_url, golden=None)
            with pytest.raises(
                ConfigError, match=f"the local router's canary is {RELEASED}'s, not {OTHER}'s"
            ):
                start_rollout(
                    options,
                    mlflow_settings,
                    model_uri=f"models:/{OTHER}@challenger",
                    steps="100",
                    interval="0s",
                )
    finally:
        for server in (stable, canary):
            server.close()
    assert two_twins.get_registered_model(OTHER).aliases == {CHAMPION: 1, CHALLENGER: 2}
