"""Pipeline parameters: their one definition (names, types, defaults, descriptions), and the
``--param key=value`` pairs parsed, checked against a pipeline's inputs and converted to the
declared types, each problem as one clear line.

``FeatureParams`` and ``TrainingParams`` are the only place a parameter or its default is written:
the pipelines' signatures are generated from them (``pipeline_signature``), the twin pipeline
takes both, and ``configs/run/local.yaml`` holds only what a local run sets differently. The
defaults fit the demo corpus on 2 CPU cores (``make run``); a cluster run passes larger values.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from twinops.errors import ConfigError


class FeatureParams(BaseModel):
    """Parameters of the feature pipeline (the first half of the twin pipeline)."""

    model_config = ConfigDict(extra="forbid")

    author: str = Field("Ada Quill", description="The author whose writing is collected and modelled.")
    sources: list = Field(
        ["data/demo-corpus"], description="Sources to crawl: URLs, feeds, sitemaps, repositories, folders."
    )
    limit: int = Field(0, description="At most this many articles per feed or sitemap; 0 means no limit.")
    feature_options: dict = Field({}, description="FeatureJob fields (cleaning, gates, chunking, embedding).")


class TrainingParams(BaseModel):
    """Parameters of the training pipeline (the second half of the twin pipeline)."""

    model_config = ConfigDict(extra="forbid")

    author: str = Field("Ada Quill", description="The author whose writing is collected and modelled.")
    base_model: str = Field(
        "", description="Base LLM (HF id, folder or bundled:NAME); empty: TWINOPS_BASE_MODEL."
    )
    max_chunks: int = Field(48, description="Datasets from at most this many chunks; 0 means every chunk.")
    # Training runs are sized by their data (epochs over the rows the dataset step made), with a
    # ceiling on the steps so a larger corpus cannot stretch `make run`; see docs/training.md.
    dapt_epochs: float = Field(2.0, description="DAPT passes over the author's training passages (blocks).")
    dapt_max_steps: int = Field(40, description="Ceiling on DAPT optimizer steps (-1: none).")
    sft_epochs: float = Field(1.0, description="SFT passes over the instruction rows.")
    sft_max_steps: int = Field(30, description="Ceiling on SFT optimizer steps (-1: none).")
    dpo_epochs: float = Field(1.0, description="DPO passes over the preference rows.")
    dpo_max_steps: int = Field(12, description="Ceiling on DPO optimizer steps (-1: none).")
    reranker_max_steps: int = Field(10, description="Reranker optimizer steps (-1: full epochs).")
    quantize_bits: int = Field(4, description="GPTQ bits of the quantized twin.")
    eval_max_questions: int = Field(6, description="Golden questions the evaluation scores each model on.")
    gate: dict = Field(
        {}, description="A twin-llm gate replacing the project's; empty: configs/training/gate.yaml."
    )
    dataset_options: dict = Field(
        {"budget": "2m", "paraphrased_questions": "data/demo-questions.jsonl"},
        description="DatasetJob fields (generator, sizes, filters; budget: the generator's time in all, "
        "after which templates make the rows; paraphrased_questions: questions people wrote about the "
        "corpus, the demo's by default).",
    )
    training_options: dict = Field(
        {}, description="Training job fields shared by DAPT, SFT and DPO (trainer, lora)."
    )
    train_on: str = Field(
        "pod",
        description="Where SFT and DPO train: `pod` (the step's own GPU) or `trainjob` (a Kubeflow TrainJob)",
    )
    trainjob: dict = Field(
        {},
        description=(
            "TrainJob size with train_on=trainjob: num_nodes, gpus_per_node (1 each by default), "
            "runtime (default TWINOPS_TRAINJOB_RUNTIME)."
        ),
    )


FEATURES_VERSION = inspect.Parameter(
    "features_version", inspect.Parameter.POSITIONAL_OR_KEYWORD, default="", annotation=str
)
FEATURES_VERSION_HELP = "The features DatasetVersion to train on; empty: the latest."


def pipeline_signature(
    *groups: type[BaseModel], extra: tuple[inspect.Parameter, ...] = ()
) -> tuple[inspect.Signature, str]:
    """The signature (and the ``Args:`` docstring KFP reads descriptions from) of a pipeline taking
    every field of ``groups`` (a name shared by two groups once, with the first group's default)."""
    parameters: dict[str, inspect.Parameter] = {}
    helps: dict[str, str] = {}
    for group in groups:
        for name, field in group.model_fields.items():
            if name in parameters:
                continue
            parameters[name] = inspect.Parameter(
                name,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                default=field.get_default(call_default_factory=True),
                annotation=field.annotation,
            )
            helps[name] = field.description or ""
    for parameter in extra:
        parameters[parameter.name] = parameter
        helps.setdefault(parameter.name, FEATURES_VERSION_HELP if parameter is FEATURES_VERSION else "")
    doc = "Pipeline parameters.\n\nArgs:\n" + "".join(f"    {name}: {helps[name]}\n" for name in parameters)
    return inspect.Signature(list(parameters.values()), return_annotation=str), doc


def with_signature(
    signature: inspect.Signature, doc: str, body: Callable[[dict[str, Any]], Any]
) -> Callable[..., Any]:
    """A function with ``signature`` that hands its arguments to ``body`` as one mapping.

    KFP traces a pipeline by calling it with one placeholder per parameter, positionally, in the
    order of ``inspect.signature``; this keeps the parameter list in one place instead of one
    hand-written signature per pipeline.
    """

    def pipeline(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return body(dict(bound.arguments))

    pipeline.__signature__ = signature  # type: ignore[attr-defined]
    pipeline.__doc__ = doc
    return pipeline


def fields_of(group: type[BaseModel], values: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``values`` that are fields of ``group``."""
    return {name: values[name] for name in group.model_fields}


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_pairs(pairs: list[str] | None) -> dict[str, str]:
    params: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--param {pair!r} is not key=value: write e.g. --param author='Ada Quill'")
        params[key.strip()] = value
    return params


_EXPECTED = {
    "Integer": "an integer",
    "Float": "a number",
    "Boolean": "true or false",
    "List": "a JSON list or comma-separated values",
    "Dict": 'a JSON object like {"key": 1}',
}


def _boolean(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered not in _TRUE | _FALSE:
        raise ValueError(raw)
    return lowered in _TRUE


def _list(raw: str) -> list:
    if not raw.strip().startswith("["):
        return [item.strip() for item in raw.split(",") if item.strip()]
    value = json.loads(raw)
    if not isinstance(value, list):
        raise ValueError(raw)
    return value


def _dict(raw: str) -> dict:
    value = json.loads(raw or "{}")
    if not isinstance(value, dict):
        raise ValueError(raw)
    return value


_CONVERTERS = {"Integer": int, "Float": float, "Boolean": _boolean, "List": _list, "Dict": _dict}


def _convert(name: str, kind: str, raw: str) -> Any:
    converter = _CONVERTERS.get(kind)
    if converter is None:
        return raw
    try:
        return converter(raw)
    except (ValueError, json.JSONDecodeError) as error:
        raise ConfigError(f"--param {name}={raw!r} is not {_EXPECTED[kind]}: fix the value") from error


def coerce(pipeline: Any, raw: dict[str, str]) -> dict[str, Any]:
    """``raw`` converted to the types ``pipeline`` declares; unknown names are one clear line."""
    inputs = pipeline.component_spec.inputs or {}
    unknown = sorted(set(raw) - set(inputs))
    if unknown:
        raise ConfigError(
            f"pipeline {pipeline.name.replace('-', '_')} takes no parameter {', '.join(unknown)}: "
            f"it takes {', '.join(inputs) or 'none'}"
        )
    return {name: _convert(name, str(inputs[name].type), value) for name, value in raw.items()}


def describe(pipeline: Any) -> dict[str, dict[str, Any]]:
    """The pipeline's parameters with their types and defaults (for ``twinops pipeline list``)."""
    return {
        name: {"type": str(spec.type), "default": spec.default, "description": spec.description}
        for name, spec in (pipeline.component_spec.inputs or {}).items()
    }
