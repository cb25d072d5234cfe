"""The documentation builds, and its links hold.

`make docs` builds ``docs/`` with MkDocs (Material) in strict mode; this runs the same build into a
temporary folder, so a link to a missing page or anchor, a snippet that lost its README section, or
a page left out of the navigation fails the fast tier (and CI). The README links into ``docs/``;
GitHub shows those links, MkDocs never sees them, so they are checked here too.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build(project: Path, site: Path) -> subprocess.CompletedProcess[str]:
    # cwd=project: pymdownx.snippets resolves README.md against the working directory.
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", "mkdocs.yml", "-d", str(site)],
        cwd=project,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        check=False,
    )


def copy_project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    shutil.copytree(ROOT / "docs", project / "docs")
    for name in ("mkdocs.yml", "README.md"):
        shutil.copy(ROOT / name, project / name)
    return project


def test_the_docs_build_strict(tmp_path: Path) -> None:
    result = build(ROOT, tmp_path / "site")
    assert result.returncode == 0, result.stderr[-3000:]
    index = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    # The overview and the architecture picture come from the README, as the README has them now.
    assert 'class="mermaid"' in index and "LLM Twin factory" in index
    assert "--8&lt;--" not in index and "--8<--" not in index


def test_a_broken_link_fails_the_build(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    page = project / "docs" / "feature.md"
    page.write_text(page.read_text() + "\nSee [the gate](training.md#no-such-section).\n")
    result = build(project, tmp_path / "site")
    assert result.returncode != 0
    assert "no-such-section" in result.stderr


def test_a_readme_section_the_docs_include_cannot_vanish(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    readme = project / "README.md"
    readme.write_text(readme.read_text().replace("[start:architecture]", "[start:picture]"))
    assert build(project, tmp_path / "site").returncode != 0


def test_the_readme_links_resolve() -> None:
    """Every relative link in the README names a file that exists, and an anchor into a docs page
    names one of that page's headings (as MkDocs and GitHub slug them)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)\s]+)\)", readme)
    relative = [link for link in links if not re.match(r"[a-z]+:", link)]
    assert relative, "the README links to no docs page"
    broken = []
    for link in relative:
        path, _, anchor = link.partition("#")
        target = ROOT / path
        if not target.is_file():
            broken.append(link)
        elif anchor:
            headings = re.findall(r"^#+ (.+)$", target.read_text(encoding="utf-8"), re.M)
            slugs = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}
            if anchor not in slugs:
                broken.append(link)
    assert not broken, f"README.md links to what does not exist: {broken}"
