"""The two sentence-transformers servers: the embedder and the cross-encoder reranker.

Both run their model in a worker thread, one call at a time (the CPU has no room for two), and
take whole lists per call, so a request with many documents or texts is one batched forward pass.

- ``TwinEmbedder``: ``/openai/v1/embeddings`` and V2 (``text`` BYTES [-1] → ``embedding`` FP32
  [-1, dim]). Vectors are exactly ``SentenceTransformer.encode`` with the model's own modules,
  so its pooling and normalisation apply (KServe's Hugging Face runtime ignores a model's pooling
  setting). It embeds through ``features.embedding.Embedder``, the class the feature pipeline
  indexes with and RAG and the drift detector query with.
- ``TwinReranker``: ``/openai/v1/rerank`` and V2 (``query`` BYTES [1] + ``documents`` BYTES [-1]
  → ``scores`` FP32 [-1]), the ``twin-reranker`` champion or any cross-encoder folder.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from kserve import InferRequest, Model

from twinops.serving import metrics
from twinops.serving.protocol import v2
from twinops.serving.protocol.errors import BadRequest
from twinops.serving.protocol.openai import EmbeddingModel, RerankModel

EMBEDDER_NAME = "twin-embedder"
RERANKER_NAME = "twin-reranker"
MAX_TEXTS = 2048


class _Encoder(Model):
    """A sentence-transformers model run in a worker thread, one call at a time."""

    def __init__(self, name: str, model_dir: str, *, label: str | None = None):
        super().__init__(name)
        self.model_dir = model_dir
        self.label = label or model_dir
        self.model: Any = None
        self.embedder: Any = None
        self._lock = threading.Lock()

    async def _run(self, function, *args):
        def locked():
            with self._lock:
                return function(*args)

        return await asyncio.get_running_loop().run_in_executor(None, locked)

    @staticmethod
    def _check_texts(texts: list[str], what: str) -> None:
        if not texts:
            raise BadRequest(f"{what} is empty: send at least one text", param=what)
        if len(texts) > MAX_TEXTS:
            raise BadRequest(
                f"{what} has {len(texts)} texts: send at most {MAX_TEXTS} per request", param=what
            )


class TwinEmbedder(_Encoder, EmbeddingModel):
    TEXT = v2.TensorSpec(name="text", datatype="BYTES", shape=[-1])
    EMBEDDING = v2.TensorSpec(name="embedding", datatype="FP32", shape=[-1, -1])

    def load(self) -> bool:
        from twinops.features.embedding import Embedder
        from twinops.models.loaders import sentence_transformer

        # The same Embedder class the feature pipeline indexes with and RAG queries with.
        self.embedder = Embedder(model=sentence_transformer(self.model_dir), model_id=self.label, version="")
        self.model = self.embedder.model
        self.ready = True
        return True

    @property
    def dimension(self) -> int:
        return self.embedder.dimension

    def encode(self, texts: list[str]):
        """The model's own ``encode``: its pooling, its normalisation, float32 rows."""
        vectors = self.embedder.encode(texts, batch_size=32, normalize=False)
        metrics.EMBEDDED_TEXTS.labels(model=self.name).inc(len(texts))
        return vectors

    def _tokens(self, texts: list[str]) -> int:
        encoded = self.model.tokenizer(texts, truncation=True, max_length=self.model.max_seq_length)
        return sum(len(ids) for ids in encoded["input_ids"])

    async def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        self._check_texts(texts, "input")
        vectors = await self._run(self.encode, texts)
        return vectors.tolist(), self._tokens(texts)

    def get_input_types(self) -> list[dict]:
        return [self.TEXT.metadata()]

    def get_output_types(self) -> list[dict]:
        spec = self.EMBEDDING.model_copy(update={"shape": [-1, self.dimension]})
        return [spec.metadata()]

    async def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        if isinstance(payload, InferRequest):
            v2.check_inputs(payload, [self.TEXT])
            texts = v2.texts(payload, self.TEXT) or []
            self._check_texts(texts, self.TEXT.name)
            vectors = await self._run(self.encode, texts)
            return v2.response(payload, self.name, [v2.fp32_output(self.EMBEDDING.name, vectors)])
        instances = v2.v1_instances(payload)
        if not all(isinstance(text, str) for text in instances):
            raise BadRequest('each instance is a text: {"instances": ["text", ...]}')
        self._check_texts(instances, "instances")
        return {"predictions": (await self._run(self.encode, instances)).tolist()}


class TwinReranker(_Encoder, RerankModel):
    QUERY = v2.TensorSpec(name="query", datatype="BYTES", shape=[1])
    DOCUMENTS = v2.TensorSpec(name="documents", datatype="BYTES", shape=[-1])
    SCORES = v2.TensorSpec(name="scores", datatype="FP32", shape=[-1])

    def load(self) -> bool:
        from twinops.models.rerank import load_reranker

        # The twin reranker's score adds the weighted first-stage cosine and term overlap (over the
        # documents of this request) to the cross-encoder's logit, exactly as training and evaluation
        # scored it; a plain cross-encoder folder scores by its logit.
        self.model = load_reranker(self.model_dir, device="cpu")
        self.ready = True
        return True

    def score(self, query: str, documents: list[str]) -> list[float]:
        scores = self.model.score(query, documents)
        metrics.RERANK_PAIRS.labels(model=self.name).inc(len(documents))
        return scores

    async def rerank(self, query: str, documents: list[str]) -> list[float]:
        if not query.strip():
            raise BadRequest("query is empty: send the question to rank documents for", param="query")
        self._check_texts(documents, "documents")
        return await self._run(self.score, query, documents)

    def get_input_types(self) -> list[dict]:
        return [self.QUERY.metadata(), self.DOCUMENTS.metadata()]

    def get_output_types(self) -> list[dict]:
        return [self.SCORES.metadata()]

    async def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        if isinstance(payload, InferRequest):
            v2.check_inputs(payload, [self.QUERY, self.DOCUMENTS])
            query = (v2.texts(payload, self.QUERY) or [""])[0]
            documents = v2.texts(payload, self.DOCUMENTS) or []
            scores = await self.rerank(query, documents)
            return v2.response(payload, self.name, [v2.fp32_output(self.SCORES.name, scores)])
        predictions = []
        for instance in v2.v1_instances(payload):
            if not isinstance(instance, dict) or not isinstance(instance.get("query"), str):
                raise BadRequest('each instance is {"query": "...", "documents": ["...", ...]}')
            predictions.append(await self.rerank(instance["query"], list(instance.get("documents") or [])))
        return {"predictions": predictions}
