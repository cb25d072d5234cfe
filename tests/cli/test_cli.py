"""Every command answers --help; errors are one line with exit code 2."""

import subprocess
import sys

import click
import pytest
import typer.main

from twinops.cli import app, main


def _all_command_paths() -> list[list[str]]:
    root = typer.main.get_command(app)
    paths: list[list[str]] = [[]]

    def walk(command: click.Command, prefix: list[str]) -> None:
        # typer's groups are not click.Group subclasses in every version: look for sub-commands.
        for name, sub in getattr(command, "commands", {}).items():
            paths.append([*prefix, name])
            walk(sub, [*prefix, name])

    walk(root, [])
    return paths


@pytest.mark.parametrize("path", _all_command_paths(), ids=lambda p: " ".join(p) or "twinops")
def test_every_help(path: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*path, "--help"]) == 0
    out = capsys.readouterr().out
    assert "Usage" in out


def test_root_help_lists_fti_stages(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--help"])
    out = capsys.readouterr().out
    for word in ("Feature", "Training", "services", "models", "run"):
        assert word in out


def test_console_script_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "twinops.cli", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "twinops" in result.stdout


def test_missing_model_is_one_line_exit_2(home, monkeypatch, capsys) -> None:
    monkeypatch.setenv("TWINOPS_BASE_MODEL", "/no/such/model")
    code = main(["models", "path"])
    err = capsys.readouterr().err
    assert code == 2
    assert "TWINOPS_BASE_MODEL" in err and "Traceback" not in err


def test_debug_shows_the_traceback(home, monkeypatch) -> None:
    monkeypatch.setenv("TWINOPS_BASE_MODEL", "/no/such/model")
    with pytest.raises(Exception, match="TWINOPS_BASE_MODEL"):
        main(["--debug", "models", "path"])
