"""The prod GPU path for many twins: prod-lora's LLMInferenceService validates against KServe's CRD
as the API server would apply it (tests/support/kube_api.py), a wrong field is refused, and the
adapter list a release writes keeps every other twin's entry as it was."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from tests.support.kube_api import custom_object_problems

from twinops.domain.versions import ModelVersion
from twinops.errors import ConfigError
from twinops.rollout.lora import adapter_entry, adapter_list, merge_patch, released_list

HOME = Path("/var/lib/twinops")
BASE = "/var/lib/twinops/models/smollm2-135m-instruct"


def _service(renders, renderer: str) -> dict:
    if not renders.kserve_crds.is_dir():
        pytest.skip(f"KServe CRDs not found at {renders.kserve_crds}: KServe kinds not validated")
    docs = renders.kustomize("prod-lora") if renderer == "kustomize" else renders.helm("prod-lora")
    (service,) = [doc for doc in docs if doc["kind"] == "LLMInferenceService"]
    return service


def _version(name: str, number: str, run: str) -> ModelVersion:
    return ModelVersion(
        name=name,
        version=number,
        source_uri=f"{HOME}/runs/gptq/{run}",
        base_model=BASE,
        adapter_dir=f"{HOME}/runs/dpo/{run}/adapter-on-base",
    )


def test_the_llm_inference_service_validates_against_the_crd(renders, renderer: str) -> None:
    service = _service(renders, renderer)
    assert service["apiVersion"] == "serving.kserve.io/v1alpha2"
    assert "adapters" in service["spec"]["model"]["lora"]
    assert custom_object_problems(service) == []


def test_a_wrong_field_in_the_llm_inference_service_is_refused(renders) -> None:
    service = _service(renders, "kustomize")
    misspelt = copy.deepcopy(service)
    misspelt["spec"]["model"]["lora"]["maxRanks"] = 64
    wrong_type = copy.deepcopy(service)
    wrong_type["spec"]["model"]["lora"]["maxRank"] = "large"
    below_minimum = copy.deepcopy(service)
    below_minimum["spec"]["model"]["lora"]["maxAdapters"] = 0
    no_uri = copy.deepcopy(service)
    del no_uri["spec"]["model"]["uri"]
    for bad in (misspelt, wrong_type, below_minimum, no_uri):
        assert custom_object_problems(bad), bad["spec"]["model"]


def test_a_twins_release_rolls_only_its_entry_of_the_adapter_list(renders) -> None:
    service = _service(renders, "kustomize")
    ada, maren = _version("twin-llm", "3", "dpo-a"), _version("twin-llm-maren-oyelaran", "1", "dpo-m")
    adapters = adapter_list([maren, ada], home=HOME, claim="twinops-home", base_model=BASE)
    assert adapters == [
        {"name": "twin-llm", "uri": "pvc://twinops-home/runs/dpo/dpo-a/adapter-on-base"},
        {"name": "twin-llm-maren-oyelaran", "uri": "pvc://twinops-home/runs/dpo/dpo-m/adapter-on-base"},
    ]
    released = released_list(
        adapters, adapter_entry(_version(maren.name, "2", "dpo-m2"), home=HOME, claim="twinops-home")
    )
    assert released[0] == adapters[0]  # the other twin's entry, as it was
    assert released[1]["uri"].endswith("/dpo-m2/adapter-on-base")

    # The patched object is still one the API server accepts.
    patched = copy.deepcopy(service)
    patched["spec"]["model"]["lora"].update(merge_patch(released)["spec"]["model"]["lora"])
    assert custom_object_problems(patched) == []


def test_an_adapter_on_another_base_or_off_the_volume_is_refused() -> None:
    other = _version("twin-llm", "3", "dpo-a").model_copy(update={"base_model": "/models/other"})
    with pytest.raises(ConfigError, match="not on the service's base"):
        adapter_list([other], home=HOME, claim="twinops-home", base_model=BASE)
    outside = _version("twin-llm", "3", "dpo-a").model_copy(update={"adapter_dir": "/tmp/adapter"})
    with pytest.raises(ConfigError, match="is not under TWINOPS_HOME"):
        adapter_list([outside], home=HOME, claim="twinops-home", base_model=BASE)
