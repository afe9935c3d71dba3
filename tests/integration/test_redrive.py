"""Redrive: DLQ messages go back to the job queue, counted, never lost, never looped for ever."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

import boto3
import pytest

from jitrunners.aws import inbox, queue
from jitrunners.config import Settings
from jitrunners.handlers import redrive as redrive_handler
from jitrunners.lifecycle.recovery.redrive import RedriveDeps, redrive
from jitrunners.models import JobMessage
from tests.conftest import _reset_process_caches, drain
from tests.support.world import Clock, FakeGitHub, FakeJob

REPO = "acme/app"


@pytest.fixture
def dlq(aws: None) -> str:
    return boto3.client("sqs").create_queue(QueueName="jitrunners-dlq")["QueueUrl"]


def _message(clock: Clock, job_id: int, **changes: Any) -> JobMessage:
    base = JobMessage(
        kind="launch",
        job_id=job_id,
        run_id=job_id * 10,
        run_attempt=1,
        repo=REPO,
        owner="acme",
        installation_id=7,
        labels=("self-hosted", "linux-x64"),
        template="linux-x64",
        delivery_id=f"dlv-{job_id}",
        queued_at=(clock() - timedelta(minutes=10)).isoformat().replace("+00:00", "Z"),
    )
    return replace(base, **changes)


def _deps(github: FakeGitHub, clock: Clock, remaining_ms: int = 300_000) -> RedriveDeps:
    def status(message: JobMessage) -> str | None:
        job = github.get_job(message.repo, message.job_id, message.installation_id)
        return None if job is None else job.status

    return RedriveDeps(job_status=status, clock=clock, remaining_ms=lambda: remaining_ms)


def _settings(dlq: str, job_queue: str, **changes: Any) -> Settings:
    return replace(Settings(job_queue_url=job_queue, dlq_url=dlq), **changes)


def _bodies(queue_url: str) -> list[JobMessage]:
    return [JobMessage.from_json(m["Body"]) for m in drain(queue_url)]


def test_queued_jobs_are_moved_with_their_redrive_count(
    dlq: str, job_queue: str, clock: Clock, github: FakeGitHub
) -> None:
    for job_id in (1, 2, 3):
        github.jobs[(REPO, job_id)] = FakeJob(job_id, "queued")
        queue.send_job(dlq, _message(clock, job_id, redrives=job_id - 1))

    report = redrive(dlq, job_queue, _settings(dlq, job_queue), _deps(github, clock))

    assert report.moved == 3
    moved = sorted(_bodies(job_queue), key=lambda m: m.job_id)
    assert [(m.job_id, m.redrives) for m in moved] == [(1, 1), (2, 2), (3, 3)]
    assert drain(dlq) == []


def test_past_max_redrives_a_message_stays_visible_in_the_dlq(
    dlq: str, job_queue: str, clock: Clock, github: FakeGitHub
) -> None:
    github.jobs[(REPO, 1)] = FakeJob(1, "queued")
    queue.send_job(dlq, _message(clock, 1, redrives=3))

    report = redrive(
        dlq, job_queue, _settings(dlq, job_queue, max_redrives=3), _deps(github, clock)
    )

    assert report.outcomes == {"hold:max_redrives": 1}
    assert drain(job_queue) == []
    # Released at once, not hidden for the visibility timeout: the DLQ alarm must keep seeing it.
    [left] = _bodies(dlq)
    assert left.redrives == 3


def test_jobs_github_no_longer_has_queued_are_dropped_with_a_reason(
    dlq: str, job_queue: str, clock: Clock, github: FakeGitHub, log_lines: Any
) -> None:
    github.jobs[(REPO, 1)] = FakeJob(1, "queued")
    github.jobs[(REPO, 2)] = FakeJob(2, "completed", "success", "i-0abc")
    github.jobs[(REPO, 3)] = FakeJob(3, "in_progress", None, "i-0def")
    for job_id in (1, 2, 3, 4):  # job 4: GitHub answers 404
        queue.send_job(dlq, _message(clock, job_id))

    report = redrive(dlq, job_queue, _settings(dlq, job_queue), _deps(github, clock))

    assert report.outcomes == {
        "move": 1,
        "drop:job_completed": 1,
        "drop:job_in_progress": 1,
        "drop:job_not_found": 1,
    }
    assert [m.job_id for m in _bodies(job_queue)] == [1]
    assert drain(dlq) == []
    dropped = [line for line in log_lines() if line["message"] == "message dropped from the DLQ"]
    assert sorted(line["job_id"] for line in dropped) == [2, 3, 4]
    assert all(line["level"] == "INFO" and line["reason"] for line in dropped)


def test_jobs_older_than_githubs_queue_lifetime_are_dropped_without_asking(
    dlq: str, job_queue: str, clock: Clock, github: FakeGitHub
) -> None:
    old = (clock() - timedelta(hours=25)).isoformat()
    queue.send_job(dlq, _message(clock, 1, queued_at=old))

    report = redrive(dlq, job_queue, _settings(dlq, job_queue), _deps(github, clock))

    assert report.outcomes == {"drop:older_than_24h": 1}
    assert github.calls["get_job"] == 0
    assert drain(job_queue) == drain(dlq) == []


def test_github_unavailable_keeps_the_message(
    dlq: str, job_queue: str, clock: Clock, github: FakeGitHub
) -> None:
    github.failing.add("get_job")
    queue.send_job(dlq, _message(clock, 1))

    report = redrive(dlq, job_queue, _settings(dlq, job_queue), _deps(github, clock))

    assert report.outcomes == {"hold:github_unavailable": 1}
    assert [m.job_id for m in _bodies(dlq)] == [1]


def test_start_messages_are_moved_without_asking_github(
    dlq: str, job_queue: str, clock: Clock, github: FakeGitHub
) -> None:
    queue.send_job(dlq, _message(clock, 1).start_for("i-0123456789abcdef0"))

    report = redrive(dlq, job_queue, _settings(dlq, job_queue), _deps(github, clock))

    assert report.moved == 1
    assert github.calls["get_job"] == 0
    [moved] = _bodies(job_queue)
    assert (moved.kind, moved.instance_id, moved.redrives) == ("start", "i-0123456789abcdef0", 1)


def test_pool_messages_are_dropped_the_housekeeper_covers_them(
    dlq: str, job_queue: str, clock: Clock, github: FakeGitHub
) -> None:
    """A warm pool's `fill` or a member's `ready` in the DLQ waits on nothing a job needs: the
    housekeeper asks for fills every pass and ends a member never made ready; left in the DLQ it
    would hold the alarm up for good."""
    from jitrunners.models import PoolMessage

    queue.send_job(dlq, PoolMessage(action="fill", template="linux-x64", pool="hot", count=2))
    queue.send_job(
        dlq,
        PoolMessage(
            action="ready", template="linux-x64", pool="stopped", instance_id="i-0123456789abcdef0"
        ),
    )

    report = redrive(dlq, job_queue, _settings(dlq, job_queue), _deps(github, clock))

    assert report.outcomes == {"drop:pool_message": 2}
    assert drain(dlq) == []
    assert drain(job_queue) == []
    assert github.calls["get_job"] == 0


def test_malformed_messages_stay_in_the_dlq(dlq: str, job_queue: str, clock: Clock) -> None:
    sqs = boto3.client("sqs")
    sqs.send_message(QueueUrl=dlq, MessageBody='{"v": 2, "kind": "launch"}')
    sqs.send_message(QueueUrl=dlq, MessageBody="not json")

    report = redrive(dlq, job_queue, _settings(dlq, job_queue), _deps(FakeGitHub(), clock))

    assert report.outcomes == {"hold:malformed": 2}
    assert len(drain(dlq)) == 2


def test_batches_stop_when_the_invocation_runs_out_of_time(
    dlq: str, job_queue: str, clock: Clock, github: FakeGitHub
) -> None:
    for job_id in range(1, 26):
        github.jobs[(REPO, job_id)] = FakeJob(job_id, "queued")
        queue.send_job(dlq, _message(clock, job_id))
    budget = iter([60_000, 60_000, 1_000])  # time left before each batch

    deps = _deps(github, clock)
    deps = RedriveDeps(deps.job_status, deps.clock, remaining_ms=lambda: next(budget))
    report = redrive(dlq, job_queue, _settings(dlq, job_queue), deps)

    assert report.batches == 2
    assert report.moved == 20
    assert len(drain(job_queue)) + len(drain(dlq)) == 25


class _Crash(Exception):
    pass


def test_a_crash_between_send_and_delete_loses_nothing(
    dlq: str, job_queue: str, clock: Clock, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    github.jobs[(REPO, 1)] = FakeJob(1, "queued")
    queue.send_job(dlq, _message(clock, 1))

    def die(*args: Any, **kwargs: Any) -> None:
        raise _Crash("Lambda killed between send and delete")

    with monkeypatch.context() as patch:
        patch.setattr(inbox, "delete", die)
        with pytest.raises(_Crash):
            redrive(dlq, job_queue, _settings(dlq, job_queue), _deps(github, clock))

    # The copy reached the job queue and the original is still in the DLQ (invisible for now).
    assert [m.job_id for m in _bodies(job_queue)] == [1]
    sqs = boto3.client("sqs")
    attributes = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["All"])["Attributes"]
    assert int(attributes["ApproximateNumberOfMessagesNotVisible"]) == 1


def test_a_duplicate_from_a_crash_is_redriven_again_not_lost(
    dlq: str, job_queue: str, clock: Clock, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    github.jobs[(REPO, 1)] = FakeJob(1, "queued")
    queue.send_job(dlq, _message(clock, 1))
    receipts: list[str] = []

    def die(queue_url: str, receipt_handle: str) -> None:
        receipts.append(receipt_handle)
        raise _Crash("Lambda killed between send and delete")

    with monkeypatch.context() as patch:
        patch.setattr(inbox, "delete", die)
        with pytest.raises(_Crash):
            redrive(dlq, job_queue, _settings(dlq, job_queue), _deps(github, clock))
    # Its visibility timeout runs out (here: at once), and the DLQ message is visible again.
    inbox.release(dlq, receipts[0])

    redrive(dlq, job_queue, _settings(dlq, job_queue), _deps(github, clock))

    copies = _bodies(job_queue)
    assert [m.job_id for m in copies] == [1, 1]  # a duplicate, never a loss
    assert drain(dlq) == []


def test_handler_reads_its_queues_from_settings(
    env: dict[str, str],
    dlq: str,
    lambda_context: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DLQ_URL", dlq)
    _reset_process_caches()
    github = FakeGitHub()
    github.jobs[(REPO, 5)] = FakeJob(5, "queued")
    monkeypatch.setattr(redrive_handler, "github_client", lambda: github)
    clock = Clock()
    queue.send_job(dlq, _message(clock, 5, queued_at=""))

    answer = redrive_handler.handler(
        {"id": "evt-1", "detail-type": "Scheduled Event"}, lambda_context
    )

    assert answer == {"moved": 1, "outcomes": {"move": 1}}
    [body] = drain(env["JOB_QUEUE_URL"])
    assert json.loads(body["Body"])["redrives"] == 1
