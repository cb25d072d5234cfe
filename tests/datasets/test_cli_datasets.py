"""``twinops datasets build|show``: JSON summary, table output, one-line errors with exit code 2."""

from __future__ import annotations

import json

import pytest

from twinops.cli import main
from twinops.settings import Settings


def test_build_then_show(feature_run, dataset_settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    feature_run()
    assert main(["datasets", "build", "--generator", "extractive", "--no-mlflow", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert set(summary["versions"]) == {"instruction", "preference", "golden", "reranker"}

    assert main(["datasets", "build", "--generator", "extractive", "--no-mlflow"]) == 0
    out = capsys.readouterr().out
    assert summary["versions"]["instruction"] in out and "held out" in out

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
    assert main(["datasets", "show", "instruction-0000"]) == 2
    assert "does not exist" in capsys.readouterr().err
