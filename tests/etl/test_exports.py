"""Medium, LinkedIn and Substack export archives built by the test, good and broken."""

from __future__ import annotations

import zipfile
from pathlib import Path

from twinops.domain import Category, Platform
from twinops.etl import EtlJob, run_etl
from twinops.infra.documents import DocumentRepository
from twinops.infra.mongo import connect

BODY = (
    "<p>Vector search is a database problem before it is a model problem. Every point carries its "
    "provenance, filters run before ranking, and aliases make every swap reversible.</p>"
    "<p>Re-embed incrementally: only chunks whose content hash changed need new vectors.</p>"
)


def _medium_post(title: str, slug: str) -> str:
    return (
        f"<!DOCTYPE html><html><head><title>{title}</title></head><body><article class='h-entry'>"
        f"<header><h1 class='p-name'>{title}</h1></header>"
        f"<section data-field='body' class='e-content'>{BODY}</section>"
        f"<footer><p>By <a class='p-author h-card' href='https://medium.com/@ada'>Ada Quill</a> on "
        f"<a href='https://medium.com/p/{slug}'>"
        "<time class='dt-published' datetime='2024-02-01T10:00:00.000Z'>"
        f"February 1, 2024</time></a>.</p><p><a href='https://medium.com/@ada/{slug}' class='p-canonical'>"
        "Canonical link</a></p></footer></article></body></html>"
    )


def _zip(path: Path, members: dict[str, str | bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _run(mongo_settings, *sources: str, **spec):
    entries = [{"source": s, **spec} for s in sources]
    job = EtlJob.model_validate({"authors": [{"full_name": "Ada Quill", "sources": entries}]})
    return run_etl(job, mongo_settings)


def _stored(mongo_settings) -> dict[str, object]:
    repo = DocumentRepository(connect(mongo_settings))
    return {d.document.source_url: d.document for d in repo.changed_since()}


def test_medium_export(tmp_path: Path, mongo_settings) -> None:
    archive = _zip(
        tmp_path / "medium-export.zip",
        {
            "README.html": "<html><body>Your Medium data</body></html>",
            "profile/profile.html": "<html><body>Ada</body></html>",
            "posts/2024-02-01_Vector-Search-abc123.html": _medium_post(
                "Vector Search", "vector-search-abc123"
            ),
            "posts/2024-03-01_Aliases-def456.html": _medium_post("Aliases", "aliases-def456"),
            "posts/draft_Unfinished-0000.html": _medium_post("Unfinished", "unfinished"),
        },
    )
    result = _run(mongo_settings, str(archive)).sources[0]
    assert (result.kind, result.new, result.skipped, result.failed) == ("export", 2, 1, 0)
    stored = _stored(mongo_settings)
    post = stored["https://medium.com/@ada/vector-search-abc123"]
    assert post.platform is Platform.MEDIUM and post.category is Category.ARTICLES
    assert post.title == "Vector Search" and post.published_at.year == 2024
    assert "database problem" in post.content and "Canonical link" not in post.content


def test_linkedin_export_with_shares_and_articles(tmp_path: Path, mongo_settings) -> None:
    shares = (
        "Date,ShareLink,ShareCommentary,SharedUrl,MediaUrl,Visibility\n"
        "2024-05-01 09:30:00,https://www.linkedin.com/feed/update/urn:li:share:1,"
        '"""Rollbacks are a feature.\n\n'
        'If your rollback needs a meeting, you do not have one.""",,,MEMBER_NETWORK\n'
        "2024-05-02 09:30:00,https://www.linkedin.com/feed/update/urn:li:share:2,,https://example.org,,PUBLIC\n"
    )
    article = f"<html><head><title>Golden Sets</title></head><body><h1>Golden Sets</h1>{BODY}</body></html>"
    archive = _zip(
        tmp_path / "Basic_LinkedInDataExport.zip",
        {
            "Shares.csv": shares,
            "Articles/Articles/golden-sets.html": article,
            "Profile.csv": "First Name\nAda\n",
        },
    )
    result = _run(mongo_settings, str(archive)).sources[0]
    assert (result.new, result.skipped, result.failed) == (2, 1, 0)  # the repost is skipped
    stored = _stored(mongo_settings)
    post = stored["https://www.linkedin.com/feed/update/urn:li:share:1"]
    assert post.platform is Platform.LINKEDIN and post.category is Category.POSTS
    assert post.content.startswith("Rollbacks are a feature.") and "meeting" in post.content
    assert post.published_at.isoformat().startswith("2024-05-01T09:30")
    article_doc = stored["linkedin-export://ada-quill/articles/golden-sets.html"]
    assert article_doc.title == "Golden Sets" and article_doc.category is Category.ARTICLES


def test_substack_export(tmp_path: Path, mongo_settings) -> None:
    posts = (
        "post_id,post_date,is_published,email_sent_at,inbox_sent_at,type,audience,title,subtitle,podcast_url\n"
        "101.vector-search,2024-06-01T08:00:00.000Z,true,,,newsletter,everyone,Vector Search,Provenance,\n"
        "102.draft-thing,,false,,,newsletter,everyone,Draft,,\n"
        "103.lost-post,2024-06-08T08:00:00.000Z,true,,,newsletter,everyone,Lost,,\n"
    )
    archive = _zip(tmp_path / "adaquill.zip", {"posts.csv": posts, "posts/101.vector-search.html": BODY})
    result = _run(mongo_settings, str(archive), site_url="https://adaquill.substack.com").sources[0]
    assert (result.new, result.skipped, result.failed) == (1, 1, 1)
    assert "103.lost-post" in result.errors[0] and "missing from the archive" in result.errors[0]
    post = _stored(mongo_settings)["https://adaquill.substack.com/p/vector-search"]
    assert post.platform is Platform.SUBSTACK and post.title == "Vector Search"
    assert post.metadata["subtitle"] == "Provenance" and post.published_at.month == 6


def test_broken_archives_leave_nothing_behind(tmp_path: Path, mongo_settings) -> None:
    good = _zip(tmp_path / "good.zip", {"posts/2024_A-1.html": _medium_post("A", "a-1")})
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    not_zip = tmp_path / "export.zip"
    not_zip.write_bytes(b"this is not a zip archive at all")
    unknown = _zip(tmp_path / "photos.zip", {"IMG_0001.jpg": b"\xff\xd8\xff"})
    missing_columns = _zip(tmp_path / "substack.zip", {"posts.csv": "id,name\n1,x\n"})
    bad_bytes = _zip(
        tmp_path / "linkedin.zip",
        {"Shares.csv": b"Date,ShareLink,ShareCommentary\n2024-01-01,https://l.in/1,caf\xe9\n"},
    )
    summary = _run(
        mongo_settings,
        *(str(p) for p in (truncated, not_zip, unknown, missing_columns, bad_bytes, tmp_path / "notes.docx")),
    )
    reasons = [result.reason for result in summary.sources]
    assert "not a valid zip archive" in reasons[0]
    assert "not a valid zip archive" in reasons[1]
    assert "not a Medium, LinkedIn or Substack export" in reasons[2]
    assert "lacks column(s) post_id, title" in reasons[3]
    assert "not valid UTF-8 (byte 0xe9" in reasons[4]
    assert "neither a URL nor an existing local path" in reasons[5]
    assert all("\n" not in reason for reason in reasons)
    assert summary.all_failed
    assert DocumentRepository(connect(mongo_settings)).count() == 0
