"""The warehouse dies in the middle of a feature run (issue 25, durable writes): the run ends in one
line naming the setting, and once the server is back the next run converges to what an uninterrupted
run gives, wherever the kill fell (the run's watermark is written last, so nothing it skipped is
lost, and nothing is counted twice)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from twinops.errors import ServiceUnavailable
from twinops.features.gates import GateConfig
from twinops.features.jobs import FeatureJob
from twinops.features.runner import run_features
from twinops.services import mongodb
from twinops.services.process import stop_pid
from twinops.settings import Settings, get_settings

DOCUMENTS = 8

pytestmark = pytest.mark.slow  # a wire server started, killed and started again, and MiniLM


def _job() -> FeatureJob:
    return FeatureJob(gates=GateConfig(max_bytes=20_000), materialize_feast=False)


def _seed(settings: Settings, corpus) -> None:
    corpus.seed(
        settings,
        [corpus.raw(corpus.ADA, f"https://ada.example/{i}", corpus.article(i)) for i in range(DOCUMENTS)],
    )


def _on_a_fresh_warehouse(tmp_path: Path, name: str, monkeypatch) -> tuple[object, Settings]:
    server = mongodb.start(Settings(home=tmp_path / f"{name}-mongo"))
    monkeypatch.setenv("TWINOPS_MONGODB_URI", server.uri)
    monkeypatch.setenv("TWINOPS_HOME", str(tmp_path / f"{name}-home"))
    get_settings.cache_clear()
    return server, get_settings()


@pytest.mark.parametrize("kill_at", ["clean + gate", "embed", "load qdrant"])
def test_a_feature_run_whose_warehouse_dies_ends_in_one_line_and_the_next_run_converges(
    tmp_path: Path, monkeypatch, minilm: Path, corpus, kill_at: str
) -> None:
    monkeypatch.setenv("TWINOPS_EMBEDDING_MODEL", str(minilm))
    reference_server, settings = _on_a_fresh_warehouse(tmp_path, "reference", monkeypatch)
    try:
        _seed(settings, corpus)
        expected = run_features(_job(), settings)
    finally:
        stop_pid(reference_server.pid)

    server, settings = _on_a_fresh_warehouse(tmp_path, "crashed", monkeypatch)
    killed: list[str] = []

    def kill_the_warehouse(step: str, done: int, total: int | None, note: str = "") -> None:
        if step == kill_at and not killed:
            killed.append(f"{step} {done}/{total}")
            os.killpg(server.pid, signal.SIGKILL)

    try:
        _seed(settings, corpus)
        with pytest.raises(ServiceUnavailable) as raised:
            run_features(_job(), settings, on_progress=kill_the_warehouse)
        assert killed, f"the run never reached {kill_at!r}"
        message = str(raised.value)
        assert "TWINOPS_MONGODB_URI" in message and "\n" not in message, message
    finally:
        stop_pid(server.pid)

    restarted = mongodb.start(Settings(home=tmp_path / "crashed-mongo"))
    try:
        monkeypatch.setenv("TWINOPS_MONGODB_URI", restarted.uri)
        get_settings.cache_clear()
        again = run_features(_job(), get_settings())
        # What an uninterrupted run gives: every document, every chunk, the same dataset version.
        assert (again.documents_total, again.chunks_total) == (
            expected.documents_total,
            expected.chunks_total,
        )
        assert again.version_id == expected.version_id
        assert again.gate.kept == expected.gate.kept == DOCUMENTS
    finally:
        stop_pid(restarted.pid)
        get_settings.cache_clear()
