"""The services state file: what ``services up`` started, so ``down`` stops only that."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from pydantic import BaseModel, Field


class ServiceRecord(BaseModel):
    """One service as twinops knows it. ``managed`` means twinops started it (and may stop it)."""

    name: str
    uri: str
    running: bool = False
    managed: bool = False
    pid: int | None = None
    port: int | None = None
    workdir: str | None = None
    log_file: str | None = None
    ui_url: str | None = None
    detail: str | None = None


class ServicesState(BaseModel):
    services: dict[str, ServiceRecord] = Field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> ServicesState:
        if not path.exists():
            return cls()
        return cls.model_validate_json(path.read_text())

    def save(self, path: Path) -> None:
        """Write atomically so a crash never leaves a half-written state file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".services-", suffix=".json")
        with os.fdopen(fd, "w") as handle:
            json.dump(self.model_dump(mode="json"), handle, indent=2)
        Path(tmp).replace(path)
