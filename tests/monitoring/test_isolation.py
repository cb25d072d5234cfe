"""The detectors in a process of their own (``DetectorsProcess``), behind the online detector over
real HTTP: the same verdicts as testing in the server's process, a child that dies while testing
fails only that delivery (a 500 in the service's error shape) and the next batch is tested by a new
child, a child killed while idle is replaced without losing the batch, and the child ends with its
parent.

The embeddings are synthetic unit vectors, so no model runs; the detector is evidently's MMD.
"""

from __future__ import annotations

import operator
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cloudpickle
import numpy as np
import psutil
import pytest
from tests.support.synthetic_drift import (
    BATCH,
    DIMENSION,
    post_rows,
    queries_space,
    unit_vectors,
    vectors_only_detector,
)

from twinops.monitoring.config import DriftConfig
from twinops.monitoring.detectors import DriftResult, SpaceDetectors, SpaceReference, fit_evidently
from twinops.monitoring.isolation import DetectorsProcess, DetectorsProcessDied
from twinops.monitoring.service import create_app

pytestmark = pytest.mark.slow  # each DetectorsProcess spawns a Python that imports evidently


cloudpickle.register_pickle_by_value(sys.modules[__name__])  # CrashingDetector goes to the child


@pytest.fixture(scope="module")
def space() -> SpaceDetectors:
    return queries_space()


class CrashingDetector:
    """Kills its own process while testing a batch, once: when ``flag`` exists (it is removed
    first, so the child started next tests normally)."""

    name = "crashing"

    def __init__(self, flag: Path) -> None:
        self.flag = flag

    def predict(self, reduced: np.ndarray) -> DriftResult:
        if self.flag.exists():
            self.flag.unlink()
            time.sleep(0.5)  # the batches sent after this one are already waiting in the pipe
            os.kill(os.getpid(), signal.SIGKILL)
        return DriftResult(
            detector=self.name, space="queries", is_drift=False, distance=0.0, p_val=1.0,
            threshold=0.05, batch_size=len(reduced),
        )  # fmt: skip


def _server(space: SpaceDetectors, serve_app, detectors_process: DetectorsProcess | None) -> str:
    return serve_app(create_app(vectors_only_detector(space, detectors_process=detectors_process)))


def test_the_detectors_process_gives_the_verdicts_of_the_servers_own_process(space, serve_app):
    batches = [unit_vectors(BATCH, seed=10), unit_vectors(BATCH, seed=11, shift=0.8)]
    in_process = _server(space, serve_app, None)
    expected = [post_rows(in_process, rows)[-1].json() for rows in batches]
    with DetectorsProcess({"queries": space}) as detectors_process:
        isolated = _server(space, serve_app, detectors_process)
        got = [post_rows(isolated, rows)[-1].json() for rows in batches]
    assert got == expected
    assert [reply["data"]["is_drift"] for reply in got] == [0, 1]  # the shifted batch drifts


def test_a_child_that_dies_testing_fails_that_delivery_and_a_new_child_tests_the_next(
    space, serve_app, tmp_path
):
    flag = tmp_path / "crash-next-batch"
    crashing = SpaceDetectors(space.reference, [*space.detectors, CrashingDetector(flag)])
    with DetectorsProcess({"queries": crashing}) as detectors_process:
        url = _server(crashing, serve_app, detectors_process)
        first_child = detectors_process.pid
        flag.touch()
        failed = post_rows(url, unit_vectors(BATCH, seed=20))[-1]
        assert failed.status_code == 500
        assert failed.json()["error"] == "detectors_process_died"
        assert "a new one tests the next batches" in failed.json()["detail"]
        tested = post_rows(url, unit_vectors(BATCH, seed=21))[-1]
        assert tested.status_code == 200
        assert set(tested.json()["meta"]["detectors"]) == {"evidently-mmd", "crashing"}
        assert detectors_process.pid != first_child


def test_answered_at_once_a_batch_whose_child_dies_is_counted_failed_and_the_next_is_tested(
    space, serve_app, tmp_path, read_metric, metric_reaches
):
    """As shipped, the delivery was answered before the child died: the loss is logged and counted
    in ``twinops_drift_batches_failed_total``, and the server goes on with a new child."""
    flag = tmp_path / "crash-next-batch"
    crashing = SpaceDetectors(space.reference, [*space.detectors, CrashingDetector(flag)])
    with DetectorsProcess({"queries": crashing}) as detectors_process:
        detector = vectors_only_detector(
            crashing, detectors_process=detectors_process, verdict_in_reply=False
        )
        url = serve_app(create_app(detector))
        flag.touch()
        assert post_rows(url, unit_vectors(BATCH, seed=22))[-1].status_code == 202
        failed = {"space": "queries", "reason": "detectors_process_died"}
        assert metric_reaches(url, "twinops_drift_batches_failed_total", 1.0, **failed), "never counted"
        assert post_rows(url, unit_vectors(BATCH, seed=23))[-1].status_code == 202
        assert metric_reaches(url, "twinops_drift_batches_total", 1.0, space="queries"), "never tested"
        assert read_metric(url, "twinops_drift_batches_failed_total", **failed) == 1.0


def test_a_child_killed_while_idle_is_replaced_and_the_batch_is_tested(space, serve_app):
    with DetectorsProcess({"queries": space}) as detectors_process:
        url = _server(space, serve_app, detectors_process)
        child = psutil.Process(detectors_process.pid)
        child.kill()  # not reaped here: as when the kernel kills it, its parent finds it dead
        deadline = time.monotonic() + 10
        while child.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
            time.sleep(0.05)
        tested = post_rows(url, unit_vectors(BATCH, seed=30))[-1]
        assert tested.status_code == 200
        assert tested.json()["meta"]["detectors"].keys() == {"evidently-mmd"}


