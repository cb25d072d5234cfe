"""`twinops features` and `twinops lineage` through the real CLI entry point."""

from __future__ import annotations

import json

import pytest

from twinops.cli import main

pytestmark = pytest.mark.slow  # loads the real MiniLM and Feast


def test_features_and_lineage_cli(feature_settings, corpus, capsys: pytest.CaptureFixture[str]) -> None:
    corpus.seed(
        feature_settings,
        [corpus.raw(corpus.ADA, f"https://ada.dev/{i}", corpus.article(i)) for i in range(2)]
        + [corpus.raw(corpus.GRACE, "https://grace.dev/x", corpus.article(3))],
    )
    # The first run builds the collections, so it covers every author even when scoped.
    assert main(["features", "--author", "Ada Lovelace", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["scope"] == "all authors" and first["gate"]["kept"] == 3
    assert first["feast_materialized"], "feast apply + materialize after a run that wrote"
    assert (feature_settings.home / "feast" / "data" / "online_store.db").exists()
    assert main(["features", "--author", "Ada Lovelace", "--no-feast", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["scope"] == "Ada Lovelace" and summary["gate"]["processed"] == 0
    assert summary["documents_total"] == 2 and summary["version_id"].startswith("features-")

    chunk_id = json.loads(
        (feature_settings.home / "features" / summary["version_id"] / "chunks.jsonl")
        .read_text()
        .splitlines()[0]
    )["id"]
    assert main(["lineage", chunk_id]) == 0
    out = capsys.readouterr().out
    assert "https://ada.dev/" in out and "raw_document" in out and "feature_version" in out
    assert main(["lineage", summary["version_id"], "--json"]) == 0
    assert sorted(json.loads(capsys.readouterr().out)["source_urls"]) == [
        "https://ada.dev/0",
        "https://ada.dev/1",
    ]

    # Nothing new: the table says so and the version is unchanged.
    assert main(["features", "--author", "Ada Lovelace", "--no-feast"]) == 0
    out = capsys.readouterr().out
    assert "Gate report" in out and f"{summary['version_id']} (unchanged)" in out


def test_cli_errors_are_one_line(feature_settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["features", "--author", "Nobody At All"]) == 2
    err = capsys.readouterr().err
    assert "'Nobody At All' has no documents" in err and "Traceback" not in err
    assert main(["lineage", "not-a-real-id"]) == 2
    assert "neither a chunk" in capsys.readouterr().err
