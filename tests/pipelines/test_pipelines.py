"""Every pipeline compiles; the IR carries GPU placement on GPU steps only; checked-in YAML is fresh."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from twinops.pipelines.compile import compile_all, compile_pipeline
from twinops.pipelines.components import GPU_COMPONENTS
from twinops.pipelines.gpu import DEFAULT_PROFILE
from twinops.pipelines.images import ImageFamily, image
from twinops.pipelines.registry import get_pipeline, pipeline_names

pytestmark = pytest.mark.slow  # compiles the KFP pipelines and runs kfp.local

ROOT = Path(__file__).resolve().parents[2]
EXPECTED_TASKS = {
    "feature_pipeline": {"ingest", "clean-and-gate", "chunk-embed-load", "feast-materialize"},
    "training_pipeline": {
        "build-datasets",
        "dapt",
        "sft",
        "dpo",
        # train_on=trainjob: the same components as CPU steps that follow their TrainJob.
        "dapt-trainjob",
        "sft-trainjob",
        "dpo-trainjob",
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


def _walk(
    spec: dict, dag: dict | None = None, conditions: tuple[str, ...] = ()
) -> Iterator[tuple[dict, tuple]]:
    """Every container task of the pipeline, inside condition branches too, with the trigger
    conditions of the branches around it (outermost first)."""
    components = spec["components"]
    for task in (dag or spec["root"]["dag"])["tasks"].values():
        component = components[task["componentRef"]["name"]]
        condition = task.get("triggerPolicy", {}).get("condition")
        inner = (*conditions, condition) if condition else conditions
        if "dag" in component:
            yield from _walk(spec, component["dag"], inner)
        else:
            yield task, inner


def _tasks(spec: dict) -> dict[str, str]:
    """Step (display) name -> executor label, for every container task."""
    components = spec["components"]
    return {
        task["taskInfo"]["name"]: components[task["componentRef"]["name"]]["executorLabel"]
        for task, _ in _walk(spec)
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
    trained = {"dapt", "sft", "dpo", "dapt-trainjob", "sft-trainjob", "dpo-trainjob"}
    trained |= {"quantize", "train-reranker", "evaluate"}
    for task, _ in _walk(compiled[name]):
        task_name = task["taskInfo"]["name"]
        assert task["retryPolicy"]["maxRetryCount"] == DEFAULT_PROFILE.retries, task_name
        cached = task["cachingOptions"].get("enableCache", False)
        # Live-state steps are never cached; training on content-addressed inputs is.
        assert cached == (task_name in trained), task_name


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
    # Runs are sized by their data; the step ceilings keep `make run` within its budget.
    assert all(inputs[f"{stage}_max_steps"].default <= 60 for stage in ("dapt", "sft", "dpo"))


TRAINING = ["training_pipeline", "twin_pipeline"]


def _branches(spec: dict) -> dict[str, tuple[dict, str]]:
    """The train_on branches: step name -> (task, the condition it runs under)."""
    return {
        task["taskInfo"]["name"]: (task, conditions[-1])
        for task, conditions in _walk(spec)
        if conditions and "train_on" in conditions[-1]
    }


@pytest.mark.parametrize("name", TRAINING)
def test_sft_and_dpo_train_where_the_pipeline_parameters_say(name: str, compiled: dict[str, dict]) -> None:
    """train_on and trainjob are pipeline parameters (in the KFP pod by default) that reach every
    dapt, sft and dpo task, and train_on itself picks the branch that runs."""
    spec = compiled[name]
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    assert inputs["train_on"]["defaultValue"] == "pod"
    assert inputs["trainjob"]["parameterType"] == "STRUCT"
    group = next(
        task
        for task in spec["root"]["dag"]["tasks"].values()
        if "condition-branches" in task["taskInfo"]["name"]
    )
    for parameter in ("train_on", "trainjob"):
        assert group["inputs"]["parameters"][f"pipelinechannel--{parameter}"] == {
            "componentInputParameter": parameter
        }
    branches = _branches(spec)
    assert set(branches) == {"dapt", "sft", "dpo", "dapt-trainjob", "sft-trainjob", "dpo-trainjob"}
    pod = "inputs.parameter_values['pipelinechannel--train_on'] == 'pod'"
    for step, (task, condition) in branches.items():
        # The GPU steps run when train_on is pod; the followers otherwise (an unknown value fails
        # there, in one line, without a GPU).
        assert condition == (f"!({pod})" if step.endswith("-trainjob") else pod), step
        for parameter in ("train_on", "trainjob"):
            assert task["inputs"]["parameters"][parameter] == {
                "componentInputParameter": f"pipelinechannel--{parameter}"
            }, (step, parameter)


@pytest.mark.parametrize("name", TRAINING)
def test_trainjob_followers_hold_no_gpu(name: str, compiled: dict[str, dict]) -> None:
    """With train_on=trainjob the TrainJob's pods hold the GPUs: its sft and dpo steps ask for none,
    land on any node, run in the CPU image with small requests, and mount what every step mounts."""
    spec = compiled[name]
    executors = spec["deploymentSpec"]["executors"]
    platform = spec["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    tasks = _tasks(spec)
    for step in ("dapt", "sft", "dpo"):
        gpu, follower = executors[tasks[step]]["container"], executors[tasks[f"{step}-trainjob"]]["container"]
        assert gpu["resources"]["accelerator"]["resourceType"] == DEFAULT_PROFILE.accelerator_type
        assert platform[tasks[step]]["nodeSelector"]["labels"] == DEFAULT_PROFILE.gpu_node_selector
        assert gpu["image"] == image(ImageFamily.TRAIN)
        assert "accelerator" not in follower["resources"], step
        k8s = platform[tasks[f"{step}-trainjob"]]
        assert "nodeSelector" not in k8s and "tolerations" not in k8s, step
        assert follower["image"] == image(ImageFamily.DATA)
        assert follower["resources"]["resourceCpuRequest"] == DEFAULT_PROFILE.follower_cpu_request
        assert follower["resources"]["resourceMemoryLimit"] == DEFAULT_PROFILE.follower_memory_limit
        # The same program and the same volume, settings and credentials as the GPU step.
        assert follower["command"] == gpu["command"] and follower["args"] == gpu["args"]
        for key in ("pvcMount", "configMapAsEnv", "secretAsEnv"):
            assert k8s[key] == platform[tasks[step]][key], (step, key)


def _sources(spec: dict, consumer: str, artifact: str) -> set[str]:
    """The steps (``name.output``) that ``consumer``'s input ``artifact`` can come from, through
    the DAG outputs of condition groups (a OneOf lists one selector per branch)."""
    root = spec["root"]["dag"]["tasks"]
    task = next(task for task in root.values() if task["taskInfo"]["name"] == consumer)
    source = task["inputs"]["artifacts"][artifact]["taskOutputArtifact"]
    pending = [(root[source["producerTask"]], source["outputArtifactKey"])]
    found = set()
    while pending:
        producer, key = pending.pop()
        component = spec["components"][producer["componentRef"]["name"]]
        if "dag" not in component:
            found.add(f"{producer['taskInfo']['name']}.{key}")
            continue
        for selector in component["dag"]["outputs"]["artifacts"][key]["artifactSelectors"]:
            pending.append(
                (component["dag"]["tasks"][selector["producerSubtask"]], selector["outputArtifactKey"])
            )
    return found


@pytest.mark.parametrize("name", TRAINING)
def test_downstream_steps_take_the_model_of_the_branch_that_ran(name: str, compiled: dict[str, dict]) -> None:
    """quantize and evaluate read a OneOf of the two branches' models, whichever train_on ran."""
    spec = compiled[name]
    assert _sources(spec, "quantize", "model") == {"dpo.model", "dpo-trainjob.model"}
    assert _sources(spec, "evaluate", "dpo_model") == {"dpo.model", "dpo-trainjob.model"}
    assert _sources(spec, "evaluate", "sft_model") == {"sft.model", "sft-trainjob.model"}
    assert _sources(spec, "evaluate", "model") == {"quantize.quantized"}


