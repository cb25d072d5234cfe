"""Export archives people can download today: Medium, LinkedIn and Substack .zip files."""

from __future__ import annotations

import csv
import io
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Literal

from twinops.domain import Author, Category, Platform, RawDocument
from twinops.etl.sources.base import Batch, BatchSource, Extractor, ItemFailed, SourceFailed, local_identity
from twinops.etl.sources.extract import decode_text, html_to_article, parse_date

if TYPE_CHECKING:
    from twinops.etl.options import FileLimits
    from twinops.etl.sources.base import SourceContext

MAX_CSV_BYTES = 50_000_000  # LinkedIn Shares.csv grows with years of posting
LINKEDIN_SHARE_COLUMNS = ("Date", "ShareLink", "ShareCommentary")
SUBSTACK_COLUMNS = ("post_id", "title")


def _read(archive: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int) -> bytes:
    """A member's bytes within ``cap`` (declared and actual: zip bombs lie about sizes)."""
    if info.file_size > cap:
        raise ItemFailed(f"{info.filename} is {info.file_size:,} bytes, over the {cap:,} cap")
    try:
        with archive.open(info) as member:
            data = member.read(cap + 1)
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise ItemFailed(f"{info.filename} is corrupt in the archive ({error})") from error
    if len(data) > cap:
        raise ItemFailed(f"{info.filename} is over the {cap:,}-byte cap")
    return data


