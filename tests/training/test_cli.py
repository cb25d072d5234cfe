"""`twinops train` and `twinops registry` end to end in-process: JSON on stdout, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from twinops.cli import main
from twinops.domain.versions import DatasetKind
from twinops.training.gate import GateEvidence, record_evidence

pytestmark = pytest.mark.slow  # trains through the CLI


def test_train_sft_register_gate_promote_list(
    training_settings, make_dataset, tiny_llama: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = make_dataset(DatasetKind.INSTRUCTION)
    args = ["train", "sft", "--model", str(tiny_llama), "--max-steps", "1", "--register", "--json"]
    assert main(args) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)  # stdout holds only the JSON summary
    assert result["registered"]["name"] == "twin-llm" and result["registered"]["aliases"] == []
    assert result["registered"]["dataset_version_ids"] == [dataset.id]
    assert "loss=" in captured.err  # the rich progress bar, on stderr

    # A version nobody evaluated against the base model is not nominated.
    assert main(["registry", "gate", "twin-llm", "--json"]) == 0
    decision = json.loads(capsys.readouterr().out)
    assert not decision["nominated"] and "no evaluation evidence" in decision["reason"]

    evidence = GateEvidence(
        evaluation="test",
        golden="golden-test",
        questions=50,
        challenger={"golden_perplexity": 9.0, "golden_style_score": 0.7},
        reference={"golden_perplexity": 11.0, "golden_style_score": 0.4},
        reference_name="base",
        # The project's gate wants the perplexity gain beyond noise: its paired interval.
        improvement_ci={"golden_perplexity": (-2.6, -1.4)},
    )
    record_evidence("twin-llm", "1", evidence, training_settings)
    assert main(["registry", "gate", "twin-llm", "--json"]) == 0
    decision = json.loads(capsys.readouterr().out)
    assert decision["nominated"] and decision["challenger_version"] == "1"
    assert decision["champion_version"] is None  # the gate never moves champion

    # The manual override, recorded as such (a release would be a canary: `twinops rollout`).
    args = ["registry", "promote", "twin-llm", "--version", "1", "--reason", "Ada read its answers"]
    assert main([*args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["champion_version"] == "1"

    assert main(["registry", "list", "--json"]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert listed["aliases"] == ["champion"] and listed["source_uri"] == result["model_dir"]


def test_cli_errors_are_one_line(
    training_settings, tiny_llama: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["train", "sft", "--model", str(tiny_llama), "--dataset", "instruction-nope", "--json"]) == 2
    error = capsys.readouterr().err.strip()
    assert "instruction-nope" in error and "\n" not in error

    assert main(["registry", "gate", "twin-reranker"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["registry", "promote", "twin-reranker", "--version", "1", "--reason", "why"]) == 2
    assert "does not exist" in capsys.readouterr().err

    bad = tmp_path / "bad.yaml"
    bad.write_text("stage: dpo\nbeta: -1\n")
    assert main(["train", "dpo", "--config", str(bad)]) == 2
    assert "`beta`" in capsys.readouterr().err
