"""Releasing twins on KServe's LLMInferenceService: the adapter list, rendered from the registry.

An ``LLMInferenceService`` (``serving.kserve.io/v1alpha2``, the prod GPU path of
``kustomize/overlays/prod-lora``) serves one base with LoRA adapters beside it
(``spec.model.lora.adapters``: ``[{name, uri}]``, the name being the OpenAI ``model`` a request
sends). KServe loads that list only when its pods start: there is no dynamic loading, so a release
there is a new list, which KServe rolls out as new pods (the old ones serve until the new are ready).

``adapter_list`` renders the list from the registry: for each twin, the adapter of the version it
names (its champion, or the version being released), as a ``pvc://`` URI on the home volume.
``released_list`` changes one twin's entry and keeps every other entry as it is, byte for byte, so
a twin's release leaves the other twins' adapters (and their answers) unchanged.
``python -m twinops.rollout.lora`` prints the merge patch that sets the list (``kubectl patch
llminferenceservice twin-llms --type merge -p "$(...)"``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from twinops.domain.versions import ModelVersion
from twinops.errors import ConfigError, NotFound
from twinops.settings import Settings

PVC_SCHEME = "pvc://"


def adapter_uri(version: ModelVersion, *, home: Path, claim: str) -> str:
    """``pvc://<claim>/<adapter_dir under home>``: where the pods' storage initializer finds it."""
    if not version.adapter_dir:
        raise NotFound(
            f"{version.name} v{version.version} has no adapter on the shared base (its adapter_dir tag): "
            "release a version trained by twinops (its chain composes one), or serve it merged"
        )
    folder = Path(version.adapter_dir)
    try:
        relative = folder.relative_to(home)
    except ValueError as error:
        raise ConfigError(
            f"{version.name} v{version.version}'s adapter {folder} is not under TWINOPS_HOME ({home}), "
            f"which the pods mount from the claim {claim}: register it from a run under TWINOPS_HOME"
        ) from error
    return f"{PVC_SCHEME}{claim}/{relative.as_posix()}"


def adapter_entry(version: ModelVersion, *, home: Path, claim: str) -> dict[str, str]:
    return {"name": version.name, "uri": adapter_uri(version, home=home, claim=claim)}


def adapter_list(versions: list[ModelVersion], *, home: Path, claim: str, base_model: str) -> list[dict]:
    """One entry per twin (by name), each twin's adapter on ``base_model``; a version on another
    base is refused (vLLM would load it onto the wrong weights)."""
    entries = []
    for version in sorted(versions, key=lambda v: v.name):
        if version.base_model != base_model:
            raise ConfigError(
                f"{version.name} v{version.version}'s adapter is on {version.base_model!r}, not on the "
                f"service's base {base_model!r}: retrain it on that base"
            )
        entries.append(adapter_entry(version, home=home, claim=claim))
    return entries


def released_list(current: list[dict], released: dict[str, str]) -> list[dict]:
    """``current`` with the entry of ``released['name']`` replaced (or added); the others unchanged."""
    kept = [entry for entry in current if entry.get("name") != released["name"]]
    return sorted([*kept, released], key=lambda entry: str(entry.get("name")))


def merge_patch(adapters: list[dict]) -> dict[str, Any]:
    """The JSON merge patch that sets the list (a merge patch replaces a list whole)."""
    return {"spec": {"model": {"lora": {"adapters": adapters}}}}


def champion_versions(settings: Settings) -> list[ModelVersion]:
    """The champion of every registered twin."""
    from twinops.infra.registry import CHAMPION, list_versions, twin_names

    versions = list_versions(settings, tuple(twin_names(settings)))
    return [version for version in versions if CHAMPION in version.aliases]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m twinops.rollout.lora", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--base-model", required=True, help="The service's base (each adapter's base_model tag)."
    )
    parser.add_argument("--claim", required=True, help="The PVC that holds TWINOPS_HOME (twinops-home).")
    args = parser.parse_args(argv)
    from twinops.errors import TwinopsError
    from twinops.settings import get_settings

    try:
        settings = get_settings()
        adapters = adapter_list(
            champion_versions(settings), home=settings.home, claim=args.claim, base_model=args.base_model
        )
    except TwinopsError as error:  # nothing printed on stdout: a patch is whole or absent
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    print(json.dumps(merge_patch(adapters)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
