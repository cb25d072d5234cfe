# ruff: noqa: B006, PLR0917
# KFP serializes parameter defaults into the pipeline spec (never mutated: B006) and passes
# every input by keyword (PLR0917).
"""The pipelines: feature (ingest → gate → embed → materialize), training (datasets → DAPT → SFT → DPO →
quantize → evaluate → register-and-gate → fit-drift-reference, plus the reranker branch), twin
(both, end to end), deployment (a canary rollout of the registered model, run after registration)
and drift (the drift report of current data against a registered version's reference).

Each pipeline is built by a factory so one definition serves two targets: ``cluster`` (the
compiled YAML: GPU placement, PVC, ConfigMap, Secret, retries, caching, and the quantize step as a
container in the quantize image) and ``local`` (``kfp.local``: the same graph with the quantize step
as a Python component that hands off to ``.venv-quantize``). ``@dsl.pipeline`` traces the function
when it is applied, so the target is fixed per factory call. (No ``from __future__ import
annotations`` here: kfp reads the pipeline signatures' annotations as real types.)
"""

from dataclasses import dataclass
from typing import Any, Literal

from kfp import dsl

from twinops.pipelines import components as c
from twinops.pipelines.gpu import DEFAULT_PROFILE, ClusterProfile, cpu_step, follower_step, gpu_step
from twinops.pipelines.params import (
    FEATURES_VERSION,
    FeatureParams,
    TrainingParams,
    fields_of,
    pipeline_signature,
    with_signature,
)
from twinops.pipelines.train_placement import TRAIN_IN_POD
from twinops.rollout.plan import DEFAULT_INTERVAL, DEFAULT_STEPS

Target = Literal["cluster", "local"]


@dataclass(frozen=True)
class Build:
    """How a pipeline is built: for which target, with which cluster placement."""

    target: Target = "cluster"
    profile: ClusterProfile = DEFAULT_PROFILE

    def _profile(self) -> ClusterProfile:
        # kfp.local honours retries: on one machine a failure is a bug to read, not a flaky node.
        return self.profile if self.target == "cluster" else self.profile.model_copy(update={"retries": 0})

    def place(self, task: Any, name: str, *, cache: bool) -> Any:
        task.set_display_name(name)
        profile = self._profile()
        if name in c.GPU_COMPONENTS:
            return gpu_step(task, profile, cache=cache)
        return cpu_step(task, profile, cache=cache)

    def follow(self, task: Any, name: str) -> Any:
        """A training step that follows its TrainJob: ``<name>-trainjob``, CPU-placed (cached)."""
        task.set_display_name(f"{name}-trainjob")
        return follower_step(task, self._profile(), cache=True)


def feature_steps(build: Build, *, author: Any, sources: Any, limit: Any, feature_options: Any) -> Any:
    """Add ingest → clean-and-gate → chunk-embed-load → feast-materialize; return the last task."""
    # Every feature step reads or writes live state (web, MongoDB, Qdrant, Feast): never cached.
    crawl = build.place(c.ingest(author=author, sources=sources, limit=limit), "ingest", cache=False)
    gate = build.place(
        c.clean_and_gate(author=author, crawl=crawl.outputs["crawl"], options=feature_options),
        "clean-and-gate",
        cache=False,
    )
    embed = build.place(
        c.chunk_embed_load(author=author, gate=gate.outputs["gate"], options=feature_options),
        "chunk-embed-load",
        cache=False,
    )
    return build.place(
        c.feast_materialize(features=embed.outputs["features"]), "feast-materialize", cache=False
    )


