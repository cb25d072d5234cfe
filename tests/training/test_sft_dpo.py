"""SFT → DPO → merge mechanics on the tiny random Llama, with MongoDB, MLflow (sqlite) and files real."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from twinops.domain.versions import DatasetKind
from twinops.errors import ConfigError, NotFound
from twinops.training import DPOJob, SFTJob, TrainerSpec, merge_adapter, train_dpo, train_sft
from twinops.training.sft import SFT_COLUMNS, build_sft_trainer

pytestmark = pytest.mark.slow  # trains (SFT, DPO) on the tiny model

TINY = TrainerSpec(max_steps=2, max_length=64, per_device_train_batch_size=2, device="cpu")


def test_sft_masks_the_prompt_out_of_the_loss(tiny_llama: Path, tmp_path: Path, dataset_rows) -> None:
    """The chat-templated prompt is -100 in the labels; the completion (and its end token) is not."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rows = Dataset.from_list(dataset_rows[DatasetKind.INSTRUCTION](2)).select_columns(list(SFT_COLUMNS))
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    trainer = build_sft_trainer(
        SFTJob(trainer=TINY),
        AutoModelForCausalLM.from_pretrained(tiny_llama),
        tokenizer,
        train=rows,
        test=None,
        output_dir=tmp_path / "trainer",
        callbacks=[],
    )
    assert trainer.args.completion_only_loss is True
    example = trainer.train_dataset[0]
    labels, ids = example["labels"], example["input_ids"]
    first = next(i for i, label in enumerate(labels) if label != -100)
    assert first > 0 and all(label == -100 for label in labels[:first])
    learned = tokenizer.decode([t for t, label in zip(ids, labels, strict=True) if label != -100])
    assert "I love gardening" in learned and "Write a short note" not in learned
    # The prompt went through the model's chat template (SmolLM2's <|im_start|> turns).
    assert "<|im_start|>user" in tokenizer.decode(ids[:first])


@pytest.mark.parametrize("chunked", [False, True], ids=["model-loss", "chunked-head"])
def test_sft_loss_and_gradients_are_trls_without_its_per_step_extras(
    tiny_llama: Path, tmp_path: Path, dataset_rows, monkeypatch, chunked: bool
) -> None:
    """The lean trainer's loss and LoRA gradients equal stock TRL ``SFTTrainer``'s on the same batch,
    and its logs keep the loss but drop ``entropy`` / ``mean_token_accuracy``.

    ``chunked``: the CUDA branch (TRL's chunked LM head asked for log-probs only) forced on CPU, where
    the same head runs as torch ops; no GPU here.
    """
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTTrainer

    from twinops.training import LoraSpec
    from twinops.training.runs import lora_config
    from twinops.training.sft import sft_config

    if chunked:
        monkeypatch.setattr("twinops.training.sft.CHUNKED_LM_HEAD_DEVICES", ("cpu",))
    rows = Dataset.from_list(dataset_rows[DatasetKind.INSTRUCTION](4)).select_columns(list(SFT_COLUMNS))
    job = SFTJob(trainer=TINY, lora=LoraSpec(dropout=0.0))  # no dropout: both sides see one network

    def build(make):
        torch.manual_seed(0)
        tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
        return make(AutoModelForCausalLM.from_pretrained(tiny_llama), tokenizer)

    lean = build(
        lambda model, tokenizer: build_sft_trainer(
            job, model, tokenizer, train=rows, test=rows, output_dir=tmp_path / "lean", callbacks=[]
        )
    )
    stock = build(
        lambda model, tokenizer: SFTTrainer(
            model=model,
            args=sft_config(job, tmp_path / "stock"),
            train_dataset=rows,
            processing_class=tokenizer,
            peft_config=lora_config(job.lora),
        )
    )
    assert type(lean) is not SFTTrainer and lean.chunked_lm_head is chunked
    batch = lean._prepare_inputs(next(iter(lean.get_train_dataloader())))
    assert (batch["labels"] == -100).any() and (
        batch["labels"] != -100
    ).any()  # prompt masked, completion not
    losses, grads = [], []
    for trainer in (lean, stock):
        trainer.model.train()
        loss = trainer.compute_loss(trainer.model, dict(batch))
        loss.backward()
        losses.append(loss.detach())
        grads.append({n: p.grad for n, p in trainer.model.named_parameters() if p.requires_grad})
    assert torch.allclose(losses[0], losses[1], rtol=1e-5)
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name, grad in grads[0].items():
        assert torch.allclose(grad, grads[1][name], rtol=1e-4, atol=1e-7), name

    lean.train()
    logged = [entry for entry in lean.state.log_history if "loss" in entry]
    assert len(logged) == TINY.max_steps and all(entry["loss"] > 0 for entry in logged)
    assert not {"entropy", "mean_token_accuracy"} & {key for entry in lean.state.log_history for key in entry}
    assert lean.evaluate()["eval_loss"] > 0


