"""``LocalServers`` (what ``twinops serve`` and ``make run`` start): each server process is told the
launcher's TWINOPS_HOME. The servers run in the home folder, so a home left to its relative default
would resolve one level down, and a server following ``models:/...@champion`` would find no services
(`twinops serve all` failed so when TWINOPS_HOME was not exported)."""

from __future__ import annotations

from pathlib import Path

import pytest

from twinops.services.process import free_port
from twinops.serving.local import LocalServers
from twinops.settings import Settings


def test_each_server_process_gets_the_launchers_home(
    tmp_path: Path, minilm_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TWINOPS_HOME", raising=False)
    settings = Settings(home=tmp_path / "home")

    with LocalServers(settings) as servers:
        server = servers.start("embedder", port=free_port(), args=["--model_dir", str(minilm_dir)])
        environ = Path(f"/proc/{server.pid}/environ").read_bytes().split(b"\0")

    assert f"TWINOPS_HOME={settings.home}".encode() in environ
