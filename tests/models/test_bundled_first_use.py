"""A command that needs a bundled model caches it on first use, saying so in one line (item 8)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.support.one_line import one_line_error

from twinops.cli import main
from twinops.settings import get_settings


def test_first_use_caches_the_bundled_embedder_once(home, tiny_llama: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("TWINOPS_BASE_MODEL", str(tiny_llama))  # only the embedder is bundled here
    get_settings.cache_clear()
    cached = get_settings().models_dir / "all-minilm-l6-v2"
    assert not cached.exists()

    assert main(["models", "path", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["embedding_model"] == str(cached)
    notices = [line for line in captured.err.splitlines() if "first use" in line]
    assert len(notices) == 1 and "all-minilm-l6-v2" in notices[0]
    assert (cached / "config.json").is_file()
    assert not list(cached.parent.glob("*.partial"))  # whole or not at all

    assert main(["models", "path", "--json"]) == 0
    assert "first use" not in capsys.readouterr().err  # cached: nothing to say


def test_an_unknown_bundled_name_is_one_line(home, tiny_llama: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("TWINOPS_BASE_MODEL", str(tiny_llama))
    monkeypatch.setenv("TWINOPS_EMBEDDING_MODEL", "bundled:no-such-model")
    get_settings.cache_clear()
    one_line_error(main, ["models", "path"], capsys, "TWINOPS_EMBEDDING_MODEL", "all-minilm-l6-v2")


@pytest.mark.slow
def test_the_bundled_llm_is_converted_on_first_use_in_one_line(home, capsys) -> None:
    """The GGUF -> HF conversion of SmolLM2 says one line, without its per-tensor progress bars."""
    assert main(["models", "path", "--json"]) == 0
    captured = capsys.readouterr()
    folder = Path(json.loads(captured.out)["base_model"])
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    notices = [line for line in captured.err.splitlines() if "first use" in line]
    assert len(notices) == 2 and any("smollm2-135m-instruct" in line for line in notices)
    assert "Converting" not in captured.err and "Writing model shards" not in captured.err
