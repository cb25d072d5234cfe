"""The drift detector on a fresh cluster: no champion and no dataset yet, so no reference to test
against. It serves, ready and saying why, until the reference resolves, then hands over."""

from __future__ import annotations

import threading
import time

import httpx

from twinops.monitoring.service import wait_for_reference
from twinops.services.process import free_port

REASON = "there is no champion and no instruction dataset to take as the reference"


def _get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return None


def test_it_waits_ready_saying_why_until_the_reference_exists() -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    asked = []
    exists = threading.Event()

    def has_reference() -> bool:
        asked.append(time.monotonic())
        if len(asked) == 2:
            raise ConnectionError("MLflow is restarting")  # not yet, and no crash
        return exists.is_set()

    waiting = threading.Thread(
        target=wait_for_reference, args=(REASON, has_reference), kwargs={"host": "127.0.0.1", "port": port,
        "interval": 0.05}, daemon=True,
    )  # fmt: skip
    waiting.start()
    deadline = time.monotonic() + 30
    while (health := _get(f"{base}/healthz")) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert health is not None and health.status_code == 200, "ready while it waits"
    assert health.json() == {"status": "waiting", "reason": REASON}
    logged = httpx.post(f"{base}/", json={"instances": ["a question"]}, timeout=5)
    assert logged.status_code == 200 and logged.json()["meta"] == {"waiting": REASON}
    assert "twinops_drift_events_skipped_total 1.0" in httpx.get(f"{base}/metrics", timeout=5).text
    while len(asked) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert waiting.is_alive(), "an error while asking is not a reference"

    exists.set()
    waiting.join(timeout=30)
    assert not waiting.is_alive(), "it returns once the reference exists"
    assert _get(f"{base}/healthz") is None, "and the waiting server is gone"
