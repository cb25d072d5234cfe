"""``twinops datasets build|show``: JSON summary, table output, one-line errors with exit code 2."""

from __future__ import annotations

import json

import pytest
from tests.support.one_line import one_line_error

from twinops.cli import main
from twinops.settings import Settings


@pytest.mark.slow
def test_build_then_show(feature_run, dataset_settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    feature_run()
    assert main(["datasets", "build", "--generator", "extractive", "--no-mlflow", "--json"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert set(summary["versions"]) == {"instruction", "preference", "golden", "reranker"}
    # stderr is no terminal here: progress comes as plain lines, with the rate and the time left.
    lines = [line for line in captured.err.splitlines() if line.startswith("reranker pairs: ")]
    assert (
        lines and lines[-1].startswith("reranker pairs: ") and "rows/s" in lines[-1] and "left" in lines[-1]
    )
    assert summary["sources"]["instruction"] == {"template": summary["counts"]["instruction"]}

    assert main(["datasets", "build", "--generator", "extractive", "--no-mlflow", "--budget", "1m"]) == 0
    out = capsys.readouterr().out
    assert summary["versions"]["instruction"] in out and "held out" in out
    assert f"instruction by source: template {summary['counts']['instruction']}" in out

    assert main(["datasets", "show", "latest", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert {item["id"] for item in shown} == set(summary["versions"].values())
    assert main(["datasets", "show", summary["versions"]["golden"]]) == 0
    assert "TWINOPS-CANARY-" in capsys.readouterr().out


def test_errors_are_one_line(dataset_settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["datasets", "build", "--generator", "extractive", "--no-mlflow"]) == 2
    err = capsys.readouterr().err
    assert "twinops features" in err and "Traceback" not in err
    assert main(["datasets", "build", "--generator", "gpt9", "--no-mlflow"]) == 2
    assert "generator" in capsys.readouterr().err
    one_line_error(
        main,
        ["datasets", "build", "--budget", "a while", "--no-mlflow"],
        capsys,
        "--budget",
        "not a duration",
    )
    assert main(["datasets", "show", "instruction-0000"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_bad_questions_file_is_one_line_and_writes_no_dataset(
    feature_run, dataset_settings: Settings, capsys: pytest.CaptureFixture[str], tmp_path
) -> None:
    from twinops.domain import DatasetKind
    from twinops.infra.dataset_versions import DatasetVersionRepository
    from twinops.infra.mongo import connect

    feature_run(index=False)
    questions = tmp_path / "questions.jsonl"
    questions.write_text('{"document": "a.md", "question": "Why would I?"}\n', encoding="utf-8")
    build = ["datasets", "build", "--generator", "extractive", "--no-mlflow"]
    one_line_error(main, [*build, "--paraphrased-questions", str(questions)], capsys, "line 1", "evidence")
    one_line_error(
        main, [*build, "--paraphrased-questions", str(tmp_path / "none.jsonl")], capsys, "does not exist"
    )
    assert DatasetVersionRepository(connect(dataset_settings)).latest(DatasetKind.GOLDEN) is None
