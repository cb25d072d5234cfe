"""Feast definitions of the twin's features: document stats, author stats, author prompt context.

A plain Feast repo file: ``feast -c <repo> apply`` reads it, and the feature pipeline applies the
same objects through the SDK after each run. Paths are relative to the repo folder (Feast resolves
them against ``repo_path``); the pipeline writes the parquet files under ``data/``.
Only stdlib, pandas and feast imports: Feast imports this file as a top-level module.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from feast import Entity, FeatureService, FeatureView, Field, FileSource, Project, RequestSource
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Array, Float32, Int64, String
from feast.value_type import ValueType

PROJECT_NAME = "twinops"
DOCUMENT_STATS_PATH = "data/document_stats.parquet"
AUTHOR_STATS_PATH = "data/author_stats.parquet"
# One count column per platform (twinops.domain.Platform values; kept literal so Feast can
# import this file without the twinops package on its path).
PLATFORMS = ("web", "medium", "substack", "linkedin", "git", "local")

project = Project(name=PROJECT_NAME, description="LLM Twin features: documents and authors")

author = Entity(name="author", join_keys=["author_id"], value_type=ValueType.STRING)
document = Entity(name="document", join_keys=["document_id"], value_type=ValueType.STRING)

document_stats_source = FileSource(
    name="document_stats_source",
    path=DOCUMENT_STATS_PATH,
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
)
author_stats_source = FileSource(
    name="author_stats_source",
    path=AUTHOR_STATS_PATH,
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
)

# ttl=0: stats stay valid until the next run replaces them (documents do not expire).
document_stats = FeatureView(
    name="document_stats",
    entities=[document],
    ttl=timedelta(0),
    schema=[
        Field(name="author_id", dtype=String),
        Field(name="platform", dtype=String),
        Field(name="category", dtype=String),
        Field(name="language", dtype=String),
        Field(name="length_chars", dtype=Int64),
        Field(name="length_words", dtype=Int64),
        Field(name="chunk_count", dtype=Int64),
        Field(name="age_days", dtype=Float32, description="Days since publication at the run."),
        Field(name="freshness", dtype=Float32, description="0.5 ** (age_days / 180): 1 = new."),
    ],
    online=True,
    source=document_stats_source,
    tags={"stage": "features"},
)

author_stats = FeatureView(
    name="author_stats",
    entities=[author],
    ttl=timedelta(0),
    schema=[
        Field(name="author_name", dtype=String),
        Field(name="documents_total", dtype=Int64),
        *[Field(name=f"documents_{platform}", dtype=Int64) for platform in PLATFORMS],
        Field(name="typical_length_words", dtype=Int64, description="Median words per document."),
        Field(name="top_topics", dtype=Array(String)),
    ],
    online=True,
    source=author_stats_source,
    tags={"stage": "features"},
)

prompt_request = RequestSource(
    name="prompt_request",
    schema=[Field(name="max_topics", dtype=Int64)],
)


@on_demand_feature_view(
    sources=[author_stats, prompt_request],
    schema=[Field(name="author_context", dtype=String)],
    mode="python",
)
def author_context(inputs: dict[str, Any]) -> dict[str, Any]:
    """One sentence per author that prompts use to set the twin's voice and subject matter."""
    # Self-contained on purpose: Feast stores this function's source and runs it without this
    # module's globals (at serving time too), so the platform list is repeated here.
    platforms = ("web", "medium", "substack", "linkedin", "git", "local")
    contexts = []
    for index, name in enumerate(inputs["author_name"]):
        limit = inputs["max_topics"][index] or 5
        topics = list(inputs["top_topics"][index] or [])[: int(limit)]
        per_platform = [
            f"{platform} ({inputs[f'documents_{platform}'][index]})"
            for platform in platforms
            if inputs[f"documents_{platform}"][index]
        ]
        contexts.append(
            f"You write as {name or 'the author'}. Typical length: "
            f"{inputs['typical_length_words'][index] or 0} words. "
            f"Writes on: {', '.join(per_platform) or 'no platform yet'}. "
            f"Topics: {', '.join(topics) or 'none yet'}."
        )
    return {"author_context": contexts}


twin_prompt_features = FeatureService(
    name="twin_prompt_features",
    features=[author_stats, author_context],
)
