"""Progress events: parts report, the Face renders; with no reporter installed nothing happens."""

from __future__ import annotations

from twinops.domain.progress import report, reporting, reporting_to


def test_report_reaches_the_installed_reporter_only_inside_the_block() -> None:
    seen: list[tuple] = []

    def collect(step: str, done: int, total: int | None, note: str = "") -> None:
        seen.append((step, done, total, note))

    report("before", 1, 2)
    with reporting_to(collect):
        assert reporting()
        report("embed", 3, 10)
        report("train", 4, None, "loss=1.0")
    report("after", 1, 2)
    assert not reporting()
    assert seen == [("embed", 3, 10, ""), ("train", 4, None, "loss=1.0")]


def test_trainer_callback_reports_steps_and_the_latest_loss() -> None:
    from transformers import TrainerState

    from twinops.training.callbacks import TrainerProgressCallback

    seen: list[tuple] = []
    state = TrainerState(max_steps=3)
    callback = TrainerProgressCallback("sft run-1")
    with reporting_to(lambda *event: seen.append(event)):
        callback.on_train_begin(None, state, None)
        state.global_step = 1
        callback.on_log(None, state, None, logs={"loss": 2.5})
        callback.on_step_end(None, state, None)
    assert seen[0] == ("sft run-1", 0, 3, "")
    assert seen[-1] == ("sft run-1", 1, 3, "loss=2.5000")
