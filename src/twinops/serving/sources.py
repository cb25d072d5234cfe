"""Which weights a server loads: ``--model_dir``, ``--model_uri``, or the registry's champion.

Serving reads what Training registered through the registry client in ``infra`` (never training
code). Without a flag, a server serves ``<name>@champion`` when the registry has one and otherwise
its fallback (the base model for the LLM; nothing for the reranker, so RAG ranks by cosine).
"""

from __future__ import annotations

import argparse
import logging

from twinops.infra.registry import ResolvedModel, champion_or_none, resolve_model_uri
from twinops.settings import Settings

log = logging.getLogger("twinops.serving")


def resolve_source(
    args: argparse.Namespace,
    settings: Settings,
    *,
    registry_name: str | None,
    fallback: str | None,
    fallback_setting: str,
) -> ResolvedModel | None:
    """The model to serve, or None when there is neither a flag, a champion nor a fallback."""
    if args.model_dir:
        return resolve_model_uri(args.model_dir, settings, setting="--model_dir")
    if args.model_uri:
        return resolve_model_uri(args.model_uri, settings, setting="--model_uri")
    if registry_name:
        champion = champion_or_none(registry_name, settings)
        if champion is not None:
            return champion
        log.info("no %s@champion in the registry", registry_name)
    if fallback:
        return resolve_model_uri(fallback, settings, setting=fallback_setting)
    return None
