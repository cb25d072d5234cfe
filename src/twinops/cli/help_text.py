"""Help texts that reflow to the terminal's width.

Docstrings are wrapped by hand at the source's line length, and typer's rich help keeps those line
breaks: on a wide terminal each sentence still breaks where the source did, and on a narrow one
rich wraps every source line again, leaving a short line at each. Joining the lines of each prose
paragraph lets rich wrap it at the width it has. What is laid out by hand keeps its lines: an
indented paragraph (examples, commands), list items, and click's ``\\b`` no-rewrap paragraphs.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

_LIST_ITEM = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s")


def _reflow_paragraph(paragraph: str) -> str:
    lines = [line for line in paragraph.splitlines() if line.strip()]
    if not lines or paragraph.startswith("\b") or all(line[0].isspace() for line in lines):
        return paragraph
    joined: list[str] = []
    for line in lines:
        if joined and not _LIST_ITEM.match(line):
            joined[-1] = f"{joined[-1]} {line.strip()}"
        else:
            joined.append(line.rstrip())
    return "\n".join(joined)


def reflow(text: str) -> str:
    """``text`` (a docstring or help string) with each prose paragraph on one line."""
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(_reflow_paragraph(paragraph) for paragraph in paragraphs)


def reflow_help(command: Any) -> Any:
    """Reflow the help of a click command, its parameters and every subcommand, in place."""
    if command.help:
        command.help = reflow(command.help)
    for parameter in command.params:
        if getattr(parameter, "help", None):
            parameter.help = reflow(parameter.help)
    for subcommand in getattr(command, "commands", {}).values():
        reflow_help(subcommand)
    return command
