"""A local folder (or single file) of .md/.txt/.html writing."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from twinops.domain import Author, Category, Platform, RawDocument
from twinops.etl.sources.base import Batch, BatchSource, Extractor, ItemFailed, SourceFailed, local_identity
from twinops.etl.sources.extract import (
    decode_text,
    first_line_title,
    html_to_article,
    markdown_title,
    parse_date,
    split_front_matter,
)

if TYPE_CHECKING:
    from twinops.etl.options import FileLimits
    from twinops.etl.sources.base import SourceContext

MARKDOWN = {".md", ".markdown"}
TEXT = {".txt"}
HTML = {".html", ".htm"}
SUFFIXES = MARKDOWN | TEXT | HTML


def _enum_or(enum: type, value: Any, default: Any) -> Any:
    try:
        return enum(str(value).lower()) if value else default
    except ValueError as error:
        allowed = ", ".join(member.value for member in enum)
        raise ItemFailed(f"front matter value {value!r} is not one of {allowed}") from error


def _scalar(value: Any) -> str | int | float | bool | None:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    return str(value)


def text_document(
    text: str,
    suffix: str,
    identity: str,
    author: Author,
    *,
    relpath: str,
    platform: Platform,
    extract: Extractor = html_to_article,
) -> RawDocument:
    """A document from a text file's content; front matter (title, date, url, category) wins."""
    if suffix in HTML:
        extracted = extract(text, None)
        meta: dict[str, Any] = {}
        title, body, published = extracted.title, extracted.content, extracted.published_at
    else:
        meta, body = split_front_matter(text)
        title_from_body, body = (markdown_title if suffix in MARKDOWN else first_line_title)(body)
        title = str(meta.get("title") or title_from_body)
        published = parse_date(meta.get("date") or meta.get("published"))
    if not body.strip():
        raise ItemFailed(f"{relpath} has no text")
    default_category = Category.POSTS if suffix in TEXT else Category.ARTICLES
    extra = {k: _scalar(v) for k, v in meta.items() if k not in {"title", "date", "published", "url"}}
    extra.pop("category", None)
    extra.pop("platform", None)
    return RawDocument(
        platform=_enum_or(Platform, meta.get("platform"), platform),
        category=_enum_or(Category, meta.get("category"), default_category),
        source_url=str(meta.get("url") or meta.get("canonical_url") or identity),
        author_id=author.id,
        author_name=author.full_name,
        title=title,
        content=body.strip(),
        published_at=published,
        metadata={"path": relpath, **extra},
    )


def _files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(
        path
        for path in root.rglob("*")
        if path.is_file()
        and path.suffix.lower() in SUFFIXES
        and not any(part.startswith(".") for part in path.relative_to(root).parts)
    )


def read_folder(
    root: Path, author: Author, limits: FileLimits, extract: Extractor = html_to_article
) -> Batch:
    if not root.exists():
        raise SourceFailed(f"{root} does not exist: fix the path")
    files = _files(root)
    if not files:
        raise SourceFailed(f"no .md, .txt or .html files in {root}")
    batch = Batch()
    for path in files[limits.max_files :]:
        batch.skipped.append((str(path), f"over the {limits.max_files}-file cap"))
    for path in files[: limits.max_files]:
        relpath = path.name if root.is_file() else path.relative_to(root).as_posix()
        try:
            size = path.stat().st_size
            if size > limits.max_file_bytes:
                batch.skipped.append((relpath, f"{size:,} bytes is over the {limits.max_file_bytes:,} cap"))
                continue
            text = decode_text(path.read_bytes(), relpath)
            folder_name = root.parent.name if root.is_file() else root.name
            identity = local_identity("local", author, folder_name, relpath)
            suffix = path.suffix.lower()
            batch.documents.append(
                text_document(
                    text, suffix, identity, author, relpath=relpath, platform=Platform.LOCAL, extract=extract
                )
            )
        except ItemFailed as error:
            batch.failures.append((relpath, str(error)))
        except OSError as error:
            batch.failures.append((relpath, f"cannot read {relpath}: {error.strerror}"))
    return batch


class FolderSource(BatchSource):
    """A local folder (or one file) of .md/.txt/.html writing."""

    kind: Literal["folder"] = "folder"

    def read(self, ctx: SourceContext) -> Batch:
        path = ctx.job.resolve_path(self.source.strip().removeprefix("file://"))
        return read_folder(path, ctx.author, ctx.job.files, ctx.extract)
