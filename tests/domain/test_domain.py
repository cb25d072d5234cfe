"""The pure domain model: deterministic ids, and every model reads its own JSON dump back."""

from twinops.domain import (
    Author,
    Category,
    Chunk,
    DatasetKind,
    DatasetVersion,
    Platform,
    RawDocument,
    content_hash,
    stable_uuid,
)


def _raw(content: str = "Text.") -> RawDocument:
    author = Author(full_name="Ada Quill")
    return RawDocument(
        platform=Platform.WEB,
        category=Category.ARTICLES,
        source_url="https://example.org/a",
        author_id=author.id,
        author_name=author.full_name,
        content=content,
    )


def test_ids_are_deterministic() -> None:
    assert Author(full_name="Ada Quill").id == Author(full_name=" ada quill ").id
    assert _raw("one").id == _raw("two").id, "identity is (platform, source_url)"
    assert _raw("one").content_hash != _raw("two").content_hash
    assert stable_uuid("x", 1) == stable_uuid("x", 1) != stable_uuid("x", 2)
    assert content_hash("ab", "c") != content_hash("a", "bc")


def test_models_round_trip_their_json_dump() -> None:
    raw = _raw()
    assert RawDocument.model_validate_json(raw.model_dump_json()) == raw
    chunk = Chunk(
        document_id=raw.id,
        author_id=raw.author_id,
        author_name=raw.author_name,
        platform=raw.platform,
        category=raw.category,
        source_url=raw.source_url,
        chunk_index=0,
        content="Text.",
        token_count=2,
        document_content_hash=raw.content_hash,
    )
    assert Chunk.model_validate_json(chunk.model_dump_json()).id == chunk.id
    version = DatasetVersion(kind=DatasetKind.FEATURES, name="f", inputs_hash="h", parents=("p",))
    assert DatasetVersion.model_validate_json(version.model_dump_json()).id == version.id
