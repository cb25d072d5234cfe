"""A real Prometheus for tests, and an exporter shaped like Istio's sidecars.

``running_prometheus(targets, folder)`` starts the ``prometheus`` binary (Debian's package, 2.42;
``make system-deps`` installs it) on a free 127.0.0.1 port with its own config and TSDB under
``folder``, scraping each target's ``/metrics`` every second. It yields once Prometheus is ready
and has scraped every target twice, and stops its process group after. Without the binary the
test is skipped in one line, except on CI (``CI`` set), where that is a failure: CI must run them.

``IstioExporter`` serves, in-process on 127.0.0.1, the two metrics the rollout's default queries
read, with Istio's names, labels and Envoy's default buckets: ``istio_requests_total`` and
``istio_request_duration_milliseconds`` by ``reporter``, ``destination_workload``,
``destination_workload_namespace`` and ``response_code``. ``record`` adds N requests of one code
and latency; like Istio it begins a series at its first request. ``rate()`` cannot count the
requests before a series' first scrape, so a test that wants exact figures ``declare``s its series
first (a workload that served before the window: a series standing at any value reads the same to
``rate()`` as one at 0) and lets Prometheus scrape them before it records.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from twinops.services.process import free_port, pid_alive, start_detached, stop_pid, tail, wait_until

SCRAPE_SECONDS = 1
JOB = "tests"
START_TIMEOUT = 60.0
# Envoy's default histogram buckets, which Istio's request duration uses (milliseconds).
ISTIO_DURATION_BUCKETS_MS = (
    0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000,
    30000, 60000, 300000, 600000, 1800000, 3600000,
)  # fmt: skip


def prometheus_binary() -> str:
    """The binary's path; skips the test where it is absent, fails instead on CI."""
    binary = shutil.which("prometheus")
    if binary:
        return binary
    reason = "no prometheus binary: `make system-deps` installs Debian's prometheus package"
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run the Prometheus tests)", pytrace=False)
    pytest.skip(reason)


class RunningPrometheus:
    def __init__(self, url: str, targets: tuple[str, ...], log: Path) -> None:
        self.url = url
        self.targets = targets  # host:port, as Prometheus labels them `instance`
        self.log = log

    def query(self, promql: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10)
        response.raise_for_status()
        return response.json()["data"]["result"]

    def scrapes(self) -> int:
        """Scrapes of the least-scraped target so far: ``up`` gets one sample per scrape, written
        with (and committed after) the samples that scrape read."""
        counted = {
            series["metric"]["instance"]: int(float(series["value"][1]))
            for series in self.query(f'count_over_time(up{{job="{JOB}"}}[1h])')
        }
        return min(counted.get(target, 0) for target in self.targets)

    def wait_for_scrapes(self, count: int = 2, timeout: float = 30.0) -> None:
        """Until every target has been scraped ``count`` more times. Two after a change make sure
        Prometheus holds it: a scrape already under way when it happened may have missed it."""
        wanted = self.scrapes() + count
        if not wait_until(lambda: self.scrapes() >= wanted, timeout=timeout, interval=SCRAPE_SECONDS / 4):
            pytest.fail(
                f"Prometheus did not scrape {self.targets} {count} times in {timeout:.0f}s: {tail(self.log)}",
                pytrace=False,
            )


@contextmanager
def running_prometheus(targets: Iterable[str], folder: Path) -> Iterator[RunningPrometheus]:
    """Prometheus scraping ``targets`` (base URLs whose ``/metrics`` it reads) every second."""
    binary = prometheus_binary()
    instances = tuple(urlparse(target).netloc for target in targets)
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "global": {"scrape_interval": f"{SCRAPE_SECONDS}s", "scrape_timeout": f"{SCRAPE_SECONDS}s"},
        "scrape_configs": [
            {"job_name": JOB, "metrics_path": "/metrics", "static_configs": [{"targets": list(instances)}]}
        ],
    }
    config_file = folder / "prometheus.yml"
    config_file.write_text(json.dumps(config, indent=2), encoding="utf-8")  # JSON is YAML
    port = free_port()
    log = folder / "prometheus.log"
    pid = start_detached(
        [
            binary,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        cwd=folder,
        log_file=log,
    )
    prometheus = RunningPrometheus(f"http://127.0.0.1:{port}", instances, log)
    try:
        if not wait_until(lambda: _ready(prometheus.url) or not pid_alive(pid), timeout=START_TIMEOUT):
            pytest.fail(f"Prometheus was not ready in {START_TIMEOUT:.0f}s: {tail(log)}", pytrace=False)
        if not pid_alive(pid):
            pytest.fail(f"Prometheus exited at start: {tail(log)}", pytrace=False)
        prometheus.wait_for_scrapes(2, timeout=START_TIMEOUT)
        yield prometheus
    finally:
        stop_pid(pid)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/-/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


class IstioExporter:
    """Istio's request metrics for workloads a test drives, on ``/metrics`` of ``url``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ["reporter", "destination_workload", "destination_workload_namespace", "response_code"]
        self.requests = Counter("istio_requests_total", "Requests (Istio).", labels, registry=self.registry)
        self.duration = Histogram(
            "istio_request_duration_milliseconds",
            "Request duration (Istio).",
            labels,
            buckets=ISTIO_DURATION_BUCKETS_MS,
            registry=self.registry,
        )
        self._server, self._thread = start_http_server(0, addr="127.0.0.1", registry=self.registry)
        self.url = f"http://127.0.0.1:{self._server.server_port}"

    def _series(self, workload: str, namespace: str, code: int, reporter: str) -> tuple[Counter, Histogram]:
        labels = {
            "reporter": reporter,
            "destination_workload": workload,
            "destination_workload_namespace": namespace,
            "response_code": str(code),
        }
        return self.requests.labels(**labels), self.duration.labels(**labels)

    def declare(
        self, workload: str, namespace: str, codes: Iterable[int] = (200,), *, reporter: str = "destination"
    ) -> None:
        """The workload's series for ``codes``, standing still until ``record`` adds to them."""
        for code in codes:
            self._series(workload, namespace, code, reporter)

    def record(
        self,
        workload: str,
        namespace: str,
        *,
        count: int,
        code: int = 200,
        latency_ms: float,
        reporter: str = "destination",
    ) -> None:
        """``count`` requests to ``workload``, answered ``code`` in ``latency_ms``, seen by ``reporter``."""
        requests, duration = self._series(workload, namespace, code, reporter)
        requests.inc(count)
        for _ in range(count):
            duration.observe(latency_ms)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> IstioExporter:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
