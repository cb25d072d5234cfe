"""The warehouse repositories against the real wire server over TCP."""

from pymongo import MongoClient, monitoring

from twinops.domain import Author, Category, Platform, RawDocument
from twinops.infra.documents import AuthorRepository, DocumentRepository, UpsertOutcome
from twinops.infra.endpoints import mongodb_uri
from twinops.infra.mongo import connect, database_name


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


def _post(n: int, content: str) -> RawDocument:
    return _doc(content).model_copy(update={"source_url": f"https://example.org/post-{n}"})


def test_upsert_many_decides_each_document_as_upsert_does(mongo_settings) -> None:
    """Batches of new, unchanged, changed, re-sourced and revived documents (and one twice) end with
    the outcomes and the stored rows that upserting them one by one gives."""
    db = connect(mongo_settings)
    one_by_one, batched = DocumentRepository(db), DocumentRepository(db.client[f"{db.name}-batched"])
    before = [_post(n, f"first text {n}") for n in range(5)]
    for repo in (one_by_one, batched):
        repo.upsert_many(before, "run-1", source="feed-a")
        repo.mark_deleted({before[3].id}, "run-1")
    mixed = [before[0], _post(1, "second text 1"), before[3], _post(7, "a new post")]
    twice = [_post(8, "another new post"), _post(8, "another new post, edited")]
    expected = [one_by_one.upsert(d, "run-2", source="feed-a") for d in mixed + twice]
    expected.append(one_by_one.upsert(before[2], "run-2", source="feed-b"))

    outcomes = batched.upsert_many(mixed, "run-2", source="feed-a")
    outcomes += batched.upsert_many(twice, "run-2", source="feed-a")
    outcomes += batched.upsert_many([before[2]], "run-2", source="feed-b")
    assert (
        outcomes
        == expected
        == [
            UpsertOutcome.UNCHANGED,
            UpsertOutcome.UPDATED,  # changed
            UpsertOutcome.UPDATED,  # revived
            UpsertOutcome.NEW,
            UpsertOutcome.NEW,
            UpsertOutcome.UPDATED,  # the second of the same document
            UpsertOutcome.UNCHANGED,  # re-sourced
        ]
    )

    def rows(repo: DocumentRepository) -> list[tuple]:
        stored = repo.changed_since()
        return sorted((s.document.id, s.document.content_hash, s.revision, s.crawl_run_id) for s in stored)

    def history(repo: DocumentRepository) -> list[tuple]:
        return [(r["revision"], r["content_hash"]) for d in before for r in repo.revisions(d.id)]

    assert rows(batched) == rows(one_by_one) and len(rows(batched)) == 7
    assert history(batched) == history(one_by_one) == [(1, before[1].content_hash)]
    assert batched.live_ids_from("feed-b", author_id=before[2].author_id) == {before[2].id}


class _Commands(monitoring.CommandListener):
    """The names of the commands a client sends."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.sent.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def test_a_first_crawl_costs_one_write_a_document_and_a_re_crawl_one_read(mongo_settings) -> None:
    """One round trip a document, as raw ``replace_one(upsert=True)`` costs: a crawl of new documents
    inserts each at once, a re-crawl of unchanged ones reads each and writes none. Where a run turns
    from one kind to the other, one command is spent finding out."""
    commands = _Commands()
    client = MongoClient(mongodb_uri(mongo_settings), event_listeners=[commands], tz_aware=True)
    repo = DocumentRepository(client[database_name(mongodb_uri(mongo_settings), mongo_settings)])
    posts = [_post(n, f"text {n}") for n in range(10)]
    commands.sent.clear()
    assert {repo.upsert(post, "run-1") for post in posts} == {UpsertOutcome.NEW}
    assert commands.sent == ["insert"] * 10

    commands.sent.clear()
    assert {repo.upsert(post, "run-2") for post in posts} == {UpsertOutcome.UNCHANGED}
    assert commands.sent == ["insert"] + ["find"] * 10  # the first insert finds the run turned

    commands.sent.clear()
    fresh = [_post(n, f"text {n}") for n in range(10, 15)]
    assert {repo.upsert(post, "run-3") for post in fresh} == {UpsertOutcome.NEW}
    assert commands.sent == ["find", "insert"] + ["insert"] * 4
    client.close()
