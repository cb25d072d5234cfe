"""``python -m twinops.serving.reranker``: the cross-encoder over ``/openai/v1/rerank`` and V2.

V2: ``query`` BYTES [1] + ``documents`` BYTES [-1] → ``scores`` FP32 [-1].

Serves ``--model_dir``/``--model_uri``, else ``twin-reranker@champion``. With neither there is no
reranker to serve (RAG then ranks by cosine alone), and the server says so in one line.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from kserve import InferRequest

from twinops.errors import NotFound
from twinops.serving import metrics
from twinops.serving.encoders import EncoderModel
from twinops.serving.protocol import v2
from twinops.serving.protocol.errors import BadRequest
from twinops.serving.protocol.openai.models import RerankModel

RERANKER_NAME = "twin-reranker"


class TwinReranker(EncoderModel, RerankModel):
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


def main(argv: Sequence[str] | None = None) -> None:
    from twinops.serving.server import add_model_source, build_parser, load_model, parse_args, serve
    from twinops.serving.sources import resolve_source
    from twinops.settings import get_settings

    parser = build_parser(
        "python -m twinops.serving.reranker",
        "Serve a cross-encoder reranker over the rerank API (vLLM/KServe shape) and KServe V1/V2.",
        model_name=RERANKER_NAME,
    )
    add_model_source(parser, what="cross-encoder", registry_name=RERANKER_NAME)
    args = parse_args(parser, argv)
    source = resolve_source(
        args, get_settings(), registry_name=RERANKER_NAME, fallback=None, fallback_setting="--model_dir"
    )
    if source is None:
        raise NotFound(
            f"no {RERANKER_NAME}@champion in the registry: pass --model_dir or --model_uri, or train and "
            "promote a reranker (`twinops train reranker --register`)"
        )
    model = TwinReranker(args.model_name, source.model_dir, label=source.label)
    load_model(model, what="cross-encoder")
    serve([model], args)


if __name__ == "__main__":
    from twinops.serving.server import run_main

    sys.exit(run_main(main))
