"""Training job configs: the shipped YAML files load, and mistakes are one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.support.one_line import one_line_error

from twinops.cli import main
from twinops.errors import ConfigError
from twinops.training import DAPTJob, DPOJob, RerankerJob, SFTJob, load_gate

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "training"
JOBS = {"dapt": DAPTJob, "sft": SFTJob, "dpo": DPOJob, "reranker": RerankerJob}


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path: Path) -> None:
    if path.name == "gate.yaml":
        assert load_gate(path, "twin-llm").rules and load_gate(path, "twin-reranker").rules
        return
    stage = path.stem.split("-")[-1]
    job = JOBS[stage].from_yaml(path)
    assert job.stage == stage
    if path.name.startswith("gpu-7b"):
        assert job.trainer.bf16 and job.trainer.gradient_checkpointing and job.lora.r >= 16


def test_defaults_are_sized_for_two_cpu_cores() -> None:
    job = SFTJob()
    assert job.trainer.max_steps <= 10 and job.trainer.max_length <= 256 and job.model is None
    # DAPT runs epochs over the author's text, with a ceiling; its local config is its defaults.
    dapt = DAPTJob()
    assert dapt.trainer.max_steps == -1 and 0 < dapt.trainer.step_cap <= 60
    local = DAPTJob.from_yaml(CONFIGS / "local-dapt.yaml")
    sizing = {"learning_rate", "num_train_epochs", "max_steps", "step_cap", "max_length"}
    assert local.lora == dapt.lora
    assert local.trainer.model_dump(include=sizing) == dapt.trainer.model_dump(include=sizing)


def test_config_mistakes_are_one_line(tmp_path: Path) -> None:
    typo = tmp_path / "typo.yaml"
    typo.write_text("stage: sft\ntrainer:\n  learning_rat: 0.1\n")
    with pytest.raises(ConfigError, match=r"`trainer\.learning_rat` Extra inputs"):
        SFTJob.from_yaml(typo)
    with pytest.raises(ConfigError, match="is a `sft` config, not `dpo`"):
        DPOJob.from_yaml(typo)
    with pytest.raises(ConfigError, match="does not exist"):
        SFTJob.from_yaml(tmp_path / "missing.yaml")
    (tmp_path / "gate.yaml").write_text("twin-llm:\n  rules: []\n")
    with pytest.raises(ConfigError, match=r"gate 'twin-llm' in .*gate\.yaml is invalid: `rules`"):
        load_gate(tmp_path / "gate.yaml", "twin-llm")
    with pytest.raises(ConfigError, match="no entry for 'twin-reranker'"):
        load_gate(tmp_path / "gate.yaml", "twin-reranker")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("twin-llm:\n  rules: [\n", "is not readable YAML"),  # the YAML error spans lines
        ("- twin-llm\n", "must be a mapping of model names to gates, not a list"),
        ("twin-llm:\n  rules:\n    - {metric: perplexity, direction: down}\n", "`rules.0.direction`"),
        ("twin-reranker: {rules: [{metric: mrr, direction: higher}]}\n", "no entry for 'twin-llm'"),
    ],
)
def test_a_bad_gate_file_is_one_line_and_exit_2(
    settings, tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    """`twinops registry gate --gate FILE` reads the file (through the one config loader) first."""
    gate = tmp_path / "gate.yaml"
    gate.write_text(text)
    one_line_error(main, ["registry", "gate", "twin-llm", "--gate", str(gate)], capsys, message, str(gate))
