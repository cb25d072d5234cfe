"""The canary's error rate and latency: from Prometheus when one is configured, else by probing it.

``PrometheusHealth`` asks Prometheus' query API (``GET /api/v1/query``) three PromQL queries, as
``string.Template`` text with ``$workload`` (the canary's pods: the Knative revision, or
``{isvc}-{canary}-predictor`` in Standard mode), ``$namespace`` and ``$window`` (the step
interval). The defaults read the service mesh's request metrics (Istio's ``istio_requests_total``
and ``istio_request_duration_milliseconds``), which KServe's gateways export for every
predictor; pass other queries for another mesh. An empty answer (no traffic yet) is "not
measured", not "healthy".

``ProbeHealth`` sends a few short OpenAI chat requests to the canary's own URL and counts the
failures and the latencies: the way to judge a canary where no Prometheus runs (one machine).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from string import Template
from typing import Protocol

import httpx
from pydantic import BaseModel

from twinops.errors import ServiceUnavailable
from twinops.rollout.state import Health

PROMETHEUS_SETTING = "TWINOPS_PROMETHEUS_URL"
_SELECTOR = 'destination_workload=~"$workload.*",destination_workload_namespace="$namespace"'
DEFAULT_ERROR_QUERY = (
    f'sum(rate(istio_requests_total{{{_SELECTOR},response_code=~"5.."}}[$window])) '
    f"/ sum(rate(istio_requests_total{{{_SELECTOR}}}[$window]))"
)
DEFAULT_LATENCY_QUERY = (
    "histogram_quantile(0.95, sum by (le) "
    f"(rate(istio_request_duration_milliseconds_bucket{{{_SELECTOR}}}[$window]))) / 1000"
)
DEFAULT_REQUESTS_QUERY = f"sum(rate(istio_requests_total{{{_SELECTOR}}}[$window]))"
PROBE_PROMPT = "Answer in one short sentence: what do you write about?"


class CanaryEndpoint(BaseModel):
    """Where the canary answers (its own URL, not the shared one) and how its pods are named."""

    url: str
    model: str
    workload: str
    namespace: str


class HealthSource(Protocol):
    def read(self, canary: CanaryEndpoint, window_seconds: float) -> Health: ...


def p95(values: Sequence[float]) -> float | None:
    """Nearest-rank 95th percentile (the largest value for fewer than 20 samples)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(math.ceil(0.95 * len(ordered)) - 1, 0)]


class PrometheusHealth:
    def __init__(
        self,
        url: str,
        *,
        error_query: str = DEFAULT_ERROR_QUERY,
        latency_query: str = DEFAULT_LATENCY_QUERY,
        requests_query: str = DEFAULT_REQUESTS_QUERY,
        timeout: float = 15.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.queries = {
            "error_rate": Template(error_query),
            "p95_latency_s": Template(latency_query),
            "requests": Template(requests_query),
        }
        self.timeout = timeout

    def _query(self, promql: str) -> float | None:
        endpoint = f"{self.url}/api/v1/query"
        try:
            response = httpx.get(endpoint, params={"query": promql}, timeout=self.timeout)
            body = response.json()
        except (httpx.HTTPError, ValueError) as error:
            raise ServiceUnavailable(
                f"Prometheus at {self.url} did not answer ({type(error).__name__}): fix {PROMETHEUS_SETTING} "
                "or unset it to probe the canary instead",
                setting=PROMETHEUS_SETTING,
            ) from error
        if response.status_code >= 400 or body.get("status") != "success":
            raise ServiceUnavailable(
                f"Prometheus at {self.url} refused the query ({body.get('error', response.status_code)}): "
                "fix the query or the metric names",
                setting=PROMETHEUS_SETTING,
            )
        result = body.get("data", {}).get("result") or []
        if not result:
            return None
        value = float(result[0]["value"][1])
        return None if math.isnan(value) or math.isinf(value) else value

    def read(self, canary: CanaryEndpoint, window_seconds: float) -> Health:
        window = f"{max(round(window_seconds), 60)}s"  # rate() needs a few scrapes in its window
        fields = {"workload": canary.workload, "namespace": canary.namespace, "window": window}
        values = {key: self._query(query.substitute(fields)) for key, query in self.queries.items()}
        return Health(**values, source=self.url)


class ProbeHealth:
    """A few short chat requests to the canary's OpenAI route, one after another."""

    def __init__(self, *, requests: int = 5, max_tokens: int = 8, timeout: float = 60.0) -> None:
        self.requests = requests
        self.max_tokens = max_tokens
        self.timeout = timeout

    def read(self, canary: CanaryEndpoint, window_seconds: float) -> Health:
        endpoint = f"{canary.url.rstrip('/')}/openai/v1/chat/completions"
        body = {
            "model": canary.model,
            "messages": [{"role": "user", "content": PROBE_PROMPT}],
            "max_tokens": self.max_tokens,
            "temperature": 0,
        }
        failures, latencies = 0, []
        with httpx.Client(timeout=self.timeout) as client:
            for _ in range(self.requests):
                started = time.perf_counter()
                try:
                    response = client.post(endpoint, json=body)
                except httpx.HTTPError:
                    failures += 1
                    continue
                latencies.append(time.perf_counter() - started)
                if response.status_code >= 500:
                    failures += 1
        return Health(
            error_rate=failures / self.requests if self.requests else None,
            p95_latency_s=p95(latencies),
            requests=float(self.requests),
            source="probe",
        )
