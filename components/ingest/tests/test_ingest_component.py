"""ingest: the component function on a local folder into the real (embedded) MongoDB."""

import json
from pathlib import Path

import pytest

from twinops.errors import TwinopsError
from twinops.pipelines.components import ingest


def test_ingest_writes_pointer_metrics_and_report(mongo_settings, corpus: Path, artifacts) -> None:
    crawl, metrics, report = (
        artifacts.new("Dataset", "crawl"),
        artifacts.new("Metrics", "m"),
        artifacts.new("Markdown", "report"),
    )
    run_id = ingest.python_func(
        author="Ada Quill", sources=[str(corpus)], crawl=crawl, metrics=metrics, report=report
    )
    pointer = json.loads(Path(crawl.path).read_text())
    assert pointer["run_id"] == run_id and pointer["kind"] == "crawl"
    assert metrics.metadata["new"] == 2.0
    assert str(corpus) in Path(report.path).read_text()
    # Same corpus again: nothing new, everything unchanged (content hashes).
    again = artifacts.new("Metrics", "m2")
    ingest.python_func(
        author="Ada Quill",
        sources=[str(corpus)],
        crawl=artifacts.new("Dataset", "c2"),
        metrics=again,
        report=artifacts.new("Markdown", "r2"),
    )
    assert again.metadata["unchanged"] == 2.0 and again.metadata["new"] == 0.0


def test_every_source_failing_fails_the_step(mongo_settings, tmp_path: Path, artifacts) -> None:
    with pytest.raises(TwinopsError, match="every source of Ada Quill failed"):
        ingest.python_func(
            author="Ada Quill",
            sources=[str(tmp_path / "missing")],
            crawl=artifacts.new("Dataset", "c"),
            metrics=artifacts.new("Metrics", "m"),
            report=artifacts.new("Markdown", "r"),
        )


def test_unknown_option_is_rejected(mongo_settings, corpus: Path, artifacts) -> None:
    with pytest.raises(Exception, match="bogus"):
        ingest.python_func(
            author="Ada Quill",
            sources=[str(corpus)],
            options={"bogus": 1},
            crawl=artifacts.new("Dataset", "c"),
            metrics=artifacts.new("Metrics", "m"),
            report=artifacts.new("Markdown", "r"),
        )


def test_ingest_runs_under_kfp_local(mongo_settings, corpus: Path, tmp_path: Path) -> None:
    """The same component through kfp.local's SubprocessRunner (a subprocess of this Python)."""
    import warnings

    from kfp import local

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "kfp"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the image name has no "python" in it
        task = ingest(author="Ada Quill", sources=[str(corpus)])
    assert task.outputs["Output"].startswith("etl-")
    crawl = task.outputs["crawl"]
    assert crawl.metadata["totals"]["new"] == 2
    assert json.loads(Path(crawl.path).read_text())["run_id"] == task.outputs["Output"]
