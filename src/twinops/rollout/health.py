"""The canary's error rate and latency: from Prometheus when one is configured, else by probing it.

``PrometheusHealth`` asks Prometheus' query API (``GET /api/v1/query``) three PromQL queries, as
``string.Template`` text with ``$workload``, ``$namespace`` and ``$window`` (the step interval, at
least a minute). No traffic in the window (an empty answer, or 0/0) is "not measured", never
"healthy"; a canary that answered requests and failed none reads 0 errors. A query Prometheus
rejects, or one that answers more than one series, is a one-line ``ConfigError`` naming the option.

The default queries read Istio's standard request metrics, ``istio_requests_total`` and
``istio_request_duration_milliseconds``, as the canary pod's own sidecar reports them
(``reporter="destination"``; the gateway's ``source`` reports of the same requests would count each
one twice, with the gateway's latency), for the ``destination_workload`` named ``$workload`` or
``$workload-deployment``: the canary's Deployment, ``{isvc}-{canary}-predictor`` in Standard mode,
and in Knative mode ``{revision}-deployment`` of the revision that ``$workload`` names. Whole
names, not a prefix: ``twin-llm-predictor.*`` would also match every revision of the stable
(``twin-llm-predictor-00001-deployment``). What a cluster needs for them:

- Istio with its default telemetry, and sidecar injection in the InferenceServices' namespace
  (``istio-injection=enabled``): without a sidecar in the predictor's pods nothing reports as
  ``destination``, and every analysis is inconclusive (never a pass).
- Prometheus scraping the sidecars' ``/stats/prometheus``. With kube-prometheus: Istio's
  ``envoy-stats-monitor`` PodMonitor (``samples/addons/extras/prometheus-operator.yaml`` in
  Istio's release), and a Role and RoleBinding that let the ``prometheus-k8s`` ServiceAccount list
  the pods of that namespace (kube-prometheus grants it ``default``, ``kube-system`` and
  ``monitoring`` only).
- ``TWINOPS_PROMETHEUS_URL=http://prometheus-k8s.monitoring.svc:9090`` (kube-prometheus' Service),
  and a way in: kube-prometheus' ``prometheus-k8s`` NetworkPolicy admits only Prometheus' own pods
  on 9090, so add an ingress rule for the namespace the rollout runs in.

``LOCAL_*_QUERY`` read what the local weighted router exports (``twinops.serving.metrics``:
``twinops_router_requests_total{backend, code}``, ``twinops_router_request_duration_seconds``)
for ``backend="$workload"`` (``canary`` on the local router): the queries for a rollout with
``--router`` when ``TWINOPS_PROMETHEUS_URL`` names a Prometheus that scrapes the router's
``/metrics``.

What ``rate()`` cannot see: a series begins at its first request (Istio's and the router's alike),
and ``rate()`` counts increases from a series' first scrape on, so what a new series counted before
that scrape is not seen. Over a window of several scrapes that shifts the error rate little.

``ProbeHealth`` sends a few short OpenAI chat requests to the canary's own URL and counts the
failures and the latencies: the way to judge a canary where no Prometheus runs (one machine).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from string import Template
from typing import Any, Protocol

import httpx
from pydantic import BaseModel

from twinops.errors import ConfigError, ServiceUnavailable
from twinops.rollout.state import Health
from twinops.serving.metrics import ROUTER_REQUEST_SECONDS, ROUTER_REQUESTS

PROMETHEUS_SETTING = "TWINOPS_PROMETHEUS_URL"
# rate() needs two scrapes of a series in its window: a minute holds two at kube-prometheus' 30 s.
MIN_WINDOW_SECONDS = 60
PLACEHOLDERS = ("workload", "namespace", "window")


def _error_ratio(counter: str, selector: str, code_label: str) -> str:
    """Failed (5xx) over all requests. A workload that never failed has no 5xx series at all, so
    its failures are an empty vector: ``or on() vector(0)`` makes them 0, while no requests at all
    still leave the divisor empty (no answer) or 0 (NaN): not measured either way."""
    failed = f'{counter}{{{selector},{code_label}=~"5.."}}'
    return f"(sum(rate({failed}[$window])) or on() vector(0)) / sum(rate({counter}{{{selector}}}[$window]))"


def _p95(histogram: str, selector: str) -> str:
    return f"histogram_quantile(0.95, sum by (le) (rate({histogram}_bucket{{{selector}}}[$window])))"


def _request_rate(counter: str, selector: str) -> str:
    return f"sum(rate({counter}{{{selector}}}[$window]))"


_ISTIO_SELECTOR = (
    'reporter="destination",destination_workload=~"$workload(-deployment)?",'
    'destination_workload_namespace="$namespace"'
)
DEFAULT_ERROR_QUERY = _error_ratio("istio_requests_total", _ISTIO_SELECTOR, "response_code")
DEFAULT_LATENCY_QUERY = _p95("istio_request_duration_milliseconds", _ISTIO_SELECTOR) + " / 1000"
DEFAULT_REQUESTS_QUERY = _request_rate("istio_requests_total", _ISTIO_SELECTOR)

_ROUTER_SELECTOR = 'backend="$workload"'
LOCAL_ERROR_QUERY = _error_ratio(ROUTER_REQUESTS, _ROUTER_SELECTOR, "code")
LOCAL_LATENCY_QUERY = _p95(ROUTER_REQUEST_SECONDS, _ROUTER_SELECTOR)
LOCAL_REQUESTS_QUERY = _request_rate(ROUTER_REQUESTS, _ROUTER_SELECTOR)
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
        # Health field -> (the option that sets its query, the query).
        self.queries = {
            "error_rate": ("error_query", Template(error_query)),
            "p95_latency_s": ("latency_query", Template(latency_query)),
            "requests": ("requests_query", Template(requests_query)),
        }
        for option, template in self.queries.values():
            try:
                template.substitute(dict.fromkeys(PLACEHOLDERS, "x"))
            except (KeyError, ValueError) as error:
                found = f"${error.args[0]}" if isinstance(error, KeyError) else "a $ without a name"
                raise ConfigError(
                    f"the {option} uses {found}; its placeholders are ${', $'.join(PLACEHOLDERS)}",
                    setting=option,
                ) from error
        self.timeout = timeout

    def _query(self, option: str, promql: str) -> float | None:
        endpoint = f"{self.url}/api/v1/query"
        try:
            response = httpx.get(endpoint, params={"query": promql}, timeout=self.timeout)
            body: Any = response.json()
        except (httpx.HTTPError, ValueError) as error:
            raise ServiceUnavailable(
                f"Prometheus at {self.url} did not answer ({type(error).__name__}): fix {PROMETHEUS_SETTING} "
                "or unset it to probe the canary instead",
                setting=PROMETHEUS_SETTING,
            ) from error
        body = body if isinstance(body, dict) else {}
        if response.status_code >= 400 or body.get("status") != "success":
            detail = " ".join(str(body.get("error", f"HTTP {response.status_code}")).split())
            # bad_data: the query does not parse; execution: it cannot be evaluated as written.
            if body.get("errorType") in ("bad_data", "execution"):
                raise ConfigError(f"Prometheus at {self.url} refused the {option}: {detail}", setting=option)
            raise ServiceUnavailable(
                f"Prometheus at {self.url} could not answer the {option} ({detail}): "
                f"fix {PROMETHEUS_SETTING} or unset it to probe the canary instead",
                setting=PROMETHEUS_SETTING,
            )
        data = body.get("data") or {}
        kind, result = data.get("resultType"), data.get("result") or []
        if kind == "scalar":
            value = float(result[1])
        elif kind != "vector" or len(result) > 1:
            shape = f"{len(result)} series" if kind == "vector" else f"a {kind}"
            raise ConfigError(
                f"the {option} gave {shape} from Prometheus at {self.url}, not one number: aggregate it "
                "(sum(...)) or take the rate() of a range",
                setting=option,
            )
        elif not result:
            return None
        else:
            value = float(result[0]["value"][1])
        return None if math.isnan(value) or math.isinf(value) else value

    def read(self, canary: CanaryEndpoint, window_seconds: float) -> Health:
        window = f"{max(round(window_seconds), MIN_WINDOW_SECONDS)}s"
        fields = {"workload": canary.workload, "namespace": canary.namespace, "window": window}
        values = {
            field: self._query(option, query.substitute(fields))
            for field, (option, query) in self.queries.items()
        }
        return Health(**values, source=self.url)


class ProbeHealth:
    """A few short chat requests to the canary's OpenAI route, one after another."""

    def __init__(self, *, requests: int = 5, max_tokens: int = 8, timeout: float = 60.0) -> None:
        self.requests = requests
        self.max_tokens = max_tokens
        self.timeout = timeout

    def read(self, canary: CanaryEndpoint, window_seconds: float) -> Health:
        from twinops.infra.llm_client import (
            ChatRefused,
            CompletionFailed,
            Endpoint,
            chat_client,
            chat_completion,
        )

        endpoint = Endpoint(
            url=f"{canary.url.rstrip('/')}/openai/v1",
            model=canary.model,
            url_setting="the canary's URL",
            model_setting="the canary's model name",
            key_setting="the canary's URL",
        )
        # No retries: a failed request is what the probe measures.
        client = chat_client(endpoint, timeout=self.timeout, max_retries=0)
        messages = [{"role": "user", "content": PROBE_PROMPT}]
        failures, latencies = 0, []
        for _ in range(self.requests):
            started = time.perf_counter()
            try:
                chat_completion(client, endpoint, messages, max_tokens=self.max_tokens, temperature=0)
            except ChatRefused as refused:  # a 4xx is the probe's fault, a 5xx the canary's
                latencies.append(time.perf_counter() - started)
                failures += refused.status >= 500
                continue
            except (ServiceUnavailable, ConfigError, CompletionFailed):  # unreachable, 404, timeout
                failures += 1
                continue
            latencies.append(time.perf_counter() - started)
        return Health(
            error_rate=failures / self.requests if self.requests else None,
            p95_latency_s=p95(latencies),
            requests=float(self.requests),
            source="probe",
        )