def trained_models(
    build: Build,
    *,
    datasets: Any,
    base_model: Any,
    dapt_epochs: Any,
    dapt_max_steps: Any,
    sft_epochs: Any,
    sft_max_steps: Any,
    dpo_epochs: Any,
    dpo_max_steps: Any,
    training_options: Any,
    train_on: Any,
    trainjob: Any,
) -> tuple[Any, Any]:
    """Add DAPT → SFT → DPO where ``train_on`` says; return the SFT and DPO model outputs.

    On the cluster, ``train_on`` (a pipeline input) picks one of two branches at run time:
    ``pod`` trains in GPU steps (Build.place), anything else runs the same components as CPU
    steps that follow a TrainJob (Build.follow: the job's pods hold the GPUs, the step holds
    none; an unknown value fails there in one line, without waiting for a GPU node). The branch
    that ran hands its models on through ``dsl.OneOf``. The local build has no branch: kfp.local
    2.17 cannot run a OneOf of artifacts ("Expected 1 artifact in ArtifactSelectorSpec. Got: 2")
    and a local run trains in-process (train_on=trainjob needs a cluster).
    """

    def sft_then_dpo(place: Any) -> tuple[Any, Any]:
        # The author's text first (continued pretraining), then SFT from the adapted model.
        dapt = place(
            c.dapt(
                instruction=datasets.outputs["instruction"],
                base_model=base_model,
                epochs=dapt_epochs,
                max_steps=dapt_max_steps,
                options=training_options,
                train_on=train_on,
                trainjob=trainjob,
            ),
            "dapt",
        )
        sft = place(
            c.sft(
                instruction=datasets.outputs["instruction"],
                start_model=dapt.outputs["model"],
                epochs=sft_epochs,
                max_steps=sft_max_steps,
                options=training_options,
                train_on=train_on,
                trainjob=trainjob,
            ),
            "sft",
        )
        dpo = place(
            c.dpo(
                sft_model=sft.outputs["model"],
                preference=datasets.outputs["preference"],
                epochs=dpo_epochs,
                max_steps=dpo_max_steps,
                options=training_options,
                train_on=train_on,
                trainjob=trainjob,
            ),
            "dpo",
        )
        return sft.outputs["model"], dpo.outputs["model"]

    def on_gpu(task: Any, name: str) -> Any:
        return build.place(task, name, cache=True)

    if build.target == "local":
        return sft_then_dpo(on_gpu)
    with dsl.If(train_on == TRAIN_IN_POD, name="train-in-pod"):
        in_pod = sft_then_dpo(on_gpu)
    with dsl.Else(name="train-as-trainjob"):
        as_trainjob = sft_then_dpo(build.follow)
    return dsl.OneOf(in_pod[0], as_trainjob[0]), dsl.OneOf(in_pod[1], as_trainjob[1])


def training_steps(
    build: Build,
    *,
    author: Any,
    features_version: Any,
    base_model: Any,
    max_chunks: Any,
    dapt_epochs: Any,
    dapt_max_steps: Any,
    sft_epochs: Any,
    sft_max_steps: Any,
    dpo_epochs: Any,
    dpo_max_steps: Any,
    reranker_max_steps: Any,
    quantize_bits: Any,
    eval_max_questions: Any,
    gate: Any,
    dataset_options: Any,
    training_options: Any,
    train_on: Any,
    trainjob: Any,
) -> Any:
    """Add datasets → DAPT → SFT → DPO → quantize → evaluate → register-and-gate → fit-drift-reference
    (+ reranker branch); return the register-and-gate task."""
    # Datasets read the warehouse (not cached); training steps take content-addressed dataset
    # versions and pointers as inputs, so KFP's cache is safe there and saves GPU hours.
    datasets = build.place(
        c.build_datasets(
            author=author, features_version=features_version, max_chunks=max_chunks, options=dataset_options
        ),
        "build-datasets",
        cache=False,
    )
    sft_model, dpo_model = trained_models(
        build,
        datasets=datasets,
        base_model=base_model,
        dapt_epochs=dapt_epochs,
        dapt_max_steps=dapt_max_steps,
        sft_epochs=sft_epochs,
        sft_max_steps=sft_max_steps,
        dpo_epochs=dpo_epochs,
        dpo_max_steps=dpo_max_steps,
        training_options=training_options,
        train_on=train_on,
        trainjob=trainjob,
    )
    quantize_component = c.quantize if build.target == "cluster" else c.quantize_local
    quantize = build.place(
        quantize_component(model=dpo_model, calibration=datasets.outputs["instruction"], bits=quantize_bits),
        "quantize",
        cache=True,
    )
    reranker = build.place(
        c.train_reranker(reranker=datasets.outputs["reranker"], max_steps=reranker_max_steps),
        "train-reranker",
        cache=True,
    )
    evaluation = build.place(
        c.evaluate(
            model=quantize.outputs["quantized"],
            sft_model=sft_model,
            dpo_model=dpo_model,
            base_model=base_model,
            golden=datasets.outputs["golden"],
            preference=datasets.outputs["preference"],
            reranker_model=reranker.outputs["model"],
            max_questions=eval_max_questions,
            author=author,
        ),
        "evaluate",
        cache=True,
    )
    registered = build.place(
        c.register_and_gate(
            model=quantize.outputs["quantized"],
            evaluation=evaluation.outputs["evaluation"],
            reranker_model=reranker.outputs["model"],
            gate=gate,
            author=author,
        ),
        "register-and-gate",
        cache=False,
    )
    # The registered version's drift detectors, saved beside it (the online detector reads them).
    build.place(
        c.fit_drift_reference(registered=registered.outputs["metrics"], author=author),
        "fit-drift-reference",
        cache=False,
    )
    return registered


