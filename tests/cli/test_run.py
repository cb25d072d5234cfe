"""`twinops run` checks its parameters before it starts anything.

The whole loop itself is what `make run` executes; the pipeline tests run its two halves locally.
"""

import pytest

from twinops.cli import main
from twinops.cli.run import _load_params, _not_served


def test_params_come_from_yaml_then_overrides(tmp_path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text('author: Ada Quill\nmax_chunks: 8\nsources: ["data/demo-corpus"]\nask: "Why?"\n')
    params, question = _load_params(config, ["max_chunks=4"])
    assert params == {"author": "Ada Quill", "max_chunks": "4", "sources": '["data/demo-corpus"]'}
    assert question == "Why?", "the question for the served twin is not a pipeline parameter"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--config", "missing.yaml"], "missing.yaml"),
        (["--param", "no_such_param=1"], "no_such_param"),
        (["--param", "max_chunks=many"], "max_chunks"),
        (["--config", "bad-ask.yaml"], "`ask` must be a question"),
    ],
)
@pytest.mark.slow
def test_bad_run_input_is_one_line(home, capsys, monkeypatch, tmp_path, args, needle) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad-ask.yaml").write_text("author: Ada Quill\nask: [not, a, question]\n")
    assert main(["run", *args]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert not (home / "services.json").exists(), "nothing was started"


def test_only_the_default_authors_twin_is_released_and_served_at_the_end() -> None:
    """Another author's twin (twin-llm-<author>) is not served as if it were twin-llm's: the run
    says so instead of printing the default twin's release."""
    assert _not_served(None) is None and _not_served("Ada Quill") is None
    note = _not_served("MLflow Authors")
    assert note is not None and "twin-llm-mlflow-authors" in note and note.startswith("not served")
