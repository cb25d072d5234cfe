"""Prometheus metrics of the twinops servers, beside kserve's own request histograms.

kserve's ``/metrics`` route renders the default registry, so these appear there without a route of
their own. Names follow Prometheus conventions (``_total`` counters, ``_seconds`` histograms).

The weighted router (``twinops.serving.router``) counts its answers per backend (``stable`` or
``canary``) in ``RouterMetrics``: what ``twinops rollout --router`` reads from Prometheus when
``TWINOPS_PROMETHEUS_URL`` is set (``twinops.rollout.health.LOCAL_ERROR_QUERY`` and its siblings).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
# Many twins on one base (``twinops.serving.twins``): each twin's champion adapter, followed live.
ADAPTER_VERSION = Gauge(
    "twinops_llm_adapter_version", "Registry version of the adapter a twin serves.", ["model"]
)
ADAPTER_SWITCH_SECONDS = Histogram(
    "twinops_llm_adapter_switch_seconds",
    "From seeing a twin's champion move to new requests running on its new adapter.",
    ["model"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
ADAPTERS_REFUSED = Counter(
    "twinops_llm_adapters_refused_total", "Champion adapters refused (the old one kept serving).", ["model"]
)
REQUESTS_SHED = Counter(
    "twinops_requests_shed_total",
    "Requests refused before the app read them (413 body too large, 429 too many in flight).",
    ["server", "reason"],
)
RERANK_PAIRS = Counter("twinops_rerank_pairs_total", "Query-document pairs scored.", ["model"])
EMBEDDED_TEXTS = Counter("twinops_embedded_texts_total", "Texts embedded.", ["model"])
RAG_STAGE_SECONDS = Histogram(
    "twinops_rag_stage_seconds",
    "Latency of each RAG stage (self_query, expand, embed, search, rerank, prompt, generate, log).",
    ["model", "stage"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)

ROUTER_REQUESTS = "twinops_router_requests_total"
ROUTER_REQUEST_SECONDS = "twinops_router_request_duration_seconds"
# From a short answer to a long generation on CPU.
ROUTER_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class RouterMetrics:
    """Requests the router answered, by backend and HTTP status, and their duration (to the last byte).

    Each router app has its own registry, so that two routers in one process (tests) count apart.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            ROUTER_REQUESTS,
            "Requests answered, by backend and HTTP status.",
            ["backend", "code"],
            registry=self.registry,
        )
        self.seconds = Histogram(
            ROUTER_REQUEST_SECONDS,
            "From a request's arrival to its answer's last byte, by backend.",
            ["backend"],
            buckets=ROUTER_BUCKETS,
            registry=self.registry,
        )

    def observe(self, backend: str, status: int, seconds: float) -> None:
        self.requests.labels(backend=backend, code=str(status)).inc()
        self.seconds.labels(backend=backend).observe(seconds)
