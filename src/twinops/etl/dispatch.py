"""Pick a source kind from the source string: URL pattern for remote sources, file type for local ones.

What ``kind: auto`` (the default) means; a kind named in the config skips this. The names are
``twinops.etl.sources.SOURCE_KINDS``' (tests/etl check that every one returned here is).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from twinops.etl.sources.base import JobOptions, SourceFailed

# Forges whose https://host/owner/repo URLs are clonable repositories rather than web pages.
GIT_FORGES = {"github.com", "gitlab.com", "bitbucket.org", "codeberg.org", "git.sr.ht"}
FEED_SUFFIXES = (
    "/feed", "/rss", "/atom", ".rss", ".atom", "/feed.xml", "/rss.xml", "/atom.xml", "/index.xml",
)  # fmt: skip
SCP_GIT = re.compile(r"^[\w.-]+@[\w.-]+:[\w./~-]+$")  # git@github.com:owner/repo.git
LOCAL_TEXT_SUFFIXES = {".md", ".markdown", ".txt", ".html", ".htm"}


def _url_kind(source: str) -> str:
    parts = urlsplit(source)
    if not parts.hostname:
        raise SourceFailed(f"malformed URL {source!r}: expected scheme://host/path")
    path = parts.path.rstrip("/").lower()
    segments = [segment for segment in path.split("/") if segment]
    if path.endswith(".git") or (parts.hostname in GIT_FORGES and len(segments) == 2):
        return "git"
    name = segments[-1] if segments else ""
    if "sitemap" in name and name.endswith((".xml", ".xml.gz")):
        return "sitemap"
    if path.endswith(FEED_SUFFIXES):
        return "feed"
    return "web"


def _path_kind(path: Path, source: str) -> str:
    if path.is_dir():
        bare_repository = (path / "HEAD").is_file() and (path / "objects").is_dir()
        return "git" if (path / ".git").exists() or bare_repository else "folder"
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".zip":
            return "export"
        if suffix in LOCAL_TEXT_SUFFIXES:
            return "folder"
        raise SourceFailed(
            f"unknown source kind for {source!r} ({suffix or 'no suffix'}): expected an http(s) URL, "
            "a git URL, a folder, a .zip export, or a .md/.txt/.html file"
        )
    raise SourceFailed(f"{source!r} is neither a URL nor an existing local path: fix the source string")


def detect_kind(source: str, job: JobOptions) -> str:
    """The kind of ``source``; raises SourceFailed with a one-line reason when it has none."""
    source = source.strip()
    if SCP_GIT.match(source):
        return "git"
    scheme = urlsplit(source).scheme.lower()
    if scheme in {"http", "https"}:
        return _url_kind(source)
    if scheme in {"git", "ssh", "git+ssh", "git+https"}:
        return "git"
    if scheme == "file":
        return _path_kind(Path(urlsplit(source).path), source)
    if scheme and len(scheme) > 1:  # one letter is a Windows drive, not a scheme
        raise SourceFailed(f"unknown source kind {scheme!r} in {source!r}: use http(s), git, or a local path")
    return _path_kind(job.resolve_path(source), source)
