"""Local folders, the dispatcher, YAML configs and the demo corpus that `make run` collects."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.support.one_line import one_line_error

from twinops.domain import Category, Platform
from twinops.errors import ConfigError
from twinops.etl import SOURCE_KINDS, EtlJob, run_etl
from twinops.etl.dispatch import detect_kind
from twinops.etl.sources.base import SourceFailed
from twinops.infra.documents import DocumentRepository
from twinops.infra.mongo import connect

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        ("https://blog.example.org/posts/hello", "web"),
        ("https://blog.example.org/sitemap.xml", "sitemap"),
        ("https://blog.example.org/post-sitemap.xml", "sitemap"),
        ("https://blog.example.org/feed", "feed"),
        ("https://ada.substack.com/feed", "feed"),
        ("https://medium.com/feed/@ada", "web"),  # answers with XML: expanded then
        ("https://github.com/ada/platform-tools", "git"),
        ("https://github.com/ada/platform-tools/blob/main/README.md", "web"),
        ("https://git.example.org/ada/tools.git", "git"),
        ("git@github.com:ada/tools.git", "git"),
        ("ssh://git@example.org/ada/tools", "git"),
    ],
)
def test_dispatch_by_url(source: str, kind: str) -> None:
    job = EtlJob.for_author("Ada", [source])
    spec = job.authors[0].sources[0]
    assert spec.kind == "auto"
    assert spec.resolved(job).kind == kind


def test_dispatch_by_file_type_and_bad_strings(tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "export.zip").write_bytes(b"")
    (tmp_path / "post.md").write_text("# Hi\n")
    (tmp_path / "report.docx").write_bytes(b"PK")
    job = EtlJob.for_author("Ada", ["x"], base_dir=tmp_path)

    def kind(source: str) -> str:
        return detect_kind(source, job)

    assert kind("notes") == "folder"
    assert kind(str(tmp_path / "export.zip")) == "export"
    assert kind("post.md") == "folder"
    for bad, reason in {
        "report.docx": "unknown source kind",
        "mailto:ada@example.org": "unknown source kind",
        "https:///path-only": "malformed URL",
        "http//example.org/x": "neither a URL nor an existing local path",
    }.items():
        with pytest.raises(SourceFailed, match=reason):
            kind(bad)


def test_folder_source_reads_front_matter_titles_and_reports_bad_files(
    tmp_path: Path, mongo_settings
) -> None:
    folder = tmp_path / "writing"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.md").write_text(
        "---\ntitle: Boring Wins\ndate: 2024-01-02\ntags: [k8s, platform]\n---\n\nBody of the post.\n"
    )
    (folder / "sub/b.md").write_text("# Heading Title\n\nSecond body.\n")
    (folder / "c.txt").write_text("Short post title\n\nA short post body.\n")
    (folder / "d.html").write_text(
        "<html><head><title>Html Post</title></head><body><article><p>"
        + "An html page with enough words to count as an article about queues and GPUs. " * 3
        + "</p></article></body></html>"
    )
    (folder / "bad.md").write_bytes(b"caf\xe9 au lait")
    (folder / ".hidden").mkdir()
    (folder / ".hidden/x.md").write_text("# hidden\n\nnope\n")
    (folder / "image.png").write_bytes(b"\x89PNG")

    summary = run_etl(EtlJob.for_author("Ada Quill", [str(folder)]), mongo_settings)
    result = summary.sources[0]
    assert (result.kind, result.new, result.failed, result.status) == ("folder", 4, 1, "ok")
    assert "bad.md is not valid UTF-8 (byte 0xe9 at offset 3)" in result.errors[0]

    stored = {
        d.document.metadata["path"]: d.document
        for d in DocumentRepository(connect(mongo_settings)).changed_since()
    }
    a = stored["a.md"]
    assert (a.title, a.content, a.category, a.platform) == (
        "Boring Wins",
        "Body of the post.",
        Category.ARTICLES,
        Platform.LOCAL,
    )
    assert a.published_at.isoformat().startswith("2024-01-02") and a.metadata["tags"] == "k8s, platform"
    assert a.source_url == "local://ada-quill/writing/a.md"
    assert (stored["sub/b.md"].title, stored["sub/b.md"].content) == ("Heading Title", "Second body.")
    assert (stored["c.txt"].title, stored["c.txt"].category) == ("Short post title", Category.POSTS)
    assert stored["d.html"].title == "Html Post" and "queues and GPUs" in stored["d.html"].content


def test_a_named_kind_is_used_as_is_and_keeps_its_options(tmp_path: Path) -> None:
    # A feed URL that dispatch would call a web page: the config's kind wins.
    job = EtlJob.for_author(
        "Ada", [{"source": "https://blog.example.org/notes", "kind": "feed", "limit": 3}], base_dir=tmp_path
    )
    spec = job.authors[0].sources[0]
    assert (spec.kind, spec.resolved(job).kind, spec.limit) == ("feed", "feed", 3)
    assert job.model_validate(job.model_dump()) == job  # the CLI re-validates a dumped job
    assert set(SOURCE_KINDS) == {"auto", "web", "feed", "sitemap", "git", "export", "folder"}


def test_an_unknown_kind_is_one_config_error_naming_the_known_kinds(tmp_path: Path, home, capsys) -> None:
    from twinops.cli import main

    config = tmp_path / "etl.yaml"
    config.write_text(
        "authors:\n  - full_name: Ada\n    sources:\n      - source: https://a.org/x\n        kind: rss\n"
    )
    with pytest.raises(ConfigError) as caught:
        EtlJob.from_yaml(config)
    message = str(caught.value)
    assert "\n" not in message and "'rss'" in message and "`authors.0.sources.0`" in message
    assert all(f"'{kind}'" in message for kind in SOURCE_KINDS)
    # Before anything is collected: no folder collector quietly reads https://a.org/x.
    one_line_error(main, ["etl", "--config", str(config)], capsys, "'rss'")


def test_yaml_config_resolves_paths_against_its_folder(tmp_path: Path) -> None:
    config = tmp_path / "configs" / "mine.yaml"
    config.parent.mkdir()
    config.write_text(
        "base_dir: ..\nlimit: 5\nauthors:\n  - full_name: Ada Quill\n    sources:\n      - corpus\n"
        "      - source: https://blog.example.org/feed.xml\n        since: 2024-01-01\n"
    )
    job = EtlJob.from_yaml(config)
    assert job.resolve_path("corpus") == tmp_path / "corpus"
    spec = job.authors[0].sources[1]
    assert spec.since.tzinfo is not None and job.limit == 5

    handbook = tmp_path / "handbook.yaml"
    handbook.write_text("parameters:\n  authors:\n    - full_name: Ada\n      sources: [https://a.org/x]\n")
    assert EtlJob.from_yaml(handbook).authors[0].full_name == "Ada"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("authors: []\n", "`authors` List should have at least 1 item"),
        ("authors:\n  - full_name: Ada\n", "`authors.0.sources` Field required"),
        ("authors:\n  - full_name: Ada\n    sources: [x]\n    extra: 1\n", "`authors.0.extra`"),
        ("- just a list\n", "must be a mapping"),
        ("authors: [\n", "not readable YAML"),
    ],
)
def test_bad_configs_fail_with_one_line(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError) as caught:
        EtlJob.from_yaml(config)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(ConfigError, match="does not exist"):
        EtlJob.from_yaml(tmp_path / "absent.yaml")


@pytest.mark.parametrize("name", sorted(p.name for p in (PROJECT_ROOT / "configs/etl").glob("*.yaml")))
def test_shipped_configs_are_valid(name: str) -> None:
    job = EtlJob.from_yaml(PROJECT_ROOT / "configs/etl" / name)
    assert job.authors and all(entry.sources for entry in job.authors)


def test_demo_config_collects_the_demo_corpus(mongo_settings) -> None:
    job = EtlJob.from_yaml(PROJECT_ROOT / "configs/etl/demo.yaml")
    summary = run_etl(job, mongo_settings)
    result = summary.sources[0]
    assert result.status == "ok" and result.failed == 0 and result.new >= 19
    documents = [d.document for d in DocumentRepository(connect(mongo_settings)).changed_since()]
    assert {d.author_name for d in documents} == {"Ada Quill"}
    articles = [d for d in documents if d.category is Category.ARTICLES]
    posts = [d for d in documents if d.category is Category.POSTS]
    assert len(articles) >= 16 and len(posts) >= 3
    assert all(d.title and d.published_at for d in documents)
    assert all(150 <= len(d.content.split()) <= 400 for d in articles)
    assert run_etl(job, mongo_settings).totals["unchanged"] == result.new