def test_sft_then_dpo_then_merge(training_settings, make_dataset, tiny_llama: Path) -> None:
    import mlflow
    import torch
    from transformers import AutoModelForCausalLM

    instruction = make_dataset(DatasetKind.INSTRUCTION)
    preference = make_dataset(DatasetKind.PREFERENCE)

    sft = train_sft(SFTJob(model=str(tiny_llama), trainer=TINY, progress=False), training_settings)
    run_dir = Path(sft.run_dir)
    assert run_dir.parent == training_settings.home / "runs" / "sft"
    assert (run_dir / "adapter" / "adapter_config.json").exists()
    assert (run_dir / "merged" / "config.json").exists() and (run_dir / "train_result.json").exists()
    assert not list(run_dir.parent.glob("*.partial"))
    assert sft.dataset_version_ids == [instruction.id] and sft.steps == 2
    assert {"train_loss", "eval_loss", "instruction_test_perplexity"} <= set(sft.metrics)

    run = mlflow.MlflowClient(training_settings.mlflow_tracking_uri).get_run(sft.mlflow_run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["job.lora.r"] == "8" and run.data.tags["dataset_version_ids"] == instruction.id
    assert "loss" in run.data.metrics and "instruction_test_perplexity" in run.data.metrics
    assert {i.dataset.name for i in run.inputs.dataset_inputs} == {instruction.id}
    artifacts = {
        a.path
        for a in mlflow.MlflowClient(training_settings.mlflow_tracking_uri).list_artifacts(sft.mlflow_run_id)
    }
    assert {"environment", "adapter", "job.yaml", "train_result.json"} <= artifacts

    # DPO starts from the newest SFT run's merged model by default.
    dpo = train_dpo(DPOJob(trainer=TINY, beta=0.2, progress=False), training_settings)
    assert dpo.base_model == sft.model_dir and dpo.dataset_version_ids == [preference.id]
    assert "eval_rewards/accuracies" in dpo.metrics and dpo.metrics["preference_test_perplexity"] > 1.0
    dpo_run = mlflow.MlflowClient(training_settings.mlflow_tracking_uri).get_run(dpo.mlflow_run_id)
    assert dpo_run.data.params["job.beta"] == "0.2"

    # Merging the saved adapter from disk gives the same model as the in-run merge.
    merged = merge_adapter(dpo.adapter_dir, training_settings.home / "remerged", training_settings)
    assert merged.base_model == sft.model_dir
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        left = AutoModelForCausalLM.from_pretrained(merged.output_dir)(ids).logits
        right = AutoModelForCausalLM.from_pretrained(dpo.model_dir)(ids).logits
    assert torch.allclose(left, right, atol=1e-5)


def test_adapter_that_does_not_match_the_base_is_one_error(
    training_settings, make_dataset, tiny_llama: Path, bundled_models_dir: Path
) -> None:
    from twinops.training import TrainResult

    make_dataset(DatasetKind.INSTRUCTION)
    one_step = TINY.model_copy(update={"max_steps": 1})
    sft = train_sft(SFTJob(model=str(tiny_llama), trainer=one_step), training_settings)
    stored = json.loads((Path(sft.run_dir) / "train_result.json").read_text())
    assert TrainResult.model_validate(stored) == sft
    output = training_settings.home / "wrong-merge"
    with pytest.raises(ConfigError) as error:
        real_base = str(bundled_models_dir / "smollm2-135m-instruct")
        merge_adapter(sft.adapter_dir, output, training_settings, base_model=real_base)
    message = str(error.value)
    assert "does not match base model" in message and "\n" not in message and "mismatch" in message
    assert not output.exists() and not output.with_name("wrong-merge.partial").exists()
    with pytest.raises(NotFound, match=r"adapter_config\.json"):
        merge_adapter(tiny_llama, output, training_settings)


def test_missing_dataset_version_trains_nothing(training_settings, tiny_llama: Path) -> None:
    from mlflow import MlflowClient

    job = SFTJob(model=str(tiny_llama), dataset="instruction-doesnotexist", trainer=TINY)
    with pytest.raises(NotFound) as error:
        train_sft(job, training_settings)
    assert "instruction-doesnotexist" in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(NotFound, match="no instruction dataset version yet"):
        train_sft(job.model_copy(update={"dataset": "latest"}), training_settings)
    assert not (training_settings.home / "runs").exists()
    assert (
        MlflowClient(training_settings.mlflow_tracking_uri).search_experiments(
            filter_string="name = 'twinops-sft'"
        )
        == []
    )


def test_dataset_of_the_wrong_kind_is_refused(training_settings, make_dataset, tiny_llama: Path) -> None:
    preference = make_dataset(DatasetKind.PREFERENCE)
    job = SFTJob(model=str(tiny_llama), dataset=preference.id, trainer=TINY)
    with pytest.raises(ConfigError, match="is a preference dataset"):
        train_sft(job, training_settings)


def test_dpo_without_an_sft_run_says_what_to_do(training_settings, make_dataset) -> None:
    make_dataset(DatasetKind.PREFERENCE)
    with pytest.raises(NotFound, match="run `twinops train sft` first"):
        train_dpo(DPOJob(trainer=TINY), training_settings)


def test_failed_run_leaves_no_folder_and_a_failed_mlflow_run(
    training_settings, make_dataset, tiny_llama: Path
) -> None:
    from mlflow import MlflowClient

    from twinops.training import LoraSpec

    make_dataset(DatasetKind.INSTRUCTION)
    job = SFTJob(model=str(tiny_llama), lora=LoraSpec(target_modules=["nope_proj"]), trainer=TINY)
    with pytest.raises(ConfigError, match="match no layer"):
        train_sft(job, training_settings)
    assert list((training_settings.home / "runs" / "sft").iterdir()) == []
    client = MlflowClient(training_settings.mlflow_tracking_uri)
    [experiment] = client.search_experiments(filter_string="name = 'twinops-sft'")
    [run] = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FAILED"
