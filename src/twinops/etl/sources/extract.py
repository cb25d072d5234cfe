"""Turning bytes into text and metadata: HTML via trafilatura, Markdown front matter, dates."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime

import yaml

from twinops.etl.sources.base import Extracted, ItemFailed

FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.DOTALL)
# Below this an "article" is a navigation stub or an error page the extractor fell back on.
MIN_ARTICLE_WORDS = 20
HEADING = re.compile(r"\A\s*#\s+(.+?)\s*#*\s*(?:\r?\n|\Z)")
# Pages a server answers with 200 that are not the author's writing: a crawler that meets them is
# broken (blocked, logged out, pointed at a dead URL), so they fail the item instead of filling
# the index. Looked for only in short pages' titles and openings: an article may quote them.
NOT_CONTENT_MAX_WORDS = 250
NOT_CONTENT_MARKERS: dict[str, tuple[str, ...]] = {
    "bot challenge": (
        "verify you are human",
        "checking your browser",
        "just a moment...",
        "attention required",
        "are you a robot",
        "complete the captcha",
        "enable javascript and cookies to continue",
        "press & hold",
    ),
    "login wall": (
        "sign in to continue",
        "log in to continue",
        "login to continue",
        "you must be logged in",
        "please log in",
        "please sign in",
        "subscribe to continue reading",
        "create a free account to continue",
    ),
    "error page": (
        "page not found",
        "404 not found",
        "403 forbidden",
        "access denied",
        "internal server error",
        "service unavailable",
        "this page isn't available",
        "this page does not exist",
    ),
}


def decode_text(data: bytes, item: str) -> str:
    """UTF-8 (BOM allowed) or a one-line reason; silently mangled text would poison training."""
    if b"\x00" in data[:8192]:
        raise ItemFailed(f"{item} is binary, not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        bad = data[error.start : error.start + 1].hex()
        raise ItemFailed(
            f"{item} is not valid UTF-8 (byte 0x{bad} at offset {error.start}): re-save it as UTF-8"
        ) from error


def parse_date(value: object) -> datetime | None:
    """A timezone-aware datetime from the many shapes dates arrive in; None when unparseable."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    text = str(value).strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            parsed = parsedate_to_datetime(text)  # RFC 822, as in RSS
        except (TypeError, ValueError):
            return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def not_author_content(title: str, content: str) -> str | None:
    """``"bot challenge: 'verify you are human'"`` when a short page is not writing, else None."""
    if len(content.split()) > NOT_CONTENT_MAX_WORDS:
        return None
    opening = f"{title}\n{content[:400]}".lower()
    for kind, markers in NOT_CONTENT_MARKERS.items():
        for marker in markers:
            if marker in opening:
                return f"{kind}: {marker!r}"
    return None


def html_to_article(html: str | bytes, url: str | None = None) -> Extracted:
    """Main text as Markdown plus title/author/date, with trafilatura (no hand-written scraping)."""
    import trafilatura
    from trafilatura.metadata import extract_metadata

    markdown = trafilatura.extract(
        html,
        url=url,
        output_format="markdown",
        include_formatting=True,
        include_links=False,
        include_comments=False,
        include_tables=True,
        favor_recall=True,
    )
    words = len(markdown.split()) if markdown else 0
    if words < MIN_ARTICLE_WORDS:
        raise ItemFailed(f"no main text found in {url or 'the page'} ({words} words)")
    metadata = extract_metadata(html, default_url=url)
    title = (metadata.title or "").strip() if metadata else ""
    content = markdown.strip()
    heading = HEADING.match(content)
    if heading and (not title or heading.group(1).strip() in title):
        # The extractor repeats the title as a top heading: keep it once, in ``title``, without
        # the "| Site name" suffix page titles often carry.
        title = heading.group(1).strip()
        content = content[heading.end() :].strip()
    problem = not_author_content(title, content)
    if problem:
        raise ItemFailed(f"{url or 'the page'} is not the author's content ({problem})")
    return Extracted(
        title=title,
        content=content,
        published_at=parse_date(metadata.date) if metadata else None,
        page_author=(metadata.author or None) if metadata else None,
    )


def split_front_matter(text: str) -> tuple[dict, str]:
    """YAML front matter (``---`` fenced) and the body; no front matter gives ``{}``."""
    match = FRONT_MATTER.match(text)
    if not match:
        return {}, text
    try:
        meta = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError as error:
        raise ItemFailed(f"front matter is not valid YAML ({str(error).splitlines()[0]})") from error
    if not isinstance(meta, dict):
        raise ItemFailed("front matter must be a YAML mapping")
    return meta, text[match.end() :]


def markdown_title(body: str) -> tuple[str, str]:
    """The first ``# Heading`` as title and the body without it."""
    match = HEADING.match(body)
    if match:
        return match.group(1).strip(), body[match.end() :].strip()
    return "", body.strip()


def first_line_title(text: str, max_chars: int = 100) -> tuple[str, str]:
    """A short first line followed by a blank line reads as a title in plain-text posts."""
    head, sep, rest = text.strip().partition("\n")
    if sep and rest.startswith(("\n", "\r\n")) and len(head.strip()) <= max_chars:
        return head.strip(), rest.strip()
    return "", text.strip()
