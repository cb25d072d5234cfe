"""A crawl run whose process was killed mid-run is marked failed at the next start, not left
``running`` for good; a run whose process lives on, or that runs on another host, is left alone."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

from twinops.infra.crawl_runs import CrawlRun, CrawlRunRepository
from twinops.infra.mongo import connect
from twinops.services.process import wait_until

# An ETL process as far as the run record goes: it starts its run, then is killed before finishing.
KILLED_RUN = textwrap.dedent(
    """
    import time
    from twinops.infra.crawl_runs import CrawlRunRepository
    from twinops.infra.mongo import connect
    from twinops.settings import get_settings

    CrawlRunRepository(connect(get_settings())).start("run-killed", ["ada: folder"])
    time.sleep(300)
    """
)


def test_a_run_left_running_by_a_killed_process_is_failed_at_the_next_start(mongo_settings) -> None:
    runs = CrawlRunRepository(connect(mongo_settings))
    process = subprocess.Popen([sys.executable, "-c", KILLED_RUN])  # inherits TWINOPS_MONGODB_*
    try:
        assert wait_until(lambda: runs.latest() is not None, timeout=120)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert runs.get("run-killed").status == "running"  # what the issue found, for good

    live = runs.start("run-live", ["ada: folder"])  # this process: alive
    elsewhere = CrawlRun(run_id="run-pod", started_at=live.started_at, host="a-pod", pid=process.pid)
    connect(mongo_settings)["crawl_runs"].insert_one(
        {"_id": elsewhere.run_id, **elsewhere.model_dump(exclude={"run_id"})}
    )
    killed = runs.get("run-killed")
    assert killed.status == "failed" and killed.finished_at is not None
    reason = f"abandoned: process {process.pid} on {killed.host} ended without finishing the run"
    assert killed.errors == [reason]

    runs.start("run-next", ["ada: folder"])
    assert runs.get("run-live").status == "running"  # its process (this one) is alive
    assert runs.get("run-pod").status == "running"  # another host's process cannot be seen
