"""The rollout end to end on one machine: the local router, the golden set, MLflow and the registry.

Everything here is real except the two LLM servers, which are light OpenAI-chat stand-ins (an
answer per golden question, or 500s for a broken canary) so no model loads: the router is the real
app on uvicorn, the controller the real one with ``ProbeHealth`` and ``GoldenScorer`` over a golden
folder, recording to a real MLflow store (sqlite) whose registry holds twin-llm v1 (champion) and
v2 (challenger). ``test_local_canary_with_smollm2`` does the same with two real LLM servers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.rollout.conftest import serve_app
from tests.support.chat_stand_in import chat_stand_in

from twinops.infra.registry import CHALLENGER, CHAMPION, REJECTED_TAG
from twinops.rollout.plan import Thresholds
from twinops.rollout.runner import RolloutOptions, start_rollout
from twinops.services.process import free_port
from twinops.serving.router import RouterConfig, create_app

pytestmark = pytest.mark.slow  # serves the bundled models locally and runs a canary

GOLDEN = [
    ("What does Ada write about?", "Ada writes about compilers and type systems."),
    ("Which language does Ada prefer?", "Ada prefers OCaml for its type inference."),
    ("Where does Ada publish?", "Ada publishes essays on her own blog every month."),
]


def _llm_stand_in(broken: bool):
    answers = dict(GOLDEN)
    if broken:
        return chat_stand_in(lambda _question: (500, "CUDA out of memory"))
    return chat_stand_in(lambda question: (200, answers.get(question, "I write about many things.")))


@pytest.fixture
def golden_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "golden"
    folder.mkdir()
    rows = [{"instruction": q, "reference": a, "document_id": "d", "chunk_id": "c"} for q, a in GOLDEN]
    (folder / "test.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return folder


@pytest.fixture
def registry(mlflow_settings, tmp_path: Path):
    """twin-llm v1 (champion) and v2 (challenger), each a folder with a config.json."""
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_settings.mlflow_tracking_uri)
    client.create_registered_model("twin-llm")
    for number, alias in ((1, CHAMPION), (2, CHALLENGER)):
        folder = tmp_path / f"twin-llm-v{number}"
        folder.mkdir()
        (folder / "config.json").write_text('{"model_type": "llama"}', encoding="utf-8")
        version = client.create_model_version("twin-llm", source=str(folder), tags={"model_dir": str(folder)})
        client.set_registered_model_alias("twin-llm", alias, version.version)
    return client


@pytest.fixture(params=["healthy", "broken"])
def local_canary(request) -> Iterator[tuple[str, str, str, str]]:
    """(scenario, router URL, stable URL, canary URL) with the router at 0 % canary."""
    stable, stable_url, _ = _llm_stand_in(broken=False)
    canary, canary_url, _ = _llm_stand_in(broken=request.param == "broken")
    with serve_app(create_app(RouterConfig(stable=stable_url, canary=canary_url))) as router_url:
        yield request.param, router_url, stable_url, canary_url
    for backend in (stable, canary):
        backend.close()


def test_local_rollout_promotes_a_healthy_canary_and_rolls_back_a_broken_one(
    local_canary, registry, mlflow_settings, golden_folder
) -> None:
    scenario, router_url, stable_url, canary_url = local_canary
    options = RolloutOptions(isvc="twin-llm", router=router_url, golden=str(golden_folder), golden_limit=3)

    final = start_rollout(
        options, mlflow_settings, model_uri="models:/twin-llm@challenger", steps="50,100", interval="0s"
    )

    router = httpx.get(f"{router_url}/router/state", timeout=10).json()
    aliases = registry.get_registered_model("twin-llm").aliases
    experiment = registry.get_experiment_by_name("twinops-rollout")
    (run,) = registry.search_runs([experiment.experiment_id])
    assert final.model_uri == "models:/twin-llm/2"  # the alias pinned to its version at start
    assert final.baseline_score == pytest.approx(1.0)  # the stable answers every reference
    if scenario == "healthy":
        assert [d.action for d in final.decisions] == ["start", "step_up", "promote"]
        assert router == {**router, "stable": canary_url, "canary": None, "canary_percent": 0}
        assert aliases == {CHAMPION: 2}  # the release moved champion; challenger is spent
        assert run.data.tags["outcome"] == "promoted"
        history = registry.get_metric_history(run.info.run_id, "traffic_percent")
        assert [m.value for m in sorted(history, key=lambda m: m.step)] == [50, 100, 100]
    else:
        # One failed analysis holds the canary at its step; the second in a row rolls it back.
        assert [d.action for d in final.decisions] == ["start", "hold", "rollback"]
        reasons = " ".join(final.decisions[-1].reasons)
        assert "failed analysis 2 of 2" in reasons
        assert "could not be scored" in reasons and "errors 100.0% > 2.0%" in reasons
        assert router == {**router, "stable": stable_url, "canary": canary_url, "canary_percent": 0}
        assert aliases == {CHAMPION: 1}  # v2 lost challenger and is tagged rejected
        assert "errors 100.0%" in registry.get_model_version("twin-llm", "2").tags[REJECTED_TAG]
        assert run.data.tags["outcome"] == "rolled_back"
    assert sorted(k for k in run.data.tags if k.startswith("decision.")) == [
        f"decision.{n:02d}" for n in range(len(final.decisions))
    ]
    saved = json.loads((mlflow_settings.home / "rollout" / "twin-llm.json").read_text())
    assert saved["phase"] == final.phase


def test_the_local_release_says_which_version_serves_and_why(
    local_canary, registry, mlflow_settings, golden_folder
) -> None:
    """What `twinops run` ends with: the gate's nominee through a short canary on the router."""
    from twinops.rollout.runner import release_challenger

    scenario, router_url, _, _ = local_canary
    release = release_challenger(
        mlflow_settings,
        router_url=router_url,
        stable_label="twin-llm v1 (champion)",
        golden=str(golden_folder),
    )

    assert release.challenger == "twin-llm v2"
    if scenario == "healthy":
        assert release.state.phase == "promoted"
        assert release.serving == "twin-llm v2: its canary passed at 50,100% and it took 'champion'"
    else:
        assert release.state.phase == "rolled_back"
        assert release.serving.startswith(
            "twin-llm v1 (champion): the canary of twin-llm v2 was rolled back ("
        )
        assert "errors 100.0% > 2.0%" in release.serving


