"""`python -m twinops.rollout.lora`: the LLMInferenceService's adapter list (prod-lora) rendered
from the registry's champions, as the merge patch an operator applies; a moved champion changes its
own twin's entry only, and a version on another base prints no patch at all."""

from __future__ import annotations

import json
from pathlib import Path

from tests.serving.conftest import register_twin
from tests.support.one_line import one_line_error

from twinops.infra.registry import CHAMPION, client
from twinops.rollout.lora import main

BASE = "/var/lib/twinops/models/smollm2-135m-instruct"
ADA, BO = "twin-llm", "twin-llm-bo"


def _adapters(capsys) -> dict[str, str]:
    assert main(["--base-model", BASE, "--claim", "twinops-home"]) == 0
    patch = json.loads(capsys.readouterr().out)
    return {entry["name"]: entry["uri"] for entry in patch["spec"]["model"]["lora"]["adapters"]}


def test_the_patch_names_each_champion_adapter_and_a_release_moves_only_its_own(
    mlflow_settings, capsys
) -> None:
    home: Path = mlflow_settings.home
    register_twin(mlflow_settings, ADA, home / "runs/dpo/a1/adapter-on-base", Path(BASE))
    register_twin(mlflow_settings, BO, home / "runs/dpo/b1/adapter-on-base", Path(BASE))
    before = _adapters(capsys)
    assert before == {
        ADA: "pvc://twinops-home/runs/dpo/a1/adapter-on-base",
        BO: "pvc://twinops-home/runs/dpo/b1/adapter-on-base",
    }
    # Bo's next version is released (its champion moves); Ada's entry is what it was.
    version = register_twin(mlflow_settings, BO, home / "runs/dpo/b2/adapter-on-base", Path(BASE))
    client(mlflow_settings).set_registered_model_alias(BO, CHAMPION, version)
    after = _adapters(capsys)
    assert after[ADA] == before[ADA] and after[BO].endswith("/b2/adapter-on-base")


def test_a_champion_on_another_base_prints_no_patch(mlflow_settings, capsys) -> None:
    home: Path = mlflow_settings.home
    register_twin(mlflow_settings, ADA, home / "runs/dpo/a1/adapter-on-base", Path("/models/other"))
    line = one_line_error(main, ["--base-model", BASE, "--claim", "twinops-home"], capsys, "retrain it")
    assert line.startswith("error: twin-llm v1")