def _members(archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    return {info.filename: info for info in archive.infolist() if not info.is_dir()}


def _html_meta(page: bytes, xpath: str) -> str | None:
    """One microformat value (Medium marks posts up as h-entry) from an export page."""
    from lxml import html as lxml_html  # lxml's default parser is per thread: safe here

    try:
        values = lxml_html.fromstring(page).xpath(xpath)
    except (ValueError, lxml_html.etree.ParserError):
        return None
    return str(values[0]).strip() if values else None


def _article(
    page: bytes,
    identity: str,
    author: Author,
    platform: Platform,
    member: str,
    *,
    extract: Extractor,
    **extra: str | None,
) -> RawDocument:
    extracted = extract(page, identity if identity.startswith("http") else None)
    return RawDocument(
        platform=platform,
        category=Category.ARTICLES,
        source_url=identity,
        author_id=author.id,
        author_name=author.full_name,
        title=extra.pop("title", None) or extracted.title,
        content=extracted.content,
        published_at=parse_date(extra.pop("published", None)) or extracted.published_at,
        metadata={"archive_member": member, **extra},
    )


def _medium(archive: zipfile.ZipFile, author: Author, limits: FileLimits, extract: Extractor) -> Batch:
    batch = Batch()
    for name, info in _members(archive).items():
        path = PurePosixPath(name)
        if path.parent.name != "posts" or path.suffix.lower() != ".html":
            continue
        if path.name.startswith("draft"):
            batch.skipped.append((name, "unpublished draft"))
            continue
        try:
            page = _read(archive, info, limits.max_file_bytes)
            canonical = _html_meta(page, "//a[contains(@class,'p-canonical')]/@href")
            identity = canonical or local_identity("medium-export", author, path.name)
            published = _html_meta(page, "//time[contains(@class,'dt-published')]/@datetime")
            title = _html_meta(page, "//h1[contains(@class,'p-name')]//text()")
            batch.documents.append(
                _article(
                    page,
                    identity,
                    author,
                    Platform.MEDIUM,
                    name,
                    extract=extract,
                    title=title,
                    published=published,
                )
            )
        except ItemFailed as error:
            batch.failures.append((name, str(error)))
    return batch


def _csv_rows(archive: zipfile.ZipFile, info: zipfile.ZipInfo, required: tuple[str, ...]) -> list[dict]:
    text = decode_text(_read(archive, info, MAX_CSV_BYTES), info.filename)
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        columns = [column.strip() for column in reader.fieldnames or []]
        missing = [column for column in required if column not in columns]
        if missing:
            raise ItemFailed(
                f"{info.filename} lacks column(s) {', '.join(missing)} "
                f"(has: {', '.join(columns) or 'none'}): use an unmodified export"
            )
        return [{(k or "").strip(): (v or "") for k, v in row.items()} for row in reader]
    except csv.Error as error:
        raise ItemFailed(f"{info.filename} is not valid CSV ({error})") from error


def _linkedin(archive: zipfile.ZipFile, author: Author, limits: FileLimits, extract: Extractor) -> Batch:
    batch = Batch()
    for name, info in _members(archive).items():
        path = PurePosixPath(name)
        try:
            if path.name.lower() == "shares.csv":
                batch.extend(_linkedin_shares(archive, info, author))
            elif "articles" in (p.lower() for p in path.parts[:-1]) and path.suffix.lower() == ".html":
                page = _read(archive, info, limits.max_file_bytes)
                identity = local_identity("linkedin-export", author, "articles", path.name)
                document = _article(page, identity, author, Platform.LINKEDIN, name, extract=extract)
                batch.documents.append(document)
        except ItemFailed as error:
            batch.failures.append((name, str(error)))
    return batch


def _linkedin_shares(archive: zipfile.ZipFile, info: zipfile.ZipInfo, author: Author) -> Batch:
    batch = Batch()
    for number, row in enumerate(_csv_rows(archive, info, LINKEDIN_SHARE_COLUMNS), start=2):
        # LinkedIn wraps multi-line commentary in extra quotes; reposts have none at all.
        text = row["ShareCommentary"].strip().strip('"').strip()
        item = f"{info.filename}:{number}"
        if not text:
            batch.skipped.append((item, "share without commentary (a repost)"))
            continue
        link = row["ShareLink"].strip()
        title = text.splitlines()[0][:80]
        batch.documents.append(
            RawDocument(
                platform=Platform.LINKEDIN,
                category=Category.POSTS,
                source_url=link or local_identity("linkedin-export", author, "shares", str(number)),
                author_id=author.id,
                author_name=author.full_name,
                title=title,
                content=text,
                published_at=parse_date(row["Date"]),
                metadata={"archive_member": info.filename, "shared_url": row.get("SharedUrl") or None},
            )
        )
    return batch


def _substack(
    archive: zipfile.ZipFile, author: Author, limits: FileLimits, site_url: str | None, extract: Extractor
) -> Batch:
    members = _members(archive)
    listing = next(info for name, info in members.items() if PurePosixPath(name).name == "posts.csv")
    by_name = {PurePosixPath(name).name: info for name, info in members.items() if "posts/" in name}
    batch = Batch()
    rows = _csv_rows(archive, listing, SUBSTACK_COLUMNS)  # missing columns fail the whole export
    for row in rows:
        post_id = row["post_id"].strip()
        if row.get("is_published", "true").strip().lower() == "false":
            batch.skipped.append((post_id, "unpublished draft"))
            continue
        info = by_name.get(f"{post_id}.html")
        if info is None:
            batch.failures.append((post_id, f"posts/{post_id}.html is missing from the archive"))
            continue
        slug_part = post_id.partition(".")[2] or post_id
        identity = (
            f"{site_url.rstrip('/')}/p/{slug_part}"
            if site_url
            else local_identity("substack-export", author, post_id)
        )
        try:
            body = decode_text(_read(archive, info, limits.max_file_bytes), info.filename)
            # Substack exports only the post body: wrap it so the extractor sees an article.
            page = f"<html><body><article>{body}</article></body></html>"
            document = _article(
                page.encode("utf-8"),
                identity,
                author,
                Platform.SUBSTACK,
                info.filename,
                extract=extract,
                title=row["title"].strip() or None,
                published=row.get("post_date") or None,
                subtitle=row.get("subtitle") or None,
            )
            batch.documents.append(document)
        except ItemFailed as error:
            batch.failures.append((post_id, str(error)))
    return batch


def read_export(
    path: Path,
    author: Author,
    limits: FileLimits,
    *,
    site_url: str | None = None,
    extract: Extractor = html_to_article,
) -> Batch:
    """Detect which export ``path`` is and read it; SourceFailed when it is none of them."""
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError as error:
        raise SourceFailed(f"{path} does not exist: fix the path") from error
    except (zipfile.BadZipFile, OSError) as error:
        reason = f"{path.name} is not a valid zip archive ({error}): download the export again"
        raise SourceFailed(reason) from error
    with archive:
        names = [PurePosixPath(name) for name in _members(archive)]
        basenames = {name.name.lower() for name in names}
        try:
            if "posts.csv" in basenames:
                batch = _substack(archive, author, limits, site_url, extract)
            elif "shares.csv" in basenames or any("articles" in str(n.parent).lower() for n in names):
                batch = _linkedin(archive, author, limits, extract)
            elif any(n.parent.name == "posts" and n.suffix.lower() == ".html" for n in names):
                batch = _medium(archive, author, limits, extract)
            else:
                raise SourceFailed(
                    f"{path.name} is not a Medium, LinkedIn or Substack export "
                    "(no posts/*.html, Shares.csv or posts.csv inside)"
                )
        except ItemFailed as error:  # the listing itself is unusable: nothing from this export
            raise SourceFailed(str(error)) from error
    if not batch.documents and not batch.failures:
        raise SourceFailed(f"{path.name} holds no published posts")
    return batch


class ExportSource(BatchSource):
    """A Medium, LinkedIn or Substack export .zip."""

    kind: Literal["export"] = "export"

    def read(self, ctx: SourceContext) -> Batch:
        path = ctx.job.resolve_path(self.source.strip().removeprefix("file://"))
        return read_export(path, ctx.author, ctx.job.files, site_url=self.site_url, extract=ctx.extract)
