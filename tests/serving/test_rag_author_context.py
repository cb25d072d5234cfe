"""The RAG server's author-context lookup: remembered per author, and warmed up before the server is
ready, so that the first question does not wait for Feast's first read in the process."""

from __future__ import annotations

import logging

import pytest

from twinops.serving.rag import _cached, _warm_up


def test_the_warm_up_reads_once_and_the_first_question_finds_it_remembered() -> None:
    reads: list[str] = []
    context = _cached(lambda author_id: reads.append(author_id) or f"context of {author_id}", ttl=300)

    _warm_up(context, "ada")
    assert reads == ["ada"]  # read at start

    assert context("ada") == "context of ada"
    assert reads == ["ada"]  # not again for the first question


def test_a_warm_up_that_fails_logs_one_line_and_the_server_starts(caplog: pytest.LogCaptureFixture) -> None:
    def no_online_store(author_id: str) -> str:
        raise RuntimeError("the online store is not materialized")

    with caplog.at_level(logging.WARNING, logger="twinops.serving"):
        _warm_up(_cached(no_online_store, ttl=300), "ada")

    (record,) = caplog.records
    assert "no author context for ada" in record.getMessage()
    assert "not materialized" in record.getMessage()
