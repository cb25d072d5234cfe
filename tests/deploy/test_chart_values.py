"""Bad chart values fail `helm template` before anything is rendered, naming the field to fix
(values.schema.json for types and enums, the templates for combinations)."""

from __future__ import annotations

import pytest
import yaml


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ("serving.llm.minReplicas=two", "serving.llm.minReplicas"),
        ("serving.llm.runtime=vllm", "serving.llm.runtime"),
        ("homePvc.size=lots", "homePvc.size"),
        ("homePvc.accessModes[0]=ReadWriteSometimes", "homePvc.accessModes"),
        ("images.tag=latest", "images.tag"),
        ("serving.reranker.maxReplicas=0", "serving.reranker.maxReplicas"),
        ("gpuNodePool.enabled=yes-please", "gpuNodePool.enabled"),
        ("serving.lm.minReplicas=1", "serving"),  # a misspelt key is refused, not ignored
        ("serving.rag.minReplicas=5", "serving.rag.minReplicas"),  # above maxReplicas (3)
        ("serving.llm.runtime=huggingface", "serving.llm.gpu=true"),  # vLLM needs the GPU pool
        ("driftDetector.enabled=no", "driftDetector.enabled"),
        ("rolloutController.args=--watch", "rolloutController.args"),
        # the predictors' loggers would post to no detector
        ("driftDetector.enabled=false", "serving.driftUrl"),
    ],
)
def test_bad_values_fail_naming_the_field(renders, setting: str, named: str) -> None:
    result = renders.helm_template("twinops", "--set", setting)
    assert result.returncode != 0, f"--set {setting} rendered"
    assert result.stdout == "", "nothing is rendered"
    assert named in result.stderr, result.stderr


def test_every_values_file_passes_the_schema(renders) -> None:
    for values in sorted(renders.chart.glob("values*.yaml")):
        result = renders.helm_template("twinops", "-f", str(values))
        assert result.returncode == 0, f"{values.name}: {result.stderr}"


def test_components_can_be_left_out(renders) -> None:
    """Without the rollout controller, or with the detector elsewhere, the rest still renders."""
    result = renders.helm_template(
        "twinops",
        "--set",
        "rolloutController.enabled=false",
        "--set",
        "driftDetector.enabled=false",
        "--set",
        "serving.driftUrl=http://drift.monitoring/",
    )
    assert result.returncode == 0, result.stderr
    objects = {
        (doc["kind"], doc["metadata"]["name"]): doc for doc in yaml.safe_load_all(result.stdout) if doc
    }
    assert not [key for key in objects if key[1] == "twinops-drift"]
    assert ("Deployment", "twinops-rollout") not in objects
    assert ("Role", "twinops-rollout") in objects, "the RBAC stays for `twinops rollout` as a pipeline step"
    loggers = {
        doc["spec"]["predictor"]["logger"]["url"]
        for doc in objects.values()
        if doc["kind"] == "InferenceService"
    }
    assert loggers == {"http://drift.monitoring/"}
