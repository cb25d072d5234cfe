"""OpenAI-compatible serving, kept apart from the models, as kserve keeps its own
(``kserve/protocol/rest/openai``):

- ``types``: the requests the routes accept (responses are the ``openai`` package's own types);
- ``models``: what a model implements to be served (``ChatModel``, ``EmbeddingModel``, ``RerankModel``);
- ``dataplane``: the served models by name, and the responses they give;
- ``endpoints``: the routes, body parsing and SSE (``register_openai_routes``);
- ``errors``: OpenAI's error shape for every failure under ``/openai/``.

The protocol-neutral ``SamplingParams`` and ``TextDelta`` are in ``twinops.serving.protocol.types``.
"""
