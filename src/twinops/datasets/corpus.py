"""Read the feature run artifact (contract 2): the chunks and cleaned documents of one FEATURES version."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from twinops.domain import Author, Chunk, CleanedDocument, DatasetKind, DatasetVersion
from twinops.errors import ConfigError, NotFound, TwinopsError, first_problem
from twinops.infra.dataset_versions import DatasetVersionRepository

RUN_FEATURES_FIRST = "run `twinops features` first"


class EmptyCorpus(TwinopsError):
    """There is nothing to build datasets from."""


@dataclass
class Corpus:
    features: DatasetVersion
    chunks: list[Chunk]
    titles: dict[str, str] = field(default_factory=dict)
    documents: dict[str, str] = field(default_factory=dict)  # document id -> its cleaned text

    @property
    def document_ids(self) -> list[str]:
        return sorted({chunk.document_id for chunk in self.chunks})


def _read_jsonl(path: Path, model: type, *, required: bool) -> list:
    if not path.exists():
        if required:
            raise EmptyCorpus(f"feature artifact {path} is missing: {RUN_FEATURES_FIRST}")
        return []
    rows = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                # model_dump_json() writes computed fields (id, content_hash); they are derived again.
                for computed in model.model_computed_fields:
                    data.pop(computed, None)
                rows.append(model.model_validate(data))
            except (ValidationError, ValueError, AttributeError) as error:
                why = first_problem(error).line() if isinstance(error, ValidationError) else str(error)
                raise ConfigError(
                    f"{path} line {number} is not a valid {model.__name__}: re-run `twinops features` "
                    f"({why.splitlines()[0]})"
                ) from error
    return rows


def load_corpus(
    repository: DatasetVersionRepository,
    *,
    features_version: str | None = None,
    author: str | None = None,
    max_chunks: int | None = None,
) -> Corpus:
    """The chunks (sorted by document, then position) of ``features_version`` (default: latest)."""
    version = (
        repository.get(features_version) if features_version else repository.latest(DatasetKind.FEATURES)
    )
    if version is None:
        raise NotFound(f"no feature run is recorded: {RUN_FEATURES_FIRST}")
    if not version.uri:
        raise EmptyCorpus(f"feature version {version.id} has no artifact folder: {RUN_FEATURES_FIRST}")
    folder = Path(version.uri)
    chunks: list[Chunk] = _read_jsonl(folder / "chunks.jsonl", Chunk, required=True)
    documents: list[CleanedDocument] = _read_jsonl(
        folder / "cleaned_documents.jsonl", CleanedDocument, required=False
    )
    if author:
        author_id = Author(full_name=author).id
        chunks = [chunk for chunk in chunks if chunk.author_id == author_id]
    chunks.sort(key=lambda chunk: (chunk.document_id, chunk.chunk_index))
    if max_chunks:
        # Round-robin over documents (every first chunk, then every second...): a capped corpus
        # still spans many documents, so the golden split by document has some to hold out.
        ranked = sorted(chunks, key=lambda chunk: (chunk.chunk_index, chunk.document_id))
        kept = {chunk.id for chunk in ranked[:max_chunks]}
        chunks = [chunk for chunk in chunks if chunk.id in kept]
    if not chunks:
        whose = f" of author {author!r}" if author else ""
        raise EmptyCorpus(
            f"feature version {version.id} holds no chunks{whose}: collect writing with `twinops etl`, "
            f"then {RUN_FEATURES_FIRST}"
        )
    return Corpus(
        features=version,
        chunks=chunks,
        titles={doc.document_id: doc.title for doc in documents},
        documents={doc.document_id: doc.content for doc in documents},
    )
