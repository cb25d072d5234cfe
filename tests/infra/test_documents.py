"""The warehouse repositories against the real wire server over TCP."""

from twinops.domain import Author, Category, Platform, RawDocument
from twinops.infra.documents import AuthorRepository, DocumentRepository, UpsertOutcome
from twinops.infra.mongo import connect


def _doc(content: str) -> RawDocument:
    author = Author(full_name="Ada Lovelace")
    return RawDocument(
        platform=Platform.WEB,
        category=Category.ARTICLES,
        source_url="https://example.org/notes",
        author_id=author.id,
        author_name=author.full_name,
        title="Notes",
        content=content,
    )


def test_upsert_new_unchanged_updated(mongo_settings) -> None:
    db = connect(mongo_settings)
    AuthorRepository(db).upsert(Author(full_name="Ada Lovelace"))
    repo = DocumentRepository(db)
    first = _doc("The engine weaves algebraic patterns.")
    assert repo.upsert(first, "run-1") is UpsertOutcome.NEW
    assert repo.upsert(first, "run-2") is UpsertOutcome.UNCHANGED
    stored = repo.get(first.id)
    assert stored.revision == 1 and stored.crawl_run_id == "run-1"

    second = _doc("The engine weaves algebraic patterns, as the loom weaves flowers.")
    assert repo.upsert(second, "run-3") is UpsertOutcome.UPDATED
    stored = repo.get(first.id)
    assert stored.revision == 2 and stored.document.content_hash == second.content_hash
    assert [r["content_hash"] for r in repo.revisions(first.id)] == [first.content_hash]
    assert repo.count() == 1


def test_changed_since(mongo_settings) -> None:
    repo = DocumentRepository(connect(mongo_settings))
    repo.upsert(_doc("one"))
    marker = repo.get(_doc("one").id).updated_at
    assert list(repo.changed_since(marker)) == []
    repo.upsert(_doc("two"))
    assert [s.document.content for s in repo.changed_since(marker)] == ["two"]
