"""The warehouse dies mid-run: the ETL ends at the first write that finds it gone, in one line, instead
of waiting out a server-selection timeout for every remaining document and ending in a traceback.
What was acknowledged before the kill is there when the server comes back. (The run's record stays
``running`` until the next start once this process has ended: ``tests/infra/test_crawl_runs.py``.)"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from twinops.errors import ServiceUnavailable
from twinops.etl import EtlJob, run_etl
from twinops.infra.crawl_runs import CrawlRunRepository
from twinops.infra.mongo import connect
from twinops.services import mongodb
from twinops.services.process import stop_pid
from twinops.settings import Settings, get_settings

DOCUMENTS = 30

pytestmark = pytest.mark.slow  # a wire server started, killed and started again per case


@pytest.mark.parametrize("kill_after", [1, 12])  # documents stored when the warehouse is killed
def test_a_warehouse_killed_mid_run_ends_the_run_in_one_line(
    tmp_path: Path, monkeypatch, kill_after: int
) -> None:
    server = mongodb.start(Settings(home=tmp_path / "mongo-home"))
    monkeypatch.setenv("TWINOPS_MONGODB_URI", server.uri)
    get_settings.cache_clear()
    folder = tmp_path / "posts"
    folder.mkdir()
    for index in range(DOCUMENTS):
        (folder / f"post-{index}.md").write_text(f"# Post {index}\n\nThe body of post number {index}.\n")
    seen: list[tuple[int, int]] = []  # (stored, failed) at each progress tick after the kill

    def kill_after_the_first_document(result, _done: bool) -> None:
        if seen or result.new + result.updated >= kill_after:
            if not seen:
                os.killpg(server.pid, signal.SIGKILL)  # as the operator did, 2 s into a run
            seen.append((result.new + result.updated, result.failed))

    try:
        with pytest.raises(ServiceUnavailable) as raised:
            run_etl(
                EtlJob.for_author("Ada Quill", [str(folder)]),
                get_settings(),
                on_progress=kill_after_the_first_document,
            )
        message = str(raised.value)
        assert "TWINOPS_MONGODB_URI" in message and "\n" not in message
        # No document was counted failed one by one after the warehouse went away.
        assert all(failed == 0 for _stored, failed in seen)

        # The server comes back on its store (as `services up` brings it): every document whose
        # write was acknowledged before the kill is there, and so is the run's record.
        stop_pid(server.pid)
        restarted = mongodb.start(Settings(home=tmp_path / "mongo-home"))
        try:
            db = connect(Settings(mongodb_uri=restarted.uri, home=tmp_path / "home"))
            acknowledged = seen[0][0]
            assert db["documents"].count_documents({}) >= acknowledged >= kill_after
            assert [run.status for run in CrawlRunRepository(db).list()] == ["running"]
        finally:
            stop_pid(restarted.pid)
    finally:
        stop_pid(server.pid)
        get_settings.cache_clear()