def test_batches_sent_while_the_child_tests_get_their_own_verdicts_in_order(space):
    """Several callers' batches wait in the child's pipe at once (the child never idles between
    them): each future gets the verdicts of its own batch, as testing them one by one gives."""
    batches = [unit_vectors(BATCH, seed=40 + index, shift=0.8 * (index % 2)) for index in range(6)]
    expected = [space.predict(batch) for batch in batches]
    with DetectorsProcess({"queries": space}) as detectors_process:
        futures = [detectors_process.submit("queries", batch) for batch in batches]
        got = [future.result(timeout=60) for future in futures]
    assert got == expected
    assert [results[0].is_drift for results in got] == [False, True] * 3


def test_a_child_that_dies_fails_every_batch_it_held_and_the_next_batch_is_tested(space, tmp_path):
    flag = tmp_path / "crash-next-batch"
    crashing = SpaceDetectors(space.reference, [*space.detectors, CrashingDetector(flag)])
    with DetectorsProcess({"queries": crashing}) as detectors_process:
        flag.touch()
        held = [detectors_process.submit("queries", unit_vectors(BATCH, seed=50 + i)) for i in range(3)]
        for future in held:
            with pytest.raises(DetectorsProcessDied, match="died testing a batch of 8 rows"):
                future.result(timeout=60)
        tested = detectors_process.predict("queries", unit_vectors(BATCH, seed=60))
    assert [result.detector for result in tested] == ["evidently-mmd", "crashing"]


class Unloadable:
    """Pickles in the child, fails to load in the server's process (1 / 0 when unpickled)."""

    def __reduce__(self):
        return operator.truediv, (1, 0)


class UnloadableDetector:
    name = "unloadable"

    def predict(self, reduced: np.ndarray) -> Unloadable:
        return Unloadable()


def test_a_reply_the_server_cannot_load_fails_its_batch_and_the_child_tests_the_next(space):
    """Before the replies had a thread of their own, such a reply raised in the caller; now it must
    fail its own future, not stop the thread that reads every reply (every later batch would hang)."""
    with DetectorsProcess(
        {"queries": space, "broken": SpaceDetectors(space.reference, [UnloadableDetector()])}
    ) as process:
        child = process.pid
        with pytest.raises(ZeroDivisionError):
            process.submit("broken", unit_vectors(BATCH, seed=70)).result(timeout=60)
        tested = process.submit("queries", unit_vectors(BATCH, seed=71)).result(timeout=60)
        assert [result.detector for result in tested] == ["evidently-mmd"]
        assert process.pid == child


def test_the_child_ends_when_the_servers_process_is_killed(tmp_path):
    """A server stopped by a signal does not close its pool (uvicorn re-raises SIGTERM after its
    shutdown): the child must not outlive it."""
    script = tmp_path / "server.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys, time
            import numpy as np
            from twinops.monitoring.config import DriftConfig
            from twinops.monitoring.detectors import SpaceDetectors, SpaceReference, fit_evidently
            from twinops.monitoring.isolation import DetectorsProcess, DetectorsProcessDied

            if __name__ == "__main__":
                config = DriftConfig(batch_size=8, calibration_draws=10, evidently_methods=("mmd",),
                                     reduced_dimension=4)
                rows = np.random.default_rng(0).normal(size=(50, {DIMENSION})).astype(np.float32)
                reference = SpaceReference.fit("queries", rows, config)
                space = SpaceDetectors(reference, list(fit_evidently(reference, 8, config)))
                process = DetectorsProcess({{"queries": space}})
                print("ready", flush=True)
                time.sleep(600)
            """
        )
    )
    server = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ready"
        children = [p for p in psutil.Process(server.pid).children() if "spawn_main" in " ".join(p.cmdline())]
        assert len(children) == 1
        server.kill()
        server.wait(timeout=10)
        _, alive = psutil.wait_procs(children, timeout=15)
        assert not alive, "the detectors' process outlived the server"
    finally:
        server.kill()


def test_the_detectors_process_reuses_its_memory_instead_of_faulting_it_in_at_every_batch():
    """A test's large temporaries (the MMD kernel over a 1,000-row reference) are freed and taken
    again at every batch; in a fresh process glibc unmapped and faulted them in each time (2,300
    page faults a batch, 50% longer). The child keeps them: page faults do not grow with batches."""
    config = DriftConfig(batch_size=32, calibration_draws=10, evidently_methods=("mmd",))
    reference = SpaceReference.fit("queries", np.random.default_rng(0).normal(size=(1000, 64)), config)
    space = SpaceDetectors(reference, list(fit_evidently(reference, 32, config)))
    batches = [np.random.default_rng(seed).normal(size=(32, 64)).astype(np.float32) for seed in range(21)]
    with DetectorsProcess({"queries": space}) as detectors_process:
        detectors_process.predict("queries", batches[0])  # the first batch may still grow the heap
        before = _minor_faults(detectors_process.pid)
        for batch in batches[1:]:
            detectors_process.predict("queries", batch)
        per_batch = (_minor_faults(detectors_process.pid) - before) / (len(batches) - 1)
    assert per_batch < 50, f"{per_batch:.0f} page faults a batch"


def _minor_faults(pid: int) -> int:
    """The process's minor page faults so far (/proc/PID/stat, field 10)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[7])
