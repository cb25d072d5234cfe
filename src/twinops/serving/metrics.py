"""Prometheus metrics of the twinops servers, beside kserve's own request histograms.

kserve's ``/metrics`` route renders the default registry, so these appear there without a route of
their own. Names follow Prometheus conventions (``_total`` counters, ``_seconds`` histograms).
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

TOKENS_GENERATED = Counter("twinops_llm_tokens_generated_total", "Completion tokens generated.", ["model"])
TIME_TO_FIRST_TOKEN = Histogram(
    "twinops_llm_time_to_first_token_seconds",
    "From a request's arrival in the batch queue to its first generated token.",
    ["model"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
BATCH_SIZE = Histogram(
    "twinops_llm_batch_size",
    "Requests that got a token from one forward pass (continuous batching).",
    ["model"],
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32),
)
RERANK_PAIRS = Counter("twinops_rerank_pairs_total", "Query-document pairs scored.", ["model"])
EMBEDDED_TEXTS = Counter("twinops_embedded_texts_total", "Texts embedded.", ["model"])
RAG_STAGE_SECONDS = Histogram(
    "twinops_rag_stage_seconds",
    "Latency of each RAG stage (self_query, expand, embed, search, rerank, prompt, generate, log).",
    ["model", "stage"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
