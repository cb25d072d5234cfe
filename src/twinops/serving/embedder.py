"""``python -m twinops.serving.embedder``: the embedding model over ``/openai/v1/embeddings`` and V2.

Serves ``--model_dir``/``--model_uri``, else ``TWINOPS_EMBEDDING_MODEL`` (the model that built the
Qdrant index: queries must land in the same vector space).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from twinops.serving.encoders import EMBEDDER_NAME, TwinEmbedder


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
