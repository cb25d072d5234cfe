"""``PrometheusHealth`` against a real Prometheus: Istio's metrics for KServe, the router's locally.

Prometheus (the binary, ``tests.support.prometheus``) scrapes, every second, an exporter shaped like
Istio's sidecars. The module's traffic is laid down once: every series is declared and scraped three
times, then the requests are recorded and scraped twice, so ``rate()`` sees each request (see the
support module for why). Each canary stands among traffic that must not leak into its figures,
with other codes and latencies: its stable (Standard mode: ``twin-llm-predictor``; Knative:
revision ``twin-llm-predictor-00001``), the gateway's ``reporter="source"`` reports of the canary's
own requests, and a workload of the same name in another namespace.

Exact figures, and why: the error rate is a ratio of two series scraped together, so ``rate()``'s
extrapolation cancels out; every canary request takes 800 ms, in Istio's (500, 1000] ms bucket,
where ``histogram_quantile`` interpolates p95 to 500 + 0.95 * 500 = 975 ms. The request rate is the
one figure ``rate()`` stretches: over a 60 s window it is the canary's requests / 60, extrapolated
to the window's end by at most 1.1 scrape intervals over at least ``SCRAPES_BEFORE`` sampled ones.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from tests.rollout.conftest import serve_app
from tests.support.chat_stand_in import chat_stand_in
from tests.support.prometheus import IstioExporter, RunningPrometheus, running_prometheus

from twinops.errors import ConfigError
from twinops.rollout.health import (
    LOCAL_ERROR_QUERY,
    LOCAL_LATENCY_QUERY,
    LOCAL_REQUESTS_QUERY,
    MIN_WINDOW_SECONDS,
    CanaryEndpoint,
    PrometheusHealth,
)
from twinops.serving.router import BACKEND_HEADER, RouterConfig, create_app

pytestmark = pytest.mark.slow  # a real Prometheus per test

STANDARD, KNATIVE, ELSEWHERE = "twinops", "twinops-serverless", "elsewhere"
STABLE, CANARY = "twin-llm-predictor", "twin-llm-v7-predictor"  # Standard mode's Deployments
STABLE_REVISION, CANARY_REVISION = "twin-llm-predictor-00001", "twin-llm-predictor-00002"
IDLE, ABSENT = "twin-llm-v9-predictor", "twin-llm-v8-predictor"
CANARY_REQUESTS, CANARY_FAILURES, CANARY_LATENCY_MS = 40, 10, 800
P95_OF_800_MS = 0.975  # seconds: see the module's docstring
SCRAPES_BEFORE, SCRAPES_AFTER = 3, 2
INTERVAL_SECONDS = 5  # a short step: the window is still MIN_WINDOW_SECONDS

# (workload, namespace, requests, code, latency in ms, reporter)
TRAFFIC = [
    (STABLE, STANDARD, 400, 200, 3000, "destination"),
    (STABLE, STANDARD, 100, 500, 3000, "destination"),
    (CANARY, STANDARD, CANARY_REQUESTS - CANARY_FAILURES, 200, CANARY_LATENCY_MS, "destination"),
    (CANARY, STANDARD, CANARY_FAILURES, 503, CANARY_LATENCY_MS, "destination"),
    # The ingress gateway's view of the same canary requests, with its own latency.
    (CANARY, STANDARD, CANARY_REQUESTS - CANARY_FAILURES, 200, 1200, "source"),
    (CANARY, STANDARD, CANARY_FAILURES, 503, 1200, "source"),
    (CANARY, ELSEWHERE, 50, 500, 5, "destination"),
    # Knative names a revision's Deployment <revision>-deployment. This canary never failed.
    (f"{STABLE_REVISION}-deployment", KNATIVE, 400, 200, 3000, "destination"),
    (f"{STABLE_REVISION}-deployment", KNATIVE, 100, 500, 3000, "destination"),
    (f"{CANARY_REVISION}-deployment", KNATIVE, CANARY_REQUESTS, 200, CANARY_LATENCY_MS, "destination"),
]


def canary_reply(question: str) -> tuple[int, str]:
    """The router's canary backend: every third question fails."""
    return (500, "boom") if int(question.removeprefix("question ")) % 3 == 0 else (200, "canary")


@pytest.fixture(scope="module")
def router() -> Iterator[str]:
    """The real router app, in front of stand-in LLM servers, with all traffic on the canary."""
    stable, stable_url, _ = chat_stand_in(lambda _question: (200, "stable"))
    canary, canary_url, _ = chat_stand_in(canary_reply)
    config = RouterConfig(stable=stable_url, canary=canary_url, canary_percent=100)
    with serve_app(create_app(config, seed=7)) as url:
        yield url
    for server in (stable, canary):
        server.close()


@pytest.fixture(scope="module")
def exporter() -> Iterator[IstioExporter]:
    with IstioExporter() as istio:
        yield istio


@pytest.fixture(scope="module")
def prometheus(
    exporter: IstioExporter, router: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningPrometheus]:
    """One Prometheus for the module: each one's first scrape comes about 5 s after its start."""
    with running_prometheus([exporter.url, router], tmp_path_factory.mktemp("prometheus")) as running:
        yield running


@pytest.fixture(scope="module")
def mesh(prometheus: RunningPrometheus, exporter: IstioExporter) -> RunningPrometheus:
    """Prometheus holding ``TRAFFIC``, and ``IDLE``'s series, which served nothing in the window."""
    for workload, namespace, _, code, _, reporter in TRAFFIC:
        exporter.declare(workload, namespace, [code], reporter=reporter)
    exporter.declare(IDLE, STANDARD, [200])
    prometheus.wait_for_scrapes(SCRAPES_BEFORE)
    for workload, namespace, count, code, latency_ms, reporter in TRAFFIC:
        exporter.record(workload, namespace, count=count, code=code, latency_ms=latency_ms, reporter=reporter)
    prometheus.wait_for_scrapes(SCRAPES_AFTER)
    return prometheus


