"""The live progress view of `make run`: the redrawn table and the line log."""

from __future__ import annotations

import io
import time

from devstack.github_sim import SimJob
from devstack.progress import JobTable, Progress


def _job(job_id: int, attempt: int = 1, **kwargs: object) -> SimJob:
    return SimJob(
        id=job_id,
        run_id=7,
        run_attempt=attempt,
        repo="acme/widgets",
        labels=("self-hosted",),
        name="linux-x64-1",
        key="7/linux-x64-1",
        **kwargs,  # type: ignore[arg-type]
    )


def test_table_has_one_row_per_job_across_reruns_and_redraws_in_place() -> None:
    out = io.StringIO()
    table = JobTable(out, time.monotonic())
    progress = Progress(out, time.monotonic(), table)
    table.job("queued", _job(1))
    table.instance("i-0aaaaaaaaaaaaaaa1", "running")
    table.job("completed", _job(1, status="completed", conclusion="failure", runner_name="i-0a"))
    table.job("queued", _job(2, attempt=2))
    table.job("completed", _job(1, status="completed", conclusion="failure"))  # late, old try
    progress("instance i-0aaaaaaaaaaaaaaa1: spot interruption")

    lines = table.render()

    rows = [line for line in lines if line.startswith("linux-x64-1")]
    assert len(rows) == 1
    assert rows[0].split()[2:4] == ["2", "queued"]
    assert "jobs 0/1 completed" in lines[0]
    assert "1 live" in lines[0]
    assert lines[-1].endswith("spot interruption")
    assert progress.lines
    assert out.getvalue() == ""  # lines go to the table, not the stream

    table.draw()
    table.draw()
    assert out.getvalue().count("\x1b[J") == 2
    assert f"\x1b[{len(lines)}F" in out.getvalue()  # the second draw overwrites the first


def test_without_a_table_every_change_is_one_line() -> None:
    out = io.StringIO()
    progress = Progress(out, time.monotonic())
    progress("job 1 queued")
    progress("job 1 completed")
    assert out.getvalue().count("\n") == 2
    assert progress.lines[1].endswith("job 1 completed")
