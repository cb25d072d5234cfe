"""Inputs the dataset stage reads, built the way the feature stage writes them (contracts 2 and 3).

A small corpus of five documents (two chunks each) goes into ``chunks.jsonl`` and
``cleaned_documents.jsonl`` under a FEATURES DatasetVersion in the real MongoDB wire server, and
into a Qdrant local-mode collection behind the ``twin_chunks`` alias with real MiniLM vectors.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from tests.support.chat_stand_in import ChatStandIn

from twinops.domain import Author, Category, Chunk, CleanedDocument, DatasetKind, DatasetVersion, Platform
from twinops.domain.hashing import content_hash
from twinops.infra.dataset_versions import DatasetVersionRepository
from twinops.infra.mongo import connect
from twinops.settings import Settings, get_settings

AUTHOR = "Ada Example"

DOCUMENTS: dict[str, list[str]] = {
    "Testing against real services": [
        "Mocks lie about the database. Every time I replaced a real MongoDB with a mock, the bug "
        "that reached production lived exactly in the part the mock pretended to understand. "
        "Spinning up a real server on a random port costs a second and saves a week of guessing.",
        "My rule is simple: if a test needs storage, it gets real storage on localhost. Fixtures "
        "start it once per session, each test gets its own database, and nothing is shared. The "
        "suite stays fast because the server stays warm between tests.",
    ],
    "Why small models deserve attention": [
        "A 135 million parameter model will not write your novel, but it answers in milliseconds "
        "on a laptop. For classification, routing and short rewrites, that latency changes what "
        "you can build. I reach for the small model first and only scale when it fails.",
        "Fine-tuning a small model is cheap enough to do every week. When the data changes, I "
        "retrain, compare against the champion on a fixed golden set, and promote only when the "
        "numbers move. That loop matters more than the size of the network.",
    ],
    "Versioning data like code": [
        "Nobody would ship code without a commit hash, yet teams train models on a folder called "
        "final_v2. I hash every dataset from its inputs and its config, so the same inputs always "
        "give the same identifier and a model can point back to the exact rows it saw.",
        "Lineage is a chain of those identifiers. The instruction set names the feature run, the "
        "generator and the prompt version; the model names the dataset. When something regresses, "
        "walking the chain tells me which input moved.",
    ],
    "Kubernetes for machine learning teams": [
        "Kubernetes is not the goal, repeatability is. A pipeline that runs the same steps in the "
        "same containers on every cluster removes the works-on-my-machine excuse, and the "
        "scheduler quietly packs jobs onto the hardware you already pay for.",
        "Start with one namespace per team and resource quotas from day one. Without quotas the "
        "first large training job starves everything else, and people stop trusting the cluster "
        "long before they understand why it felt slow.",
    ],
    "Writing in your own voice": [
        "Style is mostly what you leave out. I cut adverbs, I cut hedges, and I keep sentences "
        "short enough to read aloud without a breath. Readers forgive a blunt opinion far more "
        "easily than a paragraph that commits to nothing at all.",
        "When a draft feels flat, I read it out loud and mark every sentence I would never say in "
        "a conversation. Those are the ones borrowed from someone else's voice, and rewriting "
        "them is how the text starts sounding like me again.",
    ],
}


DEMO_CORPUS = Path(__file__).resolve().parents[2] / "data" / "demo-corpus"
DEMO_CHUNK_WORDS = 150  # about the 200 MiniLM tokens the feature step cuts chunks at


# title -> the demo file it came from: a chunk's source_url ends with it, as the folder source's does.
DEMO_FILES: dict[str, str] = {}


def demo_documents() -> dict[str, list[str]]:
    """The demo corpus (``make run``'s), as the feature step splits it: about 150 words a chunk.

    Front matter and a leading ``# Title`` go; paragraphs are packed into chunks (no overlap,
    which only makes a chunk longer), so the document count and chunk sizes match the demo's.
    """
    documents: dict[str, list[str]] = {}
    for path in sorted(DEMO_CORPUS.iterdir()):
        text = path.read_text(encoding="utf-8")
        title = path.stem.replace("-", " ")
        if text.startswith("---"):
            front, _, text = text[3:].partition("\n---")
            for line in front.splitlines():
                if line.startswith("title:"):
                    title = line.split(":", 1)[1].strip()
        DEMO_FILES[title] = path.name
        chunks: list[str] = []
        current: list[str] = []
        for paragraph in (part.strip() for part in text.split("\n\n")):
            if not paragraph or paragraph.startswith("# "):
                continue
            if current and len(" ".join(current).split()) + len(paragraph.split()) > DEMO_CHUNK_WORDS:
                chunks.append("\n\n".join(current))
                current = []
            current.append(paragraph)
        if current:
            chunks.append("\n\n".join(current))
        documents[title] = chunks
    return documents


def make_chunks(documents: dict[str, list[str]] = DOCUMENTS) -> tuple[list[CleanedDocument], list[Chunk]]:
    author = Author(full_name=AUTHOR)
    cleaned, chunks = [], []
    for number, (title, parts) in enumerate(documents.items()):
        text = "\n\n".join(parts)
        document_id = content_hash("doc", number, title)[:24]
        doc = CleanedDocument(
            document_id=document_id,
            author_id=author.id,
            author_name=author.full_name,
            platform=Platform.LOCAL,
            category=Category.ARTICLES,
            source_url=f"file:///corpus/{DEMO_FILES.get(title, f'{number}.md')}",
            title=title,
            content=text,
            source_content_hash=content_hash(text),
        )
        cleaned.append(doc)
        for index, part in enumerate(parts):
            chunks.append(
                Chunk(
                    document_id=document_id,
                    author_id=author.id,
                    author_name=author.full_name,
                    platform=Platform.LOCAL,
                    category=Category.ARTICLES,
                    source_url=doc.source_url,
                    chunk_index=index,
                    content=part,
                    token_count=len(part.split()),
                    document_content_hash=doc.content_hash,
                )
            )
    return cleaned, chunks


def write_features(
    settings: Settings, cleaned: list[CleanedDocument], chunks: list[Chunk], *, name: str = "features"
) -> DatasetVersion:
    """Write the feature artifact folder and its FEATURES DatasetVersion (contract 2)."""
    draft = DatasetVersion(
        kind=DatasetKind.FEATURES, name=name, inputs_hash=content_hash([c.id for c in chunks]), config={}
    )
    folder = settings.home / "features" / draft.id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "chunks.jsonl").write_text("".join(c.model_dump_json() + "\n" for c in chunks))
    (folder / "cleaned_documents.jsonl").write_text("".join(d.model_dump_json() + "\n" for d in cleaned))
    version = draft.model_copy(update={"uri": str(folder)})
    DatasetVersionRepository(connect(settings)).save(version)
    return version


def index_chunks(settings: Settings, chunks: list[Chunk]) -> None:
    """Fill the local-mode Qdrant collection behind the ``twin_chunks`` alias (contract 3)."""
    from qdrant_client import QdrantClient, models

    from twinops.models.loaders import embedder_identity, load_embedder

    model_id, model_version = embedder_identity(settings)
    embedder = load_embedder(settings)
    vectors = embedder.encode([c.content for c in chunks], normalize_embeddings=True)
    settings.qdrant_local_path.mkdir(parents=True, exist_ok=True)
    client = QdrantClient(path=str(settings.qdrant_local_path))
    try:
        collection = f"twin_chunks__minilm__{model_version}"
        if not client.collection_exists(collection):
            client.create_collection(
                collection,
                vectors_config=models.VectorParams(size=len(vectors[0]), distance=models.Distance.COSINE),
            )
            client.update_collection_aliases(
                change_aliases_operations=[
                    models.CreateAliasOperation(
                        create_alias=models.CreateAlias(collection_name=collection, alias_name="twin_chunks")
                    )
                ]
            )
        client.upsert(
            "twin_chunks",
            points=[
                models.PointStruct(
                    id=c.id,
                    vector=[float(v) for v in vector],
                    payload={
                        "chunk_id": c.id,
                        "document_id": c.document_id,
                        "author_id": c.author_id,
                        "author_name": c.author_name,
                        "category": c.category.value,
                        "platform": c.platform.value,
                        "source_url": c.source_url,
                        "published_at": None,
                        "content_hash": content_hash(c.content),
                        "chunk_index": c.chunk_index,
                        "content": c.content,
                        "embedding_model_id": model_id,
                        "embedding_model_version": model_version,
                    },
                )
                for c, vector in zip(chunks, vectors, strict=True)
            ],
        )
    finally:
        client.close()


@pytest.fixture
def dataset_settings(
    mongo_settings: Settings, bundled_models_dir: Path, tiny_llama: Path, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """Mongo + local Qdrant + the real MiniLM + the tiny Llama as base model; MLflow off unless asked."""
    monkeypatch.setenv("TWINOPS_EMBEDDING_MODEL", str(bundled_models_dir / "all-minilm-l6-v2"))
    monkeypatch.setenv("TWINOPS_BASE_MODEL", str(tiny_llama))
    get_settings.cache_clear()
    return get_settings()


@pytest.fixture
def feature_run(dataset_settings: Settings) -> Callable[..., DatasetVersion]:
    """Write a feature run (default: the five-document corpus) and index it; returns its version."""

    def make(documents: dict[str, list[str]] = DOCUMENTS, *, index: bool = True) -> DatasetVersion:
        cleaned, chunks = make_chunks(documents)
        version = write_features(dataset_settings, cleaned, chunks)
        if index:
            index_chunks(dataset_settings, chunks)
        return version

    return make


class FakeChatServer:
    """A tiny OpenAI-compatible chat completions server on 127.0.0.1 with scripted misbehaviour.

    The last user message decides the reply: ``SLOW`` sleeps past the client timeout, ``BADONCE``
    answers invalid JSON the first time then valid JSON, ``ALWAYSBAD`` never answers valid JSON,
    ``NOAUTH`` answers 401; anything else gets a valid JSON reply for the key the prompt asks for.
    ``requests``: the request bodies, in order.
    """

    def __init__(self) -> None:
        import threading

        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server = ChatStandIn(self.reply)
        self.url = self._server.url

    @property
    def requests(self) -> list[dict]:
        return [request["body"] for request in self._server.requests]

    def reply(self, path: str, body: dict) -> tuple[int, dict]:
        import time

        if path != "/v1/chat/completions":
            return 404, {"error": "not found"}
        # The item's own request: the last user turn that is not a re-ask (shots come before it).
        first_user = [
            m["content"]
            for m in body["messages"]
            if m["role"] == "user" and not m["content"].startswith("That reply")
        ][-1]
        key = "instruction" if '"instruction"' in first_user else "answer"
        with self._lock:
            self._seen[first_user] += 1
            attempt = self._seen[first_user]
        if "NOAUTH" in first_user:
            return 401, {"error": "bad key"}
        if "SLOW" in first_user:
            time.sleep(1.5)
        if "ALWAYSBAD" in first_user or ("BADONCE" in first_user and attempt == 1):
            content = "Sure! Here is the instruction you asked for."
        else:
            words = first_user.split("Passage: ", 1)[-1].split()[:6]
            content = json.dumps({key: f"Explain {' '.join(words)}"})
        return 200, {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
        }

    def close(self) -> None:
        self._server.close()


@pytest.fixture
def chat_server() -> Iterator[FakeChatServer]:
    server = FakeChatServer()
    yield server
    server.close()


@pytest.fixture
def corpus_kit() -> SimpleNamespace:
    """The test corpus and its helpers (test modules cannot import conftest in importlib mode)."""
    return SimpleNamespace(
        documents=DOCUMENTS, author=AUTHOR, make_chunks=make_chunks, demo_documents=demo_documents
    )