def build_feature_pipeline(build: Build | None = None) -> Any:
    build = build or Build()
    signature, doc = pipeline_signature(FeatureParams)

    def feature_pipeline(params: dict[str, Any]) -> str:
        return feature_steps(build, **params).outputs["Output"]

    return dsl.pipeline(
        name="feature-pipeline",
        description="Feature side of the LLM Twin: crawl → clean and gate → chunk, embed, load → Feast.",
    )(with_signature(signature, doc, feature_pipeline))


def build_training_pipeline(build: Build | None = None) -> Any:
    build = build or Build()
    signature, doc = pipeline_signature(TrainingParams, extra=(FEATURES_VERSION,))

    def training_pipeline(params: dict[str, Any]) -> str:
        return training_steps(build, **params).outputs["Output"]

    return dsl.pipeline(
        name="training-pipeline",
        description=(
            "Training side of the LLM Twin: datasets → DAPT → SFT → DPO → GPTQ → evaluate → "
            "register and gate, with a reranker branch. Runs on the latest features by default."
        ),
    )(with_signature(signature, doc, training_pipeline))


def build_twin_pipeline(build: Build | None = None) -> Any:
    build = build or Build()
    signature, doc = pipeline_signature(FeatureParams, TrainingParams)

    def twin_pipeline(params: dict[str, Any]) -> str:
        materialized = feature_steps(build, **fields_of(FeatureParams, params))
        gate = training_steps(
            build, features_version=materialized.outputs["Output"], **fields_of(TrainingParams, params)
        )
        return gate.outputs["Output"]

    return dsl.pipeline(
        name="twin-pipeline",
        description=(
            "The LLM Twin end to end: the feature pipeline, then the training pipeline on the "
            "features it produced. The continuous-training entry point."
        ),
    )(with_signature(signature, doc, twin_pipeline))


def build_deployment_pipeline(build: Build | None = None) -> Any:
    build = build or Build()

    @dsl.pipeline(
        name="deployment-pipeline",
        description=(
            "Deployment of the LLM Twin after registration: a canary of the gate's nominee "
            "(challenger, pinned to its version at the start) on its KServe InferenceService, stepped "
            "up while it keeps its golden-set score, error rate and latency, then promoted (it takes "
            "champion) or rolled back (it is tagged rejected)."
        ),
    )
    def deployment_pipeline(
        isvc: str = "twin-llm",
        namespace: str = "twinops",
        model_uri: str = "models:/twin-llm@challenger",
        steps: str = DEFAULT_STEPS,
        interval: str = DEFAULT_INTERVAL,
        golden: str = "latest",
        thresholds: dict = {},
        approve_at: int = 0,
        health: str = "auto",
    ) -> str:
        # A rollout patches live traffic: never cached.
        task = build.place(
            c.rollout(
                isvc=isvc,
                namespace=namespace,
                model_uri=model_uri,
                steps=steps,
                interval=interval,
                golden=golden,
                thresholds=thresholds,
                approve_at=approve_at,
                health=health,
            ),
            "rollout",
            cache=False,
        )
        return task.outputs["Output"]

    return deployment_pipeline


def build_drift_pipeline(build: Build | None = None) -> Any:
    build = build or Build()

    @dsl.pipeline(
        name="drift-pipeline",
        description=(
            "Drift of what the twin sees now against what a registered version was trained and "
            "indexed on: embedding and feature drift, the evidently HTML as the step's "
            "visualization, the verdicts as metrics, both logged to MLflow."
        ),
    )
    def drift_pipeline(reference: str = "latest", current: str = "requests", options: dict = {}) -> bool:
        # The request log and the registry change between runs: never cached.
        task = build.place(
            c.drift_report(reference=reference, current=current, options=options), "drift-report", cache=False
        )
        return task.outputs["Output"]

    return drift_pipeline
