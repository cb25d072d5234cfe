"""Run records in ``crawl_runs``, the change feed, and the ``twinops etl`` command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from twinops.cli import main
from twinops.domain import Author
from twinops.errors import NotFound
from twinops.etl import EtlJob, EtlSummary, run_etl
from twinops.infra.crawl_runs import ChangeFeed, CrawlRunRepository
from twinops.infra.documents import DocumentRepository
from twinops.infra.mongo import connect


def _folder(tmp_path: Path, **files: str) -> Path:
    folder = tmp_path / "posts"
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / f"{name}.md").write_text(f"# {name}\n\n{text}\n")
    return folder


def test_crawl_run_is_recorded_with_counts_and_reasons(tmp_path: Path, mongo_settings) -> None:
    folder = _folder(tmp_path, one="First post.", two="Second post.")
    summary = run_etl(EtlJob.for_author("Ada Quill", [str(folder), "nowhere/at/all"]), mongo_settings)
    run = CrawlRunRepository(connect(mongo_settings)).get(summary.run_id)
    assert run.status == "finished" and run.finished_at >= run.started_at
    assert run.sources == [f"Ada Quill: {folder}", "Ada Quill: nowhere/at/all"]
    assert run.totals["new"] == 2 and run.totals["failed"] == 0
    assert run.results[0]["status"] == "ok" and run.results[1]["status"] == "failed"
    assert run.errors == [
        "nowhere/at/all: 'nowhere/at/all' is neither a URL nor an existing local path: fix the source string"
    ]
    assert CrawlRunRepository(connect(mongo_settings)).latest().run_id == summary.run_id
    with pytest.raises(NotFound, match="does not exist"):
        CrawlRunRepository(connect(mongo_settings)).get("etl-nope")


def test_change_feed_since_run_and_since_time(tmp_path: Path, mongo_settings) -> None:
    folder = _folder(tmp_path, one="First post.", two="Second post.")
    job = EtlJob.for_author("Ada Quill", [str(folder)])
    first = run_etl(job, mongo_settings)
    feed = ChangeFeed(connect(mongo_settings))
    assert {d.document.title for d in feed.in_run(first.run_id)} == {"one", "two"}
    assert list(feed.since_run(first.run_id)) == []

    second = run_etl(job, mongo_settings)  # nothing changed: nothing to process downstream
    assert list(feed.since_run(first.run_id)) == []

    _folder(tmp_path, two="Second post, revised.", three="Third post.")
    third = run_etl(job, mongo_settings)
    assert third.totals["new"] == 1 and third.totals["updated"] == 1
    changed = {d.document.title: d for d in feed.since_run(first.run_id)}
    assert set(changed) == {"two", "three"} and changed["two"].revision == 2
    assert {d.document.title for d in feed.since_run(second.run_id)} == {"two", "three"}
    assert list(feed.since_run(third.run_id)) == []
    assert {d.document.title for d in feed.since(first.finished_at)} == {"two", "three"}
    with pytest.raises(NotFound):
        list(feed.since_run("etl-missing"))


def test_change_stream_sees_new_and_updated_documents(tmp_path: Path, mongo_settings) -> None:
    folder = _folder(tmp_path, one="First post.")
    job = EtlJob.for_author("Ada Quill", [str(folder)])
    feed = ChangeFeed(connect(mongo_settings))
    with feed.watch(author_id=Author(full_name="Ada Quill").id) as changes:
        run_etl(job, mongo_settings)
        _folder(tmp_path, one="First post, revised.")
        run_etl(job, mongo_settings)
        first, second = next(changes), next(changes)
    assert first == second  # inserted, then replaced by its new revision


def test_cli_json_summary_and_exit_codes(tmp_path: Path, mongo_settings, capsys) -> None:
    folder = _folder(tmp_path, one="First post.")
    assert main(["etl", "--author", "Ada Quill", str(folder), "missing-folder", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["totals"]["new"] == 1
    assert [s["status"] for s in payload["sources"]] == ["ok", "failed"]
    assert "neither a URL nor an existing local path" in payload["sources"][1]["reason"]
    assert EtlSummary.model_validate(payload).totals == payload["totals"]  # the JSON reads back

    # Every source failed: exit 1, with the table on stdout.
    assert main(["etl", "-a", "Ada Quill", "missing-folder"]) == 1
    assert "failed" in capsys.readouterr().out

    config = tmp_path / "etl.yaml"
    config.write_text(f"authors:\n  - full_name: Ada Quill\n    sources: [{folder.name}]\n")
    assert main(["etl", "--config", str(config), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["totals"]["unchanged"] == 1


def test_cli_bad_input_is_one_line_exit_2(tmp_path: Path, mongo_settings, capsys) -> None:
    assert main(["etl"]) == 2
    assert "nothing to collect" in capsys.readouterr().err
    assert main(["etl", "--config", str(tmp_path / "absent.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["etl", "--config", "x.yaml", "--author", "Ada", "src"]) == 2
    assert "not both" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_unreachable_warehouse_exits_2(tmp_path: Path, home, monkeypatch, capsys) -> None:
    from twinops.settings import get_settings

    monkeypatch.setenv("TWINOPS_MONGODB_URI", "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=200")
    get_settings.cache_clear()
    folder = _folder(tmp_path, one="First post.")
    assert main(["etl", "-a", "Ada Quill", str(folder)]) == 2
    assert "unreachable" in capsys.readouterr().err


def test_a_document_gone_from_its_source_is_marked_deleted_and_comes_back(
    tmp_path: Path, mongo_settings
) -> None:
    folder = _folder(tmp_path, one="First post.", two="Second post.")
    job = EtlJob.for_author("Ada Quill", [str(folder)])
    first = run_etl(job, mongo_settings).sources[0]
    assert (first.new, first.deleted) == (2, 0)
    documents = DocumentRepository(connect(mongo_settings))
    both = documents.ids()

    (folder / "two.md").unlink()
    second = run_etl(job, mongo_settings).sources[0]
    assert (second.unchanged, second.deleted) == (1, 1)
    (gone,) = both - documents.ids()
    assert documents.get(gone) is not None  # kept as a row, no longer live
    assert gone not in {d.document.id for d in documents.changed_since()}
    assert documents.count() == 1

    _folder(tmp_path, two="Second post.")  # back at its source: live again, seen as changed
    third = run_etl(job, mongo_settings).sources[0]
    assert (third.updated, third.deleted) == (1, 0) and documents.ids() == both


def test_an_incomplete_crawl_deletes_nothing(tmp_path: Path, mongo_settings) -> None:
    folder = _folder(tmp_path, one="First post.", two="Second post.")
    run_etl(EtlJob.for_author("Ada Quill", [str(folder)]), mongo_settings)
    (folder / "two.md").unlink()
    (folder / "broken.md").write_bytes(b"\xff\xfe not utf-8")  # a failed item: the crawl saw less
    result = run_etl(EtlJob.for_author("Ada Quill", [str(folder)]), mongo_settings).sources[0]
    assert result.failed == 1 and result.deleted == 0
    assert DocumentRepository(connect(mongo_settings)).count() == 2
