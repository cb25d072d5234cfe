"""Every registry write path with MLflow gone: one line naming the setting, after one attempt.

MLflow's HTTP client retries a failed request seven times with backoff by default (about four
minutes in all, as the issue measured); a write path must instead try once and say MLflow is down.
The "MLflow" here accepts each connection and drops it at once, as a server killed mid-call does,
and counts the attempts: one means no retry loop. (The timeout only keeps a regression from
hanging the suite.)
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from tests.support.one_line import one_line_error

from twinops.cli import main
from twinops.domain.versions import DatasetKind
from twinops.errors import ServiceUnavailable
from twinops.settings import get_settings
from twinops.training import nominate, promote_by_hand, register_model
from twinops.training.gate import GateEvidence, record_evidence
from twinops.training.registry import LLM_MODEL, record_metrics

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]  # MLflow client calls and the wire server


class DroppingServer:
    """Accepts TCP connections and closes each at once; counts them."""

    def __init__(self) -> None:
        self.attempts = 0
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            self.attempts += 1
            connection.close()

    def close(self) -> None:
        self._stop.set()
        self._socket.close()


@pytest.fixture
def mlflow_down(mongo_settings, monkeypatch) -> Iterator[DroppingServer]:
    server = DroppingServer()
    for key in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.delenv(key, raising=False)  # MLflow's defaults: the retry loop the issue met
    monkeypatch.setenv("TWINOPS_MLFLOW_TRACKING_URI", server.url)
    get_settings.cache_clear()
    yield server
    server.close()
    get_settings.cache_clear()


def _evidence() -> GateEvidence:
    return GateEvidence(
        evaluation="eval-run-1",
        golden="golden-1",
        questions=10,
        reference_name="base",
        challenger={"eval_perplexity": 10.0},
        reference={"eval_perplexity": 12.0},
    )


WRITES = {
    "nominate": lambda settings: nominate(LLM_MODEL, settings, version="1", evidence=_evidence()),
    "promote_by_hand": lambda settings: promote_by_hand(LLM_MODEL, "1", settings, reason="a person decided"),
    "record_evidence": lambda settings: record_evidence(LLM_MODEL, "1", _evidence(), settings),
    "record_metrics": lambda settings: record_metrics(LLM_MODEL, "1", {"bleu": 0.3}, settings),
}


@pytest.mark.parametrize("write", sorted(WRITES))
def test_a_registry_write_with_mlflow_down_is_one_line_after_one_attempt(mlflow_down, write):
    with pytest.raises(ServiceUnavailable) as raised:
        WRITES[write](get_settings())
    message = str(raised.value)
    assert "TWINOPS_MLFLOW_TRACKING_URI" in message and "\n" not in message
    assert mlflow_down.attempts == 1


def test_registering_a_model_with_mlflow_down_is_one_line_after_one_attempt(
    make_dataset, mlflow_down, tmp_path
):
    dataset = make_dataset(DatasetKind.INSTRUCTION)  # in MongoDB, which is up
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ServiceUnavailable) as raised:
        register_model(
            LLM_MODEL, tmp_path, get_settings(), base_model="bundled:x", dataset_version_ids=[dataset.id]
        )
    assert "TWINOPS_MLFLOW_TRACKING_URI" in str(raised.value)
    assert mlflow_down.attempts == 1


def test_registry_promote_says_mlflow_is_down_in_one_line_exit_2(mlflow_down, capsys):
    argv = ["registry", "promote", LLM_MODEL, "--version", "1", "--reason", "hotfix"]
    one_line_error(main, argv, capsys, "TWINOPS_MLFLOW_TRACKING_URI")
    assert mlflow_down.attempts == 1
