"""``python -m twinops.serving.reranker``: the cross-encoder over ``/openai/v1/rerank`` and V2.

Serves ``--model_dir``/``--model_uri``, else ``twin-reranker@champion``. With neither there is no
reranker to serve (RAG then ranks by cosine alone), and the server says so in one line.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from twinops.errors import NotFound
from twinops.serving.encoders import RERANKER_NAME, TwinReranker


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
