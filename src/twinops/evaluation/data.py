"""The golden and preference sets (contract 4), by DatasetVersion id, 'latest', or folder."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, Field

from twinops.errors import ConfigError, NotFound
from twinops.evaluation.style import MIN_PER_CLASS
from twinops.settings import Settings


class GoldenRow(BaseModel):
    instruction: str
    reference: str
    document_id: str = ""
    chunk_id: str = ""
    origin: str = Field(
        "instruction",
        description="instruction or paraphrase (answered by the LLMs), or probe (retrieval only).",
    )
    paraphrased: bool = Field(
        False,
        description="The question shares few words with its chunk (datasets.paraphrase): retrieval on "
        "these rows is also scored apart (golden_paraphrased_*).",
    )


def _folder(reference: str, kind: str, settings: Settings) -> tuple[Path, str]:
    """(dataset folder, version label) for a folder path, a version id or 'latest'."""
    path = Path(reference).expanduser()
    if path.is_dir():
        return path, str(path)
    if "/" in reference or reference.startswith("."):
        raise NotFound(
            f"{kind} dataset folder {path} does not exist: pass a folder, a version id or 'latest'"
        )
    from twinops.domain.versions import DatasetKind
    from twinops.infra.dataset_versions import DatasetVersionRepository
    from twinops.infra.mongo import connect

    repository = DatasetVersionRepository(connect(settings))
    if reference == "latest":
        version = repository.latest(DatasetKind(kind))
        if version is None:
            raise NotFound(f"no {kind} dataset exists yet: run `twinops datasets build` first")
    else:
        version = repository.get(reference)
        if version.kind.value != kind:
            raise ConfigError(f"dataset version {reference!r} is a {version.kind.value} set, not {kind}")
    if not version.uri or not Path(version.uri).is_dir():
        raise NotFound(f"dataset version {version.id} has no folder at {version.uri}: rebuild it")
    return Path(version.uri), version.id


def _jsonl(path: Path) -> list[dict]:
    if not path.exists():
        raise NotFound(f"{path} is missing: the dataset folder is incomplete, rebuild it")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_golden(reference: str, settings: Settings, limit: int | None = None) -> tuple[list[GoldenRow], str]:
    """The golden rows (the first ``limit``; all with None) and the set's label."""
    folder, label = _folder(reference, "golden", settings)
    rows = [
        GoldenRow.model_validate({k: v for k, v in row.items() if k in GoldenRow.model_fields})
        for row in _jsonl(folder / "test.jsonl")
    ]
    if not rows:
        raise ConfigError(f"golden set {label} is empty: rebuild it with more documents")
    return rows[:limit] if limit is not None else rows, label


def _last_content(messages) -> str:
    if isinstance(messages, list) and messages:
        return str(messages[-1].get("content", ""))
    return str(messages or "")


def load_preference_pairs(reference: str, settings: Settings) -> tuple[list[str], list[str], str]:
    """(author texts = chosen, base-model texts = rejected, version label) from train + test.

    The rejected texts are the base model's own answers (``rejected_source`` other than
    ``template``) when there are enough of them.
    """
    folder, label = _folder(reference, "preference", settings)
    rows = [
        row
        for split in ("train", "test")
        if (folder / f"{split}.jsonl").exists()
        for row in _jsonl(folder / f"{split}.jsonl")
    ]
    chosen = [_last_content(row.get("chosen")) for row in rows]
    # A template's rejected answer is one of a few fixed paragraphs: a classifier trained on those
    # would learn to spot them, not the base model's voice. They count only when nothing else does.
    generated = [row for row in rows if row.get("rejected_source") != "template"]
    if len(generated) >= MIN_PER_CLASS:
        rows = generated
    rejected = [_last_content(row.get("rejected")) for row in rows]
    return [t for t in chosen if t.strip()], [t for t in rejected if t.strip()], label
