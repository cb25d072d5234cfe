"""Every command answers --help, wrapped to the terminal; errors are one line with exit code 2."""

import itertools
import re
import subprocess
import sys

import click
import pytest
import typer.main

from twinops.cli import app, main
from twinops.cli.help_text import reflow


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


# --help wraps its prose at the terminal's width, not where the source's lines end. The docstrings
# are wrapped by hand at about 95 columns; typer's rich help kept those breaks, so at 120 columns
# every sentence broke where the source did, and at 60 rich wrapped each source line again and left
# a short line at each. The check: in every command's description, a line of prose never ends while
# the next word would still have fit on it.

ANSI = re.compile(r"\x1b\[[0-9;]*m")
WIDTHS = (120, 60)


def description(help_output: str) -> list[str]:
    """The lines between the usage line and the first panel (arguments, options, commands)."""
    lines = ANSI.sub("", help_output).splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("Usage:")) + 1
    end = next((i for i, line in enumerate(lines) if line.startswith("╭")), len(lines))
    return lines[start:end]


def early_breaks(lines: list[str], width: int) -> list[str]:
    """Prose lines that end although the next line's first word fits after them.

    Rich prints the text with one column of padding on each side, so a line of ``n`` characters
    (its left pad included) has room for a word of ``w`` when ``n + 1 + w <= width - 1``. Lines laid
    out by hand (indented examples) and list items are not prose and may end anywhere.
    """
    found = []
    for line, following in itertools.pairwise(lines):
        if not line.strip() or not following.strip():
            continue
        indented = (len(text) - len(text.lstrip()) > 1 for text in (line, following))
        if any(indented) or re.match(r"\s*(?:[-*•]|\d+[.)])\s", following):
            continue
        word = following.split()[0]
        if len(line.rstrip()) + 1 + len(word) <= width - 1:
            found.append(f"{line.strip()!r} / {word!r}")
    return found


@pytest.mark.parametrize("width", WIDTHS)
def test_help_prose_wraps_at_the_terminal_width(width, monkeypatch, capsys) -> None:
    monkeypatch.setenv("COLUMNS", str(width))
    problems = {}
    for path in _all_command_paths():
        assert main([*path, "--help"]) == 0
        breaks = early_breaks(description(capsys.readouterr().out), width)
        if breaks:
            problems[" ".join(["twinops", *path])] = breaks
    assert not problems, f"--help at COLUMNS={width} breaks lines where the source did: {problems}"


@pytest.mark.parametrize("width", WIDTHS)
def test_the_check_finds_the_source_line_breaks_without_reflow(width, monkeypatch, capsys) -> None:
    """typer's help as it comes, unreflowed, fails the same check on today's docstrings."""
    monkeypatch.setenv("COLUMNS", str(width))
    command = typer.main.get_command(app)
    for path in (["run"], ["serve"], ["etl"]):
        command([*path, "--help"], prog_name="twinops", standalone_mode=False)
        assert early_breaks(description(capsys.readouterr().out), width), (width, path)


def test_reflow_joins_prose_and_keeps_what_is_laid_out_by_hand() -> None:
    text = """First line.

    A sentence wrapped
    in the source, ending here.

    Examples:

      twinops etl --author "Ada Quill" data/demo-corpus
      twinops etl --config configs/etl/demo.yaml

    - one item that
      goes on
    - another item
    """
    assert reflow(text) == (
        "First line.\n\n"
        "A sentence wrapped in the source, ending here.\n\n"
        "Examples:\n\n"
        '  twinops etl --author "Ada Quill" data/demo-corpus\n'
        "  twinops etl --config configs/etl/demo.yaml\n\n"
        "- one item that goes on\n- another item"
    )


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