def read(prometheus_url: str, workload: str, namespace: str = STANDARD, **queries: str):
    canary = CanaryEndpoint(url="http://unused", model="twin-llm", workload=workload, namespace=namespace)
    return PrometheusHealth(prometheus_url, **queries).read(canary, window_seconds=INTERVAL_SECONDS)


def assert_rate_of(requests: float | None, count: int) -> None:
    """``count`` requests in the window, as ``rate()`` reads them (see the module's docstring)."""
    assert requests is not None
    assert count / MIN_WINDOW_SECONDS <= requests <= count / MIN_WINDOW_SECONDS * (1 + 1.1 / SCRAPES_BEFORE)


def test_standard_canary_reads_its_own_errors_latency_and_rate(mesh: RunningPrometheus) -> None:
    health = read(mesh.url, CANARY)

    assert health.error_rate == pytest.approx(CANARY_FAILURES / CANARY_REQUESTS)
    assert health.p95_latency_s == pytest.approx(P95_OF_800_MS)
    # Counted once: the gateway's reports of the same requests would double it.
    assert_rate_of(health.requests, CANARY_REQUESTS)
    assert health.source == mesh.url


def test_knative_revision_reads_its_deployment_and_no_failure_as_zero_errors(mesh: RunningPrometheus) -> None:
    health = read(mesh.url, CANARY_REVISION, KNATIVE)

    # Measured and clean: a workload that never failed has no 5xx series at all.
    assert health.error_rate == 0.0
    assert health.p95_latency_s == pytest.approx(P95_OF_800_MS)
    assert_rate_of(health.requests, CANARY_REQUESTS)


def test_a_name_that_prefixes_the_stables_revisions_reads_nothing(mesh: RunningPrometheus) -> None:
    """``twin-llm-predictor`` (a Knative canary whose revision is not known yet) is no revision:
    a prefix match would read the stable's ``twin-llm-predictor-00001-deployment``."""
    health = read(mesh.url, STABLE, KNATIVE)

    assert (health.error_rate, health.p95_latency_s, health.requests) == (None, None, None)


@pytest.mark.parametrize("workload", [ABSENT, IDLE], ids=["no-series", "no-requests-in-the-window"])
def test_no_traffic_is_not_measured_never_zero_errors(mesh: RunningPrometheus, workload: str) -> None:
    health = read(mesh.url, workload)

    assert health.error_rate is None
    assert health.p95_latency_s is None


@pytest.mark.parametrize(
    ("option", "query", "says"),
    [
        (
            "error_query",
            'sum(rate(istio_requests_total{pod="$workload"}[$window])',
            "parse error",
        ),
        ("requests_query", "rate(istio_requests_total[$window])", "series"),
        ("latency_query", "istio_requests_total[$window]", "matrix"),
    ],
    ids=["does-not-parse", "several-series", "a-range"],
)
def test_a_custom_query_prometheus_cannot_use_is_one_line_naming_the_option(
    mesh: RunningPrometheus, option: str, query: str, says: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        read(mesh.url, CANARY, **{option: query})

    message = str(refused.value)
    assert "\n" not in message and option in message and says in message


def test_an_unknown_placeholder_is_refused_before_any_query() -> None:
    with pytest.raises(ConfigError, match=r"latency_query .*\$workloads"):
        PrometheusHealth("http://127.0.0.1:9", latency_query='up{pod="$workloads"}')


def test_local_router_queries_read_the_canary_backends_errors(
    prometheus: RunningPrometheus, router: str
) -> None:
    def ask(number: int) -> httpx.Response:
        body = {"model": "twin-llm", "messages": [{"role": "user", "content": f"question {number}"}]}
        return httpx.post(f"{router}/openai/v1/chat/completions", json=body, timeout=10)

    # The canary's series begin (one failure, one answer) before the window is read.
    assert [ask(number).status_code for number in (0, 1)] == [500, 200]
    httpx.post(f"{router}/router/config", json={"canary_percent": 50}, timeout=10).raise_for_status()
    prometheus.wait_for_scrapes(SCRAPES_BEFORE)
    answers = [ask(number) for number in range(2, 2 + CANARY_REQUESTS)]
    prometheus.wait_for_scrapes(SCRAPES_AFTER)
    health = read(
        prometheus.url,
        "canary",  # the workload LocalRouterTarget names: the router's backend label
        error_query=LOCAL_ERROR_QUERY,
        latency_query=LOCAL_LATENCY_QUERY,
        requests_query=LOCAL_REQUESTS_QUERY,
    )

    canary_answers = [a for a in answers if a.headers[BACKEND_HEADER] == "canary"]
    canary_failures = [a for a in canary_answers if a.status_code == 500]
    assert 0 < len(canary_failures) < len(canary_answers) < len(answers)  # both backends, both outcomes
    # The router's series began at 1 (the two first questions), and rate() stretches a series back
    # toward its zero by first value / increase of its span: at most 1/failures of the ratio.
    expected = len(canary_failures) / len(canary_answers)
    assert health.error_rate == pytest.approx(expected, rel=1 / len(canary_failures))
    assert health.requests is not None and health.requests > 0
    assert health.p95_latency_s is not None  # measured; how fast a stand-in answers is not the point
