"""Pick a source kind from the source string: URL pattern for remote sources, file type for local ones."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from twinops.etl.jobs import EtlJob, SourceKind, SourceSpec
from twinops.etl.sources.base import SourceFailed

# Forges whose https://host/owner/repo URLs are clonable repositories rather than web pages.
GIT_FORGES = {"github.com", "gitlab.com", "bitbucket.org", "codeberg.org", "git.sr.ht"}
FEED_SUFFIXES = (
    "/feed", "/rss", "/atom", ".rss", ".atom", "/feed.xml", "/rss.xml", "/atom.xml", "/index.xml",
)  # fmt: skip
SCP_GIT = re.compile(r"^[\w.-]+@[\w.-]+:[\w./~-]+$")  # git@github.com:owner/repo.git
LOCAL_TEXT_SUFFIXES = {".md", ".markdown", ".txt", ".html", ".htm"}


def _url_kind(source: str) -> SourceKind:
    parts = urlsplit(source)
    if not parts.hostname:
        raise SourceFailed(f"malformed URL {source!r}: expected scheme://host/path")
    path = parts.path.rstrip("/").lower()
    segments = [segment for segment in path.split("/") if segment]
    if path.endswith(".git") or (parts.hostname in GIT_FORGES and len(segments) == 2):
        return SourceKind.GIT
    name = segments[-1] if segments else ""
    if "sitemap" in name and name.endswith((".xml", ".xml.gz")):
        return SourceKind.SITEMAP
    if path.endswith(FEED_SUFFIXES):
        return SourceKind.FEED
    return SourceKind.WEB


def _path_kind(path: Path, source: str) -> SourceKind:
    if path.is_dir():
        bare_repository = (path / "HEAD").is_file() and (path / "objects").is_dir()
        return SourceKind.GIT if (path / ".git").exists() or bare_repository else SourceKind.FOLDER
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".zip":
            return SourceKind.EXPORT
        if suffix in LOCAL_TEXT_SUFFIXES:
            return SourceKind.FOLDER
        raise SourceFailed(
            f"unknown source kind for {source!r} ({suffix or 'no suffix'}): expected an http(s) URL, "
            "a git URL, a folder, a .zip export, or a .md/.txt/.html file"
        )
    raise SourceFailed(f"{source!r} is neither a URL nor an existing local path: fix the source string")


def detect_kind(spec: SourceSpec, job: EtlJob) -> SourceKind:
    """The kind of ``spec``; raises SourceFailed with a one-line reason when it has none."""
    if spec.kind is not None:
        return spec.kind
    source = spec.source.strip()
    if SCP_GIT.match(source):
        return SourceKind.GIT
    scheme = urlsplit(source).scheme.lower()
    if scheme in {"http", "https"}:
        return _url_kind(source)
    if scheme in {"git", "ssh", "git+ssh", "git+https"}:
        return SourceKind.GIT
    if scheme == "file":
        return _path_kind(Path(urlsplit(source).path), source)
    if scheme and len(scheme) > 1:  # one letter is a Windows drive, not a scheme
        raise SourceFailed(f"unknown source kind {scheme!r} in {source!r}: use http(s), git, or a local path")
    return _path_kind(job.resolve_path(source), source)