def test_sft_starts_from_the_dapt_model_of_its_branch(compiled: dict[str, dict]) -> None:
    """Each branch chains dapt → sft: SFT starts from the model adapted to the author's text."""
    local = get_pipeline("training_pipeline", target="local").pipeline_spec.root.dag.tasks
    start = local["sft"].inputs.artifacts["start_model"].task_output_artifact
    assert (start.producer_task, start.output_artifact_key) == ("dapt", "model")
    for name in TRAINING:
        sources = {
            task["taskInfo"]["name"]: task["inputs"]["artifacts"]["start_model"]["taskOutputArtifact"]
            for task, _ in _walk(compiled[name])
            if task["taskInfo"]["name"] in {"sft", "sft-trainjob"}
        }
        # Each branch's sft reads its own branch's dapt task (keys dapt, dapt-2, ...).
        assert set(sources) == {"sft", "sft-trainjob"}, name
        assert all(
            s["producerTask"].startswith("dapt") and s["outputArtifactKey"] == "model"
            for s in sources.values()
        )
        assert len({s["producerTask"] for s in sources.values()}) == 2, name


def test_local_runs_train_without_the_branch() -> None:
    """kfp.local 2.17 cannot run a OneOf of artifacts, and trains in-process anyway: the local
    build chains sft → dpo → quantize directly."""
    local = get_pipeline("training_pipeline", target="local").pipeline_spec.root.dag.tasks
    assert {"sft", "dpo"} <= set(local)
    assert not any(task.trigger_policy.condition for task in local.values())
    model = local["quantize-local"].inputs.artifacts["model"].task_output_artifact
    assert (model.producer_task, model.output_artifact_key) == ("dpo", "model")
