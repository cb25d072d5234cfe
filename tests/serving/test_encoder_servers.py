"""The embedder and reranker servers, through the clients their users have.

The ``openai`` SDK for embeddings (its default base64 encoding and plain floats), kserve's
``InferenceRESTClient`` and ``InferenceGRPCClient`` for V2, plain HTTP for V1 and ``/openai/v1/rerank``.
Every number a server returns equals what the same model computes in-process
(``SentenceTransformer.encode``, ``CrossEncoder.predict``), to 1e-5.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import numpy as np
import pytest
from kserve import InferInput, InferRequest
from kserve.inference_client import InferenceGRPCClient, InferenceRESTClient, RESTConfig
from tests.serving.conftest import grpc_address, metric, scrape

from twinops.serving.local import LocalServer

pytestmark = pytest.mark.slow

TEXTS = [
    "Kubeflow pipelines compile to an intermediate representation.",
    "The twin answers in its author's voice.",
    "Qdrant stores one vector per chunk, with the chunk's payload.",
]
QUERY = "Where are the chunk vectors stored?"
DOCUMENTS = [
    "Qdrant keeps a vector and a payload for every chunk of the corpus.",
    "The weather in Lisbon was mild all week.",
    "MongoDB holds the cleaned documents before chunking.",
    "Feast serves the author's features online from Redis.",
]


@pytest.fixture(scope="module")
def sentence_model(minilm_dir: Path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_dir), device="cpu")


@pytest.fixture(scope="module")
def cross_encoder(cross_encoder_dir: Path):
    from sentence_transformers import CrossEncoder

    return CrossEncoder(str(cross_encoder_dir), device="cpu")


def _bytes_input(name: str, values: list[str], *, binary: bool = False) -> InferInput:
    infer_input = InferInput(name, [len(values)], "BYTES")
    infer_input.set_data_from_numpy(
        np.array([v.encode() for v in values], dtype=np.object_), binary_data=binary
    )
    return infer_input


async def _rest_infer(server: LocalServer, inputs: list[InferInput]):
    client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=120))
    try:
        request = InferRequest(model_name=server.model_name, infer_inputs=inputs)
        return await client.infer(server.url, request, model_name=server.model_name)
    finally:
        await client.close()


async def _grpc_infer(server: LocalServer, inputs: list[InferInput]):
    async with InferenceGRPCClient(grpc_address(server), timeout=120) as client:
        return await client.infer(InferRequest(model_name=server.model_name, infer_inputs=inputs))


async def _grpc_health(server: LocalServer) -> tuple[bool, bool, bool]:
    async with InferenceGRPCClient(grpc_address(server), timeout=30) as client:
        return (
            await client.is_server_live(),
            await client.is_server_ready(),
            await client.is_model_ready(server.model_name),
        )


async def _grpc_metadata(server: LocalServer) -> dict:
    from kserve.protocol.grpc.grpc_predict_v2_pb2 import ModelMetadataRequest

    async with InferenceGRPCClient(grpc_address(server), timeout=30) as client:
        # The client has no metadata call; its stub is kserve's generated GRPCInferenceService stub.
        reply = await client._client_stub.ModelMetadata(ModelMetadataRequest(name=server.model_name))
    return {
        "inputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in reply.inputs],
        "outputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in reply.outputs],
    }


def _rest_metadata(server: LocalServer) -> dict:
    reply = httpx.get(f"{server.url}/v2/models/{server.model_name}", timeout=30)
    assert reply.status_code == 200
    body = reply.json()
    assert body["name"] == server.model_name
    return {"inputs": body["inputs"], "outputs": body["outputs"]}


# --- embedder -----------------------------------------------------------------------------------
@pytest.mark.parametrize("encoding_format", ["base64", "float"])
def test_openai_embeddings_equal_sentence_transformers(
    embedder_server: LocalServer, sentence_model, encoding_format: str
) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=embedder_server.openai_url, api_key="unused", timeout=120, max_retries=0)
    options = {} if encoding_format == "base64" else {"encoding_format": "float"}  # the SDK's default: base64
    reply = client.embeddings.create(model=embedder_server.model_name, input=TEXTS, **options)

    expected = sentence_model.encode(TEXTS, convert_to_numpy=True)
    assert [item.index for item in reply.data] == list(range(len(TEXTS)))
    served = np.array([item.embedding for item in reply.data], dtype=np.float32)
    np.testing.assert_allclose(served, expected, atol=1e-5)
    assert reply.model == embedder_server.model_name
    assert reply.usage.prompt_tokens > len(TEXTS)


def test_embeddings_of_a_single_string(embedder_server: LocalServer, sentence_model) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=embedder_server.openai_url, api_key="unused", timeout=120, max_retries=0)
    reply = client.embeddings.create(model=embedder_server.model_name, input=TEXTS[0])
    assert len(reply.data) == 1
    np.testing.assert_allclose(reply.data[0].embedding, sentence_model.encode(TEXTS[0]), atol=1e-5)


def test_embedder_v2_over_rest_and_grpc(embedder_server: LocalServer, sentence_model) -> None:
    expected = sentence_model.encode(TEXTS, convert_to_numpy=True)
    rest = asyncio.run(_rest_infer(embedder_server, [_bytes_input("text", TEXTS)]))
    rest_binary = asyncio.run(_rest_infer(embedder_server, [_bytes_input("text", TEXTS, binary=True)]))
    grpc = asyncio.run(_grpc_infer(embedder_server, [_bytes_input("text", TEXTS)]))
    for reply in (rest, rest_binary, grpc):
        (output,) = reply.outputs
        assert output.name == "embedding"
        assert output.datatype == "FP32"
        assert list(output.shape) == [len(TEXTS), expected.shape[1]]
        np.testing.assert_allclose(output.as_numpy().reshape(expected.shape), expected, atol=1e-5)


def test_embedder_v1_predict(embedder_server: LocalServer, sentence_model) -> None:
    reply = httpx.post(
        f"{embedder_server.url}/v1/models/{embedder_server.model_name}:predict",
        json={"instances": TEXTS},
        timeout=120,
    )
    assert reply.status_code == 200
    np.testing.assert_allclose(
        np.array(reply.json()["predictions"]), sentence_model.encode(TEXTS, convert_to_numpy=True), atol=1e-5
    )


def test_embedder_metadata_and_health(embedder_server: LocalServer, sentence_model) -> None:
    dimension = sentence_model.encode(["x"]).shape[1]
    declared = {
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
        "outputs": [{"name": "embedding", "datatype": "FP32", "shape": [-1, dimension]}],
    }
    assert _rest_metadata(embedder_server) == declared
    assert asyncio.run(_grpc_metadata(embedder_server)) == declared
    assert asyncio.run(_grpc_health(embedder_server)) == (True, True, True)

    from openai import OpenAI

    client = OpenAI(base_url=embedder_server.openai_url, api_key="unused", timeout=30, max_retries=0)
    assert [model.id for model in client.models.list()] == [embedder_server.model_name]


# --- reranker -----------------------------------------------------------------------------------
def test_rerank_sorts_by_the_cross_encoders_scores(reranker_server: LocalServer, cross_encoder) -> None:
    reply = httpx.post(
        f"{reranker_server.openai_url}/rerank",
        json={"model": reranker_server.model_name, "query": QUERY, "documents": DOCUMENTS},
        timeout=120,
    )
    assert reply.status_code == 200
    body = reply.json()
    assert body["model"] == reranker_server.model_name
    results = body["results"]
    expected = cross_encoder.predict([(QUERY, d) for d in DOCUMENTS])

    assert sorted(r["index"] for r in results) == list(range(len(DOCUMENTS)))
    scores = [r["relevance_score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    for result in results:
        assert result["document"]["text"] == DOCUMENTS[result["index"]]
        assert result["relevance_score"] == pytest.approx(float(expected[result["index"]]), abs=1e-5)


def test_rerank_top_n_keeps_the_best(reranker_server: LocalServer, cross_encoder) -> None:
    documents = [{"text": d} for d in DOCUMENTS]  # the object form of vLLM's API
    reply = httpx.post(
        f"{reranker_server.openai_url}/rerank",
        json={"model": reranker_server.model_name, "query": QUERY, "documents": documents, "top_n": 2},
        timeout=120,
    )
    assert reply.status_code == 200
    expected = cross_encoder.predict([(QUERY, d) for d in DOCUMENTS])
    best_two = [int(i) for i in np.argsort(-expected)[:2]]
    assert [r["index"] for r in reply.json()["results"]] == best_two


def test_reranker_v2_scores_over_rest_and_grpc(reranker_server: LocalServer, cross_encoder) -> None:
    expected = cross_encoder.predict([(QUERY, d) for d in DOCUMENTS])

    def inputs() -> list[InferInput]:
        return [_bytes_input("query", [QUERY]), _bytes_input("documents", DOCUMENTS)]

    for reply in (
        asyncio.run(_rest_infer(reranker_server, inputs())),
        asyncio.run(_grpc_infer(reranker_server, inputs())),
    ):
        (output,) = reply.outputs
        assert (output.name, output.datatype, list(output.shape)) == ("scores", "FP32", [len(DOCUMENTS)])
        np.testing.assert_allclose(output.as_numpy(), expected, atol=1e-5)


def test_reranker_v1_predict(reranker_server: LocalServer, cross_encoder) -> None:
    reply = httpx.post(
        f"{reranker_server.url}/v1/models/{reranker_server.model_name}:predict",
        json={"instances": [{"query": QUERY, "documents": DOCUMENTS[:2]}]},
        timeout=120,
    )
    assert reply.status_code == 200
    (scores,) = reply.json()["predictions"]
    np.testing.assert_allclose(scores, cross_encoder.predict([(QUERY, d) for d in DOCUMENTS[:2]]), atol=1e-5)


def test_reranker_metadata_health_and_metrics(reranker_server: LocalServer) -> None:
    declared = {
        "inputs": [
            {"name": "query", "datatype": "BYTES", "shape": [1]},
            {"name": "documents", "datatype": "BYTES", "shape": [-1]},
        ],
        "outputs": [{"name": "scores", "datatype": "FP32", "shape": [-1]}],
    }
    assert _rest_metadata(reranker_server) == declared
    assert asyncio.run(_grpc_metadata(reranker_server)) == declared
    assert asyncio.run(_grpc_health(reranker_server)) == (True, True, True)

    async def rest_health() -> tuple[bool, bool, bool]:
        client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
        try:
            return (
                await client.is_server_live(reranker_server.url),
                await client.is_server_ready(reranker_server.url),
                await client.is_model_ready(reranker_server.url, reranker_server.model_name),
            )
        finally:
            await client.close()

    assert asyncio.run(rest_health()) == (True, True, True)

    before = scrape(reranker_server)
    asyncio.run(
        _rest_infer(reranker_server, [_bytes_input("query", [QUERY]), _bytes_input("documents", DOCUMENTS)])
    )
    after = scrape(reranker_server)
    pairs = "twinops_rerank_pairs_total"
    assert metric(after, pairs, model="twin-reranker") - metric(before, pairs, model="twin-reranker") == len(
        DOCUMENTS
    )
    predict = "request_predict_seconds_count"  # kserve's own request histogram
    assert (
        metric(after, predict, model_name="twin-reranker")
        == metric(before, predict, model_name="twin-reranker") + 1
    )
