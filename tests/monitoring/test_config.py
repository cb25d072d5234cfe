"""Drift settings: the YAML file and the command's options go through the one config loader, and every
mistake is one line (exit 2 from the CLI)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.support.one_line import one_line_error

from twinops.cli import main
from twinops.errors import ConfigError
from twinops.monitoring.config import DriftConfig, load_drift_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "drift"


def test_the_shipped_defaults_are_the_models_and_options_override_the_file(tmp_path: Path) -> None:
    assert load_drift_config(CONFIGS / "default.yaml") == DriftConfig()
    path = tmp_path / "drift.yaml"
    path.write_text("batch_size: 8\np_val: 0.01\n")
    config = load_drift_config(path, batch_size=16, cooldown_seconds=None)
    assert (config.batch_size, config.p_val) == (16, 0.01)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("p_val: [\n", "is not readable YAML"),  # the YAML error spans lines
        ("- p_val\n", "must be a mapping of settings, not a list"),
        ("p_val: 2\n", "is invalid: `p_val` Input should be less than 1"),
        ("p_vall: 0.1\n", "`p_vall` Extra inputs are not permitted"),
    ],
)
def test_a_bad_drift_config_is_one_line_and_exit_2(
    settings, tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    path = tmp_path / "drift.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="drift config"):
        load_drift_config(path)
    # `drift report` reads the config before it opens anything.
    one_line_error(
        main, ["drift", "report", "--current", "requests", "--config", str(path)], capsys, message, str(path)
    )


def test_a_bad_option_names_itself(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"drift config with batch_size=1 is invalid: `batch_size`"):
        load_drift_config(None, batch_size=1)
    with pytest.raises(ConfigError, match=r"drift config .*missing\.yaml does not exist"):
        load_drift_config(tmp_path / "missing.yaml")
