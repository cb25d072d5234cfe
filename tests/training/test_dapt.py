"""DAPT (the author's text before SFT) and runs sized by their data, on the tiny random Llama."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from twinops.cli import main
from twinops.domain.versions import DatasetKind
from twinops.training import DAPTJob, SFTJob, TrainerSpec, train_dapt, train_sft
from twinops.training.dapt import MIN_BLOCK_TOKENS, latest_dapt_model, passages, text_blocks
from twinops.training.runs import planned_steps

pytestmark = pytest.mark.slow  # trains (DAPT, SFT) on the tiny model

TINY = TrainerSpec(max_length=32, per_device_train_batch_size=2, device="cpu")


def _rows(texts: list[str]) -> list[dict]:
    return [
        {
            "prompt": [{"role": "user", "content": f"Question {i}?"}],
            "completion": [{"role": "assistant", "content": text}],
        }
        for i, text in enumerate(texts)
    ]


@pytest.mark.parametrize(
    ("spec", "rows", "steps"),
    [
        # Epochs over the rows: 2 passes over 10 rows in batches of 2.
        (TrainerSpec(max_steps=-1, num_train_epochs=2, step_cap=100, per_device_train_batch_size=2), 10, 10),
        # A large corpus stops at the cap.
        (TrainerSpec(max_steps=-1, num_train_epochs=2, step_cap=7, per_device_train_batch_size=2), 10, 7),
        # A last short batch is a step; accumulation rounds up, as transformers counts.
        (
            TrainerSpec(
                max_steps=-1,
                num_train_epochs=1,
                step_cap=100,
                per_device_train_batch_size=2,
                gradient_accumulation_steps=2,
            ),
            9,
            3,
        ),
        # An explicit step count is kept whatever the data.
        (TrainerSpec(max_steps=5, step_cap=2), 100, 5),
        # No cap: transformers runs the epochs itself.
        (TrainerSpec(max_steps=-1, num_train_epochs=3), 10, -1),
    ],
)
def test_planned_steps_follow_the_rows_up_to_the_cap(spec: TrainerSpec, rows: int, steps: int) -> None:
    assert planned_steps(spec, rows) == steps


def test_planned_steps_share_the_rows_among_ranks(monkeypatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    spec = TrainerSpec(max_steps=-1, num_train_epochs=1, step_cap=100, per_device_train_batch_size=2)
    assert planned_steps(spec, 10) == 3


def test_text_blocks_keep_every_token_of_the_passages_and_nothing_else(tiny_llama: Path) -> None:
    """Every passage of the split once, whole, in blocks of at most max_length tokens."""
    from datasets import Dataset
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    texts = [f"The author writes passage {i} about {'lineage ' * (i + 3)}and gates." for i in range(6)]
    split = Dataset.from_list(_rows([*texts, texts[0]]))  # a passage answering two questions
    assert passages(split) == texts
    blocks = text_blocks(split, tokenizer, max_length=16, seed=0)
    assert blocks["input_ids"] == blocks["labels"]
    assert all(len(block) <= 16 for block in blocks["input_ids"])
    stream = [token for block in blocks["input_ids"] for token in block]
    expected = sum(len(tokenizer(text, add_special_tokens=False)["input_ids"]) + 1 for text in texts)
    tail = expected % 16
    assert 0 < tail < MIN_BLOCK_TOKENS, "the case under test: a last block too short to keep"
    assert len(stream) == expected - tail, "each passage once, one end-of-text token after each"
    assert stream.count(tokenizer.eos_token_id) >= len(texts) - 1
    decoded = tokenizer.decode(stream, skip_special_tokens=True)
    assert sum(f"passage {i} " in decoded for i in range(6)) >= 5
    # A chat template never enters: DAPT is plain text.
    assert "<|im_start|>" not in tokenizer.decode(stream) and "Question" not in decoded


def test_dapt_then_sft_from_it(
    training_settings, make_dataset, tiny_llama: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """DAPT reads the train split's passages only, runs its epochs, and SFT starts from its merged model."""
    train_texts = [f"Train passage {i}: the author keeps every dataset versioned." for i in range(6)]
    held_out = ["HELD OUT: a golden document the evaluation measures perplexity on, never trained on."] * 2
    instruction = make_dataset(DatasetKind.INSTRUCTION, train=6, test=2, rows=_rows(train_texts + held_out))
    job = DAPTJob(
        model=str(tiny_llama),
        trainer=TINY.model_copy(update={"max_steps": -1, "num_train_epochs": 2, "step_cap": 50}),
        progress=False,
    )
    dapt = train_dapt(job, training_settings)
    blocks = text_blocks(
        _dataset(train_texts), _tokenizer(tiny_llama), max_length=TINY.max_length, seed=TINY.seed
    )
    assert dapt.stage == "dapt" and dapt.dataset_version_ids == [instruction.id]
    assert dapt.steps == 2 * -(-len(blocks) // TINY.per_device_train_batch_size), "2 epochs over the blocks"
    assert dapt.metrics["passage_test_perplexity"] > 1.0
    assert Path(dapt.run_dir).parent == training_settings.home / "runs" / "dapt"
    assert latest_dapt_model(training_settings) == dapt.model_dir

    # The CLI: SFT --from-dapt starts from that merged model.
    capsys.readouterr()  # what the libraries printed while DAPT trained
    sft_args = ["train", "sft", "--from-dapt", "--max-steps", "1", "--json"]
    assert main(sft_args) == 0
    sft = json.loads(capsys.readouterr().out)
    assert sft["base_model"] == dapt.model_dir and sft["steps"] == 1
    # The library: SFT sized by its rows (1 epoch over 6 rows in batches of 2).
    sized = TINY.model_copy(update={"max_steps": -1, "num_train_epochs": 1, "step_cap": 50, "max_length": 96})
    assert (
        train_sft(SFTJob(model=dapt.model_dir, trainer=sized, progress=False), training_settings).steps == 3
    )


def test_sft_from_dapt_without_a_dapt_run_is_one_line(
    training_settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "sft", "--from-dapt"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no finished DAPT run" in err and "twinops train dapt" in err and "\n" not in err
    assert main(["train", "sft", "--from-dapt", "--model", "x"]) == 2
    assert "--from-dapt and --model" in capsys.readouterr().err


def _dataset(texts: list[str]):
    from datasets import Dataset

    return Dataset.from_list(_rows(texts))


def _tokenizer(folder: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)
