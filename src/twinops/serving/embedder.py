"""``python -m twinops.serving.embedder``: the embedding model over ``/openai/v1/embeddings`` and V2.

V2: ``text`` BYTES [-1] → ``embedding`` FP32 [-1, dim]. Vectors are exactly
``SentenceTransformer.encode`` with the model's own modules, so its pooling and normalisation apply
(KServe's Hugging Face runtime ignores a model's pooling setting). It embeds through
``features.embedding.Embedder``, the class the feature pipeline indexes with and RAG and the drift
detector query with.

Serves ``--model_dir``/``--model_uri``, else ``TWINOPS_EMBEDDING_MODEL`` (the model that built the
Qdrant index: queries must land in the same vector space).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from kserve import InferRequest

from twinops.serving import metrics
from twinops.serving.encoders import EncoderModel
from twinops.serving.protocol import v2
from twinops.serving.protocol.errors import BadRequest
from twinops.serving.protocol.openai.models import EmbeddingModel

EMBEDDER_NAME = "twin-embedder"


class TwinEmbedder(EncoderModel, EmbeddingModel):
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


def main(argv: Sequence[str] | None = None) -> None:
    from twinops.models.resolve import resolve_model
    from twinops.serving.server import add_model_source, build_parser, load_model, parse_args, serve
    from twinops.serving.sources import resolve_source
    from twinops.settings import get_settings

    parser = build_parser(
        "python -m twinops.serving.embedder",
        "Serve the sentence-transformers embedder over the OpenAI embeddings API and KServe V1/V2.",
        model_name=EMBEDDER_NAME,
    )
    add_model_source(parser, what="sentence-transformers model", registry_name=None)
    args = parse_args(parser, argv)
    settings = get_settings()
    source = resolve_source(
        args,
        settings,
        registry_name=None,
        fallback=settings.embedding_model,
        fallback_setting="TWINOPS_EMBEDDING_MODEL",
    )
    assert source is not None
    model = TwinEmbedder(
        args.model_name, resolve_model(source.model_dir, settings, setting="--model_dir"), label=source.label
    )
    load_model(model, what="sentence-transformers model")
    serve([model], args)


if __name__ == "__main__":
    from twinops.serving.server import run_main

    sys.exit(run_main(main))
