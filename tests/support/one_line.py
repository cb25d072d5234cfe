"""The house's answer to bad input, checked one way everywhere: exit code 2 and one line on stderr
that names what is wrong (no traceback, nothing else printed)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

EXIT_BAD_INPUT = 2


def assert_one_line_exit_2(code: int, err: str, *needles: str) -> str:
    """The single line of ``err`` after exit ``code``; every needle is in it (white space folded,
    so a line a terminal wrapped still matches)."""
    assert code == EXIT_BAD_INPUT, f"exit {code}, not {EXIT_BAD_INPUT}: {err}"
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"{len(lines)} lines, not one:\n{err}"
    folded = " ".join(lines[0].split())
    missing = [needle for needle in needles if needle not in folded]
    assert not missing, f"{missing} not in: {folded}"
    return lines[0]


def one_line_error(
    main: Callable[[Sequence[str]], int],
    argv: Sequence[str],
    capsys: pytest.CaptureFixture[str],
    *needles: str,
) -> str:
    """Run an entry point's ``main(argv)`` and check its answer with ``assert_one_line_exit_2``."""
    code = main(list(argv))
    return assert_one_line_exit_2(code, capsys.readouterr().err, *needles)
