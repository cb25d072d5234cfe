"""The training step on the demo corpus: after DAPT, the SFT model beats the base on held-out text.

The rows are what the dataset step makes of the demo (one row per passage, the answer being the
author's passage), split by document as it splits them: a quarter of the posts are held out and
never trained on. The claim is the one `make run`'s evaluation makes: lower perplexity on the
held-out author texts than the base model, beyond noise (the paired bootstrap interval of the
difference per text lies below zero).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from twinops.domain.stats import paired_difference_interval, value
from twinops.domain.versions import DatasetKind
from twinops.training import DAPTJob, SFTJob, TrainerSpec, train_dapt, train_sft

DEMO = Path(__file__).resolve().parents[2] / "data" / "demo-corpus"
PASSAGE_CHARS = 700  # about one chunk of the feature pipeline (~150 tokens)
HELD_OUT_EVERY = 4  # every 4th post is held out, as the dataset step holds out a quarter


def demo_passages() -> dict[str, list[str]]:
    """Each demo post's body (front matter dropped) as paragraphs joined up to PASSAGE_CHARS."""
    posts: dict[str, list[str]] = {}
    for path in sorted(DEMO.glob("*.md")):
        body = re.sub(r"\A---\n.*?\n---\n", "", path.read_text(encoding="utf-8"), flags=re.DOTALL)
        passages: list[str] = []
        for paragraph in (part.strip() for part in body.split("\n\n")):
            if passages and len(passages[-1]) + len(paragraph) < PASSAGE_CHARS:
                passages[-1] += "\n\n" + paragraph
            elif paragraph:
                passages.append(paragraph)
        posts[path.stem] = passages
    return posts


def instruction_rows(posts: dict[str, list[str]]) -> list[dict]:
    return [
        {
            "prompt": [{"role": "user", "content": f"What do you say about {name.replace('-', ' ')}?"}],
            "completion": [{"role": "assistant", "content": passage}],
            "document_id": name,
        }
        for name, passages in posts.items()
        for passage in passages
    ]


def held_out_log_perplexities(model_dir: str, texts: list[str]) -> list[float]:
    from twinops.models.loaders import load_causal_lm
    from twinops.models.perplexity import log_perplexities

    model, tokenizer = load_causal_lm(model_dir)
    return log_perplexities(model, tokenizer, texts, max_length=256)


@pytest.mark.slow
@pytest.mark.timeout(2400)  # about 30 real optimizer steps of a 135M model on 2 shared CPU cores
def test_sft_after_dapt_beats_the_base_on_held_out_demo_text(
    training_settings, make_dataset, bundled_models_dir: Path
) -> None:
    posts = demo_passages()
    names = sorted(posts)
    held_out = {name for index, name in enumerate(names) if index % HELD_OUT_EVERY == 0}
    train_rows = instruction_rows({name: posts[name] for name in names if name not in held_out})
    test_rows = instruction_rows({name: posts[name] for name in names if name in held_out})
    make_dataset(
        DatasetKind.INSTRUCTION, train=len(train_rows), test=len(test_rows), rows=train_rows + test_rows
    )
    base = str(bundled_models_dir / "smollm2-135m-instruct")

    # One pass over the author's text, then part of an SFT epoch: the sizes `make run` uses, cut down.
    sized = TrainerSpec(max_steps=-1, num_train_epochs=1, max_length=256, device="cpu", max_eval_samples=8)
    dapt = train_dapt(
        DAPTJob(
            model=base,
            trainer=sized.model_copy(update={"learning_rate": 3e-4, "step_cap": 12}),
            progress=False,
        ),
        training_settings,
    )
    sft = train_sft(
        SFTJob(model=dapt.model_dir, trainer=sized.model_copy(update={"step_cap": 8}), progress=False),
        training_settings,
    )
    assert sft.base_model == dapt.model_dir and sft.steps == 8

    texts = [passage for name in sorted(held_out) for passage in posts[name]]
    base_values = held_out_log_perplexities(base, texts)
    sft_values = held_out_log_perplexities(sft.model_dir, texts)
    base_perplexity = value("golden_perplexity", base_values)
    sft_perplexity = value("golden_perplexity", sft_values)
    low, high = paired_difference_interval("golden_perplexity", base_values, sft_values)
    report = f"base {base_perplexity:.1f}, sft {sft_perplexity:.1f}, difference in [{low:.1f}, {high:.1f}]"
    assert sft_perplexity < base_perplexity, report
    assert high < 0, f"the gain is within noise: {report}"
