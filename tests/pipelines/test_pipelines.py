"""Every pipeline compiles; the IR carries GPU placement on GPU steps only; checked-in YAML is fresh."""

from pathlib import Path

import pytest
import yaml

from twinops.pipelines.compile import compile_all, compile_pipeline
from twinops.pipelines.components import GPU_COMPONENTS
from twinops.pipelines.gpu import DEFAULT_PROFILE
from twinops.pipelines.registry import get_pipeline, pipeline_names

ROOT = Path(__file__).resolve().parents[2]
EXPECTED_TASKS = {
    "feature_pipeline": {"ingest", "clean-and-gate", "chunk-embed-load", "feast-materialize"},
    "training_pipeline": {
        "build-datasets",
        "sft",
        "dpo",
        "quantize",
        "train-reranker",
        "evaluate",
        "register-and-gate",
        "fit-drift-reference",
    },
}
EXPECTED_TASKS["twin_pipeline"] = EXPECTED_TASKS["feature_pipeline"] | EXPECTED_TASKS["training_pipeline"]
EXPECTED_TASKS["deployment_pipeline"] = {"rollout"}
EXPECTED_TASKS["drift_pipeline"] = {"drift-report"}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    folder = tmp_path_factory.mktemp("compiled")
    # The IR is two YAML documents: the pipeline spec, then the platform (Kubernetes) spec.
    return {
        path.stem: {key: value for doc in yaml.safe_load_all(path.read_text()) for key, value in doc.items()}
        for path in compile_all(folder)
    }


def _tasks(spec: dict) -> dict[str, str]:
    """Task name -> executor label."""
    components = spec["components"]
    return {
        name: components[task["componentRef"]["name"]]["executorLabel"]
        for name, task in spec["root"]["dag"]["tasks"].items()
    }


def _task_key(name: str) -> str:
    # Task names are the component names; the local quantize shape is the only renamed one.
    return name.removesuffix("-local")


@pytest.mark.parametrize("name", pipeline_names())
def test_pipeline_has_its_steps(name: str, compiled: dict[str, dict]) -> None:
    assert set(map(_task_key, _tasks(compiled[name]))) == EXPECTED_TASKS[name]


@pytest.mark.parametrize("name", pipeline_names())
def test_gpu_settings_on_gpu_steps_only(name: str, compiled: dict[str, dict]) -> None:
    spec = compiled[name]
    executors = spec["deploymentSpec"]["executors"]
    platform = spec["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for task, executor in _tasks(spec).items():
        resources = executors[executor]["container"].get("resources", {})
        k8s = platform[executor]
        if _task_key(task) in GPU_COMPONENTS:
            assert resources["accelerator"]["resourceType"] == DEFAULT_PROFILE.accelerator_type, task
            assert int(resources["accelerator"]["resourceCount"]) == DEFAULT_PROFILE.accelerator_limit
            assert k8s["nodeSelector"]["labels"] == DEFAULT_PROFILE.gpu_node_selector, task
            assert k8s["tolerations"][0]["key"] == "nvidia.com/gpu", task
        else:
            assert "accelerator" not in resources, f"CPU step {task} asks for a GPU"
            assert "nodeSelector" not in k8s and "tolerations" not in k8s, task
        # Every step: TWINOPS_HOME on the PVC, settings from the ConfigMap, credentials by reference.
        assert k8s["pvcMount"][0]["mountPath"] == DEFAULT_PROFILE.home_mount_path
        assert k8s["configMapAsEnv"][0]["configMapName"] == DEFAULT_PROFILE.config_map
        assert k8s["secretAsEnv"][0]["secretName"] == DEFAULT_PROFILE.secret_name


@pytest.mark.parametrize("name", pipeline_names())
def test_retries_and_caching(name: str, compiled: dict[str, dict]) -> None:
    tasks = compiled[name]["root"]["dag"]["tasks"]
    for task_name, task in tasks.items():
        assert task["retryPolicy"]["maxRetryCount"] == DEFAULT_PROFILE.retries, task_name
        cached = task["cachingOptions"].get("enableCache", False)
        # Live-state steps are never cached; training on content-addressed inputs is.
        assert cached == (task_name in {"sft", "dpo", "quantize", "train-reranker", "evaluate"}), task_name


def test_quantize_is_a_container_on_the_cluster_and_python_locally(compiled: dict[str, dict]) -> None:
    spec = compiled["training_pipeline"]
    executor = spec["deploymentSpec"]["executors"][_tasks(spec)["quantize"]]["container"]
    assert executor["command"] == ["python", "-m", "twinops.pipelines.quantize_step"]
    assert "twinops-quantize" in executor["image"]
    local = get_pipeline("training_pipeline", target="local")
    local_tasks = local.pipeline_spec.root.dag.tasks
    assert "quantize-local" in local_tasks or any("quantize" in name for name in local_tasks)
    executors = local.pipeline_spec.deployment_spec["executors"]
    commands = [" ".join(executor["container"]["command"]) for executor in executors.values()]
    assert all("kfp.dsl.executor_main" in command for command in commands), "local runs Python only"


def test_compiled_yaml_is_fresh(tmp_path: Path) -> None:
    for name in pipeline_names():
        fresh = compile_pipeline(name, tmp_path / f"{name}.yaml").read_text()
        checked_in = ROOT / "pipelines" / "compiled" / f"{name}.yaml"
        assert checked_in.is_file(), f"{checked_in} is missing: run `make pipelines`"
        assert checked_in.read_text() == fresh, f"{checked_in} is stale: run `make pipelines`"


def test_parameters_have_small_defaults() -> None:
    inputs = get_pipeline("twin_pipeline").component_spec.inputs
    for parameter in ("author", "sources", "base_model", "sft_max_steps", "dpo_max_steps", "max_chunks"):
        assert parameter in inputs
    assert inputs["sft_max_steps"].default <= 20 and inputs["dpo_max_steps"].default <= 20


@pytest.mark.parametrize("name", ["training_pipeline", "twin_pipeline"])
def test_sft_and_dpo_train_where_the_pipeline_parameters_say(name: str, compiled: dict[str, dict]) -> None:
    """train_on and trainjob are pipeline parameters (in the KFP pod by default) that reach both steps."""
    spec = compiled[name]
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    assert inputs["train_on"]["defaultValue"] == "pod"
    assert inputs["trainjob"]["parameterType"] == "STRUCT"
    tasks = spec["root"]["dag"]["tasks"]
    for step in ("sft", "dpo"):
        parameters = tasks[step]["inputs"]["parameters"]
        for parameter in ("train_on", "trainjob"):
            assert parameters[parameter] == {"componentInputParameter": parameter}, (step, parameter)