@pytest.mark.slow
def test_local_canary_with_smollm2(bundled_models_dir, mlflow_settings, golden_folder, tmp_path) -> None:
    """Two real LLM servers (the bundled SmolLM2 as both stable and canary) behind the real router,
    started the way `twinops serve llm --canary-dir` does, on free ports; the rollout promotes."""
    from twinops.services.process import port_in_use
    from twinops.serving.local import LocalServers

    def free_pair() -> int:
        return next(p for p in iter(free_port, None) if not port_in_use(p + 1))

    smollm = bundled_models_dir / "smollm2-135m-instruct"
    ports = (free_pair(), free_pair(), free_port())
    with LocalServers(mlflow_settings) as servers:
        router = servers.start_llm_canary(
            llm_args=["--model_dir", str(smollm)], canary_dir=smollm, canary_percent=0, ports=ports
        )
        # One short question and one probe per step: each answer takes seconds on two busy cores.
        options = RolloutOptions(
            isvc="twin-llm",
            router=router.url,
            golden=str(golden_folder),
            golden_limit=1,
            golden_max_tokens=8,
            probe_requests=1,
        )
        final = start_rollout(
            options,
            mlflow_settings,
            model_uri=str(smollm),
            steps="50,100",
            interval="0s",
            # A latency limit that can fail (900 s outlived the probe's own 60 s timeout, so it never
            # could): a short probe answers in about a second on a quiet machine, and 30 s leaves room
            # for two CPU-bound servers beside a test suite without judging nothing.
            thresholds=Thresholds(max_p95_latency_s=30),
        )
        state = httpx.get(f"{router.url}/router/state", timeout=10).json()

    assert [d.action for d in final.decisions] == ["start", "step_up", "promote"], final.decisions[-1].reasons
    # Greedy answers of the same model: the canary scores what the stable scored.
    assert all(d.score == pytest.approx(final.baseline_score) for d in final.decisions[1:])
    assert all(d.health.error_rate == 0.0 for d in final.decisions[1:])
    assert all(d.health.p95_latency_s is not None for d in final.decisions[1:]), "latency was judged"
    assert state["stable"] == f"http://127.0.0.1:{ports[1]}" and state["canary"] is None
