"""Which registered model is whose twin: one LLM twin per author, each its own registry name.

Each author's twin is a registered model of its own, with its own gate, ``challenger``,
``champion``, drift reference and rollout: ``twin_model_name("Bo Lindqvist") == "twin-llm-bo-lindqvist"``.

The project's default author (``DEFAULT_AUTHOR``, the demo corpus's writer, what the pipelines
and ``twinops run`` take when no author is named) keeps the name ``twin-llm``, and so does a twin
trained on every author at once (no author). That name is what the deployed stack serves,
rolls out and watches (the InferenceService, the rollout controller, the drift detector and the
MLflow users Job in kustomize and the chart): keeping it for the default author leaves a
single-author deployment exactly as it was, and each further author adds a name beside it.
"""

from __future__ import annotations

from twinops.domain.text import slug

LLM_TWIN_PREFIX = "twin-llm"
DEFAULT_AUTHOR = "Ada Quill"


def twin_model_name(author: str | None) -> str:
    """The registered model of ``author``'s LLM twin (see the module docstring)."""
    name = (author or "").strip()
    if not name or slug(name) == slug(DEFAULT_AUTHOR):
        return LLM_TWIN_PREFIX
    return f"{LLM_TWIN_PREFIX}-{slug(name)}"


def is_twin_model_name(name: str) -> bool:
    """Whether ``name`` is an LLM twin's registered model (``twin-llm`` or ``twin-llm-<slug>``)."""
    return name == LLM_TWIN_PREFIX or (
        name.startswith(f"{LLM_TWIN_PREFIX}-") and slug(name) == name and name != f"{LLM_TWIN_PREFIX}-item"
    )
