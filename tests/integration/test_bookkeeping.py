# ruff: noqa: F811
"""Job bookkeeping through the real scale-up handler (DESIGN §6b): `taken` and `release` messages.

Runners are fungible: the runner launched for one job may take another. These tests arrange the
instances in moto and GitHub's answers with `responses`, act through the handler, and assert on
the instances' tags, the messages sent and the calls made.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from jitrunners.aws.clients import client
from jitrunners.handlers import scale_up
from jitrunners.lifecycle.provisioning.bookkeeping import PASS_ON_DELAY_S
from jitrunners.models import JobMessage
from tests.support.github import API
from tests.support.pools import emf
from tests.support.scale_up import (
    World,
    failed_ids,
    job_status,
    launch_message,
    sqs_event,
    world,  # noqa: F401 - the fixture
)

RUNNERS = f"{API}/orgs/acme/actions/runners"


def tags_of(instance_id: str) -> dict[str, str]:
    found = client("ec2").describe_instances(InstanceIds=[instance_id])["Reservations"]
    return {t["Key"]: t["Value"] for t in found[0]["Instances"][0].get("Tags", [])}


def state_of(instance_id: str) -> str:
    found = client("ec2").describe_instances(InstanceIds=[instance_id])["Reservations"]
    return str(found[0]["Instances"][0]["State"]["Name"])


def launched(world: World, job_id: int, lambda_context: Any) -> str:
    """One instance launched for `job_id` through the handler; its id."""
    before = {i["InstanceId"] for i in world.instances()}
    job_status(world, job_id)
    response = scale_up.handler(sqs_event(launch_message(job_id)), lambda_context)
    assert failed_ids(response) == []
    [new] = [i["InstanceId"] for i in world.instances() if i["InstanceId"] not in before]
    return new


def taken(job_id: int, runner: str) -> JobMessage:
    return launch_message(job_id).taken_by(runner)


def sent_since(world: World, before: int) -> list[tuple[str, int, int]]:
    return [(m.kind, m.job_id, m.attempt) for m, _ in world.sent[before:]]


def test_a_runner_that_takes_its_own_job_writes_and_sends_nothing(
    world: World, lambda_context: Any, tag_writes: list[dict[str, Any]]
) -> None:
    runner = launched(world, 5, lambda_context)
    before = len(world.sent)
    tag_writes.clear()

    response = scale_up.handler(sqs_event(taken(5, runner)), lambda_context)

    assert failed_ids(response) == []
    assert tag_writes == []
    assert sent_since(world, before) == []


def test_swap_while_the_taken_jobs_own_runner_lives_is_one_tag_write_and_no_launch(
    world: World, lambda_context: Any, tag_writes: list[dict[str, Any]]
) -> None:
    """Runner R (for job 8) takes job 7 while job 7's own runner S boots: S will serve job 8 as
    GitHub hands it any queued job. R owes 7 from now on; nothing is launched."""
    spare = launched(world, 7, lambda_context)
    runner = launched(world, 8, lambda_context)
    before = len(world.sent)
    tag_writes.clear()

    response = scale_up.handler(sqs_event(taken(7, runner)), lambda_context)

    assert failed_ids(response) == []
    assert len(tag_writes) == 1, "one small write per swap"
    tags = tags_of(runner)
    assert (tags["jitrunners:job-id"], tags["jitrunners:launched-for"]) == (
        "7",
        "8/1/777/acme/widgets",
    )
    assert "jitrunners:passed-on" not in tags
    assert tags_of(spare)["jitrunners:job-id"] == "7"
    assert sent_since(world, before) == []


def test_swap_with_no_runner_for_the_taken_job_passes_the_need_on_once(
    world: World, lambda_context: Any, tag_writes: list[dict[str, Any]]
) -> None:
    """Job 7's own launch never happened (its delivery was lost, or it was dropped): job 8, whose
    runner took 7, gets a launch of its own. A duplicate and a late delivery pass nothing more."""
    runner = launched(world, 8, lambda_context)
    before = len(world.sent)
    tag_writes.clear()

    scale_up.handler(sqs_event(taken(7, runner)), lambda_context)
    scale_up.handler(sqs_event(taken(7, runner)), lambda_context)  # GitHub's duplicate
    world.github.get(
        f"{API}/repos/acme/widgets/actions/jobs/7",
        json={"id": 7, "status": "in_progress", "runner_name": runner},
    )
    late = scale_up.handler(sqs_event(launch_message(7)), lambda_context)  # 7's own, late

    assert failed_ids(late) == []
    assert sent_since(world, before) == [("launch", 8, 2)]
    # It waits in the queue while deliveries about job 8 that are in flight may book its taker.
    assert world.sent[before][1] == PASS_ON_DELAY_S
    assert len(tag_writes) == 1
    assert tags_of(runner)["jitrunners:passed-on"] == "1"
    assert len(world.instances()) == 1  # nothing launched for job 7: it has its runner


def test_when_the_taken_jobs_runner_dies_unstarted_its_need_moves_to_the_job_swapped_away(
    world: World, lambda_context: Any
) -> None:
    """S (for 7) covered job 8 after R (for 8) took 7. S never starts: its relaunch of job 7
    finds 7 running on R, and the need goes to job 8, not to job 7."""
    spare = launched(world, 7, lambda_context)
    runner = launched(world, 8, lambda_context)
    scale_up.handler(sqs_event(taken(7, runner)), lambda_context)
    client("ec2").terminate_instances(InstanceIds=[spare])  # the start timeout ended it
    world.github.get(
        f"{API}/repos/acme/widgets/actions/jobs/7",
        json={"id": 7, "status": "in_progress", "runner_name": runner},
    )
    before = len(world.sent)

    scale_up.handler(sqs_event(launch_message(7, run_id=777).relaunch()), lambda_context)

    # One hop further along the chain of swaps than the relaunch: a ring ends at the cap.
    assert sent_since(world, before) == [("launch", 8, 3)]


def test_a_runner_gone_before_its_swap_was_recorded_passes_the_need_without_a_write(
    world: World, lambda_context: Any, tag_writes: list[dict[str, Any]]
) -> None:
    """The `in_progress` delivery was lost; `completed` came after scale-down ended R."""
    runner = launched(world, 8, lambda_context)
    client("ec2").terminate_instances(InstanceIds=[runner])
    before = len(world.sent)
    tag_writes.clear()

    scale_up.handler(sqs_event(taken(7, runner)), lambda_context)

    assert tag_writes == []
    assert sent_since(world, before) == [("launch", 8, 2)]


def test_a_checked_launch_whose_job_ran_on_a_runner_now_gone_drops_without_a_describe(
    world: World, lambda_context: Any
) -> None:
    """A relaunch of job 8 (checked with GitHub) finds it ran on R, launched for 7 and ended
    since: the launch is dropped, and R is not described (it is not among the batch's live
    instances, and a launch's books do nothing with a gone runner: the deliveries naming R keep
    them)."""
    from jitrunners.models import runner_name

    runner = launched(world, 7, lambda_context)
    client("ec2").terminate_instances(InstanceIds=[runner])
    world.github.get(
        f"{API}/repos/acme/widgets/actions/jobs/8",
        json={"id": 8, "status": "in_progress", "runner_name": runner_name(runner, 7, 1, "cold")},
    )
    describes: list[dict[str, Any]] = []
    events = client("ec2").meta.events

    def seen(params: dict[str, Any], **_: Any) -> None:
        describes.append(params)

    events.register("provide-client-params.ec2.DescribeInstances", seen)
    before = len(world.sent)
    try:
        response = scale_up.handler(sqs_event(launch_message(8).relaunch()), lambda_context)
    finally:
        events.unregister("provide-client-params.ec2.DescribeInstances", seen)

    assert failed_ids(response) == []
    assert len(describes) == 1  # the batch's one listing of our instances
    assert sent_since(world, before) == []
    assert state_of(runner) in ("shutting-down", "terminated")


def test_a_foreign_runner_taking_a_job_is_not_ours_to_book(
    world: World, lambda_context: Any
) -> None:
    launched(world, 8, lambda_context)
    before = len(world.sent)
    response = scale_up.handler(sqs_event(taken(7, "i-0123456789abcdef0")), lambda_context)
    assert failed_ids(response) == []
    assert sent_since(world, before) == []


# --- release: the job wants no runner now ------------------------------------------------------
def released(job_id: int) -> JobMessage:
    return launch_message(job_id).released()


def github_says(world: World, job_id: int, status: str) -> None:
    """GitHub's status of the job from now on (a release checks it first)."""
    world.github.replace(
        "GET",
        f"{API}/repos/acme/widgets/actions/jobs/{job_id}",
        json={"id": job_id, "status": status},
    )


def registration(world: World, instance_id: str, *, busy: bool, runner_id: int = 501) -> None:
    """The registration of the runner started on `instance_id` for job 7 (models.runner_name)."""
    from jitrunners.models import runner_name

    name = runner_name(instance_id, 7, 1)
    world.github.get(
        RUNNERS,
        json={
            "total_count": 1,
            "runners": [
                {"id": runner_id, "name": name, "status": "online", "busy": busy, "labels": []}
            ],
        },
    )


def test_release_stops_a_booting_runner_that_has_no_registration_yet(
    world: World, lambda_context: Any
) -> None:
    booting = launched(world, 7, lambda_context)
    other = launched(world, 8, lambda_context)
    github_says(world, 7, "waiting")
    world.github.get(RUNNERS, json={"total_count": 0, "runners": []})

    response = scale_up.handler(sqs_event(released(7)), lambda_context)

    assert failed_ids(response) == []
    assert state_of(booting) in ("shutting-down", "terminated")
    assert state_of(other) == "running"  # launched for another job: untouched


def test_release_deletes_an_idle_registration_before_stopping_its_instance(
    world: World, lambda_context: Any
) -> None:
    idle = launched(world, 7, lambda_context)
    github_says(world, 7, "completed")  # cancelled while queued
    registration(world, idle, busy=False)
    deleted = world.github.delete(f"{RUNNERS}/501", status=204)

    scale_up.handler(sqs_event(released(7)), lambda_context)

    assert deleted.call_count >= 1
    assert state_of(idle) in ("shutting-down", "terminated")


@pytest.mark.parametrize("race", [False, True], ids=["busy", "took_a_job_meanwhile"])
def test_release_never_stops_a_runner_that_took_a_job(
    world: World, lambda_context: Any, race: bool
) -> None:
    """It took another job (its `taken` not booked yet): GitHub says busy, or refuses to delete
    the registration (422) because the runner took a job between our two calls."""
    busy = launched(world, 7, lambda_context)
    github_says(world, 7, "waiting")
    registration(world, busy, busy=not race)
    world.github.delete(f"{RUNNERS}/501", status=422, json={"message": "still running a job"})

    response = scale_up.handler(sqs_event(released(7)), lambda_context)

    assert failed_ids(response) == []
    assert state_of(busy) == "running"


@pytest.mark.parametrize("status", ["queued", "in_progress"])
def test_release_of_a_job_github_has_queued_or_running_again_stops_nothing(
    world: World, lambda_context: Any, status: str
) -> None:
    """The `waiting` delivery's release reached scale-up after the job was approved: in the
    batch of the approval's `queued` launch (launches are planned first), or after a runner took
    the job. The runner launched for it must live: it serves that job, or the one it covers."""
    if status == "queued":
        job_status(world, 7)
        response = scale_up.handler(sqs_event(launch_message(7), released(7)), lambda_context)
    else:
        launched(world, 7, lambda_context)
        github_says(world, 7, status)
        response = scale_up.handler(sqs_event(released(7)), lambda_context)

    assert failed_ids(response) == []
    [instance] = world.instances()
    assert instance["State"]["Name"] == "running"
    deleted = [c for c in world.github.calls if c.request.method == "DELETE"]
    assert not [c for c in deleted if c.request.url.startswith(RUNNERS)]


def test_a_failed_job_on_our_runner_is_booked_before_the_rerun_check(
    world: World, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`completed` with `failure` becomes a re-run check; it keeps the books as `taken` does,
    since the `in_progress` delivery may have been lost."""
    monkeypatch.setenv("RERUN_INTERRUPTED_JOBS", "true")
    from jitrunners import config

    config.get_settings.cache_clear()
    runner = launched(world, 8, lambda_context)
    world.github.get(
        f"{API}/repos/acme/widgets/actions/jobs/7",
        json={"id": 7, "status": "completed", "conclusion": "failure", "runner_name": runner},
    )
    rerun = replace(launch_message(7).taken_by(runner), kind="rerun")
    before = len(world.sent)

    response = scale_up.handler(sqs_event(rerun), lambda_context)

    assert failed_ids(response) == []
    assert tags_of(runner)["jitrunners:job-id"] == "7"
    assert sent_since(world, before) == [("launch", 8, 2)]


# --- launch claims: duplicates in concurrent batches ------------------------------------------
@pytest.fixture
def claims(monkeypatch: pytest.MonkeyPatch) -> str:
    from jitrunners import config

    client("dynamodb").create_table(
        TableName="jitrunners-deliveries",
        KeySchema=[{"AttributeName": "delivery_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "delivery_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    monkeypatch.setenv("DELIVERIES_TABLE", "jitrunners-deliveries")
    config.get_settings.cache_clear()
    return "jitrunners-deliveries"


def test_two_deliveries_of_one_job_in_concurrent_batches_launch_one_instance(
    world: World, lambda_context: Any, claims: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each batch counts instances before the other launched (concurrent scale-ups): the
    duplicate check by tags cannot see the other's instance; the launch claim can."""
    from jitrunners.aws import fleet

    job_status(world, 7)
    first = replace(launch_message(7), delivery_id="dlv-a")
    second = replace(launch_message(7), delivery_id="dlv-b")
    scale_up.handler(sqs_event(first), lambda_context)
    monkeypatch.setattr(fleet, "list_instances", lambda *a, **k: [])  # listed before the launch

    response = scale_up.handler(sqs_event(second), lambda_context)

    assert failed_ids(response) == []
    assert len(world.instances()) == 1


def test_a_batchs_launches_are_claimed_in_one_dynamodb_call(
    world: World, lambda_context: Any, claims: str
) -> None:
    """Three first launches in one batch: one transaction claims them all, no PutItem per job."""
    sent: list[str] = []

    def note(model: Any, **_: Any) -> None:
        sent.append(model.name)

    jobs = (5, 6, 7)
    for job in jobs:
        job_status(world, job)
    events = client("dynamodb").meta.events
    events.register("before-call.dynamodb", note)
    try:
        response = scale_up.handler(sqs_event(*map(launch_message, jobs)), lambda_context)
    finally:
        events.unregister("before-call.dynamodb", note)

    assert failed_ids(response) == []
    assert len(world.instances()) == len(jobs)
    assert [op for op in sent if op in ("PutItem", "TransactWriteItems")] == ["TransactWriteItems"]
    stored = client("dynamodb").scan(TableName=claims)["Items"]
    assert {(i["delivery_id"]["S"], i["owner"]["S"]) for i in stored} == {
        (f"launch:acme/widgets:{job}:1:1", f"dlv-{job}") for job in jobs
    }


def test_launches_whose_claims_cannot_be_written_fail_back_to_the_queue_and_launch_nothing(
    world: World, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jitrunners import config

    monkeypatch.setenv("DELIVERIES_TABLE", "no-such-table")  # every claim call fails
    config.get_settings.cache_clear()
    for job in (5, 6):
        job_status(world, job)

    response = scale_up.handler(sqs_event(launch_message(5), launch_message(6)), lambda_context)

    assert sorted(failed_ids(response)) == ["msg-0", "msg-1"]
    assert world.instances() == []


def test_after_a_release_the_jobs_next_queued_delivery_launches_again(
    world: World, lambda_context: Any, claims: str
) -> None:
    """Environment approval: queued (a runner launched), waiting (released: stopped), approved
    (GitHub sends queued again, another delivery): a fresh runner, not a duplicate."""
    first = launched(world, 7, lambda_context)
    github_says(world, 7, "waiting")
    world.github.get(RUNNERS, json={"total_count": 0, "runners": []})
    scale_up.handler(sqs_event(released(7)), lambda_context)
    assert state_of(first) in ("shutting-down", "terminated")

    github_says(world, 7, "queued")  # approved
    again = replace(launch_message(7), delivery_id="dlv-approved")
    response = scale_up.handler(sqs_event(again), lambda_context)

    assert failed_ids(response) == []
    [instance] = world.instances()
    assert instance["InstanceId"] != first


def test_a_runner_stolen_across_templates_is_not_covered_by_a_runner_that_cannot_run_its_job(
    world: World, lambda_context: Any
) -> None:
    """An arm64 runner (for arm64 job 8) takes job 7, which asks only for `self-hosted`, and
    whose own runner is x64: that runner cannot run job 8, so job 8 gets a launch of its own."""
    spare = launched(world, 7, lambda_context)  # linux-x64
    job_status(world, 8)
    arm = launch_message(8, labels=["self-hosted", "arm64"])
    scale_up.handler(sqs_event(arm), lambda_context)
    [runner] = [i["InstanceId"] for i in world.instances() if i["InstanceId"] != spare]
    before = len(world.sent)

    scale_up.handler(sqs_event(taken(7, runner)), lambda_context)

    [(owed, _)] = world.sent[before:]
    assert (owed.kind, owed.job_id, owed.template) == ("launch", 8, "linux-arm64")


def test_launches_of_our_own_making_are_not_held_off_by_each_others_claims(
    world: World, lambda_context: Any, claims: str
) -> None:
    """A need passed on launched job 7's runner, which died before taking it: the
    reconciliation pass's launch of job 7 (same launch attempt, another origin) goes ahead."""
    job_status(world, 7)
    passed_on = replace(launch_message(7), delivery_id="passed-on-i-0aaaaaaaaaaaaaaaa", attempt=2)
    scale_up.handler(sqs_event(passed_on), lambda_context)
    [first] = [i["InstanceId"] for i in world.instances()]
    client("ec2").terminate_instances(InstanceIds=[first])

    reconciled = replace(launch_message(7), delivery_id="reconcile-7", attempt=2)
    response = scale_up.handler(sqs_event(reconciled), lambda_context)

    assert failed_ids(response) == []
    [second] = [i["InstanceId"] for i in world.instances()]
    assert second != first


# --- the webhook's job-ran claims: read before GitHub is asked ---------------------------------
def ran_claim(table: str, job_id: int, runner: str, action: str = "in_progress") -> None:
    """What the webhook writes for a delivery naming the runner of ours that took `job_id`."""
    from datetime import UTC, datetime

    from jitrunners.aws import deliveries

    key = deliveries.ran_key("acme/widgets", job_id, 1, action)
    assert deliveries.claim(table, key, now=datetime.now(UTC), ttl_s=3600, runner=runner)


def job_checks(world: World, job_id: int) -> int:
    return sum(1 for call in world.github.calls if f"/actions/jobs/{job_id}" in call.request.url)


def test_a_passed_on_need_whose_job_ran_on_one_of_ours_drops_without_asking_github(
    world: World, lambda_context: Any, claims: str
) -> None:
    """Job 8's need was passed on (its runner took another job); meanwhile R, launched for 7,
    took 8, and the webhook recorded it: the launch drops without a GitHub check, and R's books
    are kept as a check that found 8 running there would keep them (R owes 8 now)."""
    from jitrunners.models import runner_name

    runner = launched(world, 7, lambda_context)
    ran_claim(claims, 8, runner_name(runner, 7, 1))
    job_status(world, 8, "in_progress")  # what GitHub would say, were it asked
    checks = job_checks(world, 8)
    passed_on = replace(launch_message(8), delivery_id="passed-on-i-0aaaaaaaaaaaaaaaa", attempt=2)

    response = scale_up.handler(sqs_event(passed_on), lambda_context)

    assert failed_ids(response) == []
    assert job_checks(world, 8) == checks, "no GitHub call"
    assert [i["InstanceId"] for i in world.instances()] == [runner], "nothing launched"
    assert tags_of(runner)["jitrunners:job-id"] == "8"


def test_a_passed_on_need_the_records_do_not_name_launches_without_asking_github(
    world: World, lambda_context: Any, claims: str
) -> None:
    """The records settle a launch: a need whose job no delivery booked (here another job's
    claim is recorded) still waits for a runner, so it launches, and GitHub is not asked (a
    point of the installation a job, in a burst, against the JIT configs' points)."""
    ran_claim(claims, 9, "i-0fffffffffffffff0-5-1")
    job_status(world, 8)
    passed_on = replace(launch_message(8), delivery_id="passed-on-i-0aaaaaaaaaaaaaaaa", attempt=2)

    response = scale_up.handler(sqs_event(passed_on), lambda_context)

    assert failed_ids(response) == []
    assert job_checks(world, 8) == 0
    assert len(world.instances()) == 1


def test_a_launch_whose_job_ended_elsewhere_drops_on_the_record(
    world: World, lambda_context: Any, claims: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Job 10 was cancelled while its launch waited (its `completed` delivery, no runner of
    ours: the webhook's ended-elsewhere claim). The launch drops without asking GitHub, and no
    books are kept: no runner of ours took the job."""
    from datetime import UTC, datetime

    from jitrunners.aws import deliveries

    key = deliveries.ran_key("acme/widgets", 10, 1, "completed")
    assert deliveries.claim(
        claims, key, now=datetime.now(UTC), ttl_s=3600, runner=deliveries.ENDED_ELSEWHERE
    )
    job_status(world, 10)  # what GitHub would say, were it asked (it is not)
    before = len(world.sent)

    response = scale_up.handler(sqs_event(launch_message(10)), lambda_context)

    assert failed_ids(response) == []
    assert job_checks(world, 10) == 0
    assert world.instances() == []
    assert sent_since(world, before) == []
    dropped = emf(capsys.readouterr().out, "LaunchDropped")
    assert [d["reason"] for d in dropped if "reason" in d] == ["job_completed"]


@pytest.mark.parametrize("covered_by", ["i-0fffffffffffffff0-5-1", ""])
def test_a_swap_whose_runners_own_job_ran_elsewhere_passes_nothing_on(
    world: World,
    lambda_context: Any,
    claims: str,
    tag_writes: list[dict[str, Any]],
    covered_by: str,
) -> None:
    """R, launched for 8, takes 7; job 8 already ran on S, or ended without a runner of ours
    ("": cancelled, or run by a runner not ours; the webhook recorded either): 8's need is met,
    so nothing is passed on (the same swap without the claim passes 8's need on:
    test_swap_with_no_runner_for_the_taken_job_passes_the_need_on_once). One tag write."""
    runner = launched(world, 8, lambda_context)
    ran_claim(claims, 8, covered_by, action="completed")
    before = len(world.sent)
    tag_writes.clear()
    describes: list[dict[str, Any]] = []
    events = client("ec2").meta.events

    def seen(params: dict[str, Any], **_: Any) -> None:
        describes.append(params)

    events.register("provide-client-params.ec2.DescribeInstances", seen)
    try:
        response = scale_up.handler(sqs_event(taken(7, runner)), lambda_context)
    finally:
        events.unregister("provide-client-params.ec2.DescribeInstances", seen)

    assert failed_ids(response) == []
    # The batch's describe of the runner it names; no listing of every live instance (the
    # covering check's), since 8's need is met whatever covers it.
    assert len(describes) == 1
    assert sent_since(world, before) == []
    assert len(tag_writes) == 1
    tags = tags_of(runner)
    assert tags["jitrunners:job-id"] == "7"
    assert "jitrunners:passed-on" not in tags


def test_a_dropped_launch_is_never_covered_by_an_instance_awaiting_its_start(
    world: World, lambda_context: Any, claims: str
) -> None:
    """Job 9's launch finds 9 ran on R, launched for 8 (the webhook's claim): the launch is
    dropped, so 8 lost its runner and nothing launched for 9 can serve it. The instances
    awaiting their start (launched together for 5 and 6) are those jobs' runners: counting one
    as cover lost 8's need (and, nothing marking an instance as counted, one such instance
    covered a hundred needs in a 1,000-job burst). 8's need is passed on."""
    from jitrunners.models import runner_name

    for job_id in (5, 6):
        job_status(world, job_id)
    assert (
        failed_ids(
            scale_up.handler(sqs_event(launch_message(5), launch_message(6)), lambda_context)
        )
        == []
    )
    assert not any("jitrunners:job-id" in tags_of(i["InstanceId"]) for i in world.instances())
    runner = launched(world, 8, lambda_context)
    ran_claim(claims, 9, runner_name(runner, 8, 1))
    before = len(world.sent)

    response = scale_up.handler(sqs_event((launch_message(9), 2)), lambda_context)

    assert failed_ids(response) == []
    assert tags_of(runner)["jitrunners:job-id"] == "9"
    assert sent_since(world, before) == [("launch", 8, 2)]


def secondary_limit(world: World, job_id: int) -> None:
    world.github.get(
        f"{API}/repos/acme/widgets/actions/jobs/{job_id}",
        status=403,
        headers={"Retry-After": "90"},
        json={"message": "You have exceeded a secondary rate limit."},
    )


def test_without_readable_records_github_is_asked_and_its_rate_limit_waits(
    world: World, lambda_context: Any, claims: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The records cannot be read (here the table is gone): GitHub is asked about the launch,
    as without the records, and its secondary limit sends the record back for its
    `retry-after`; nothing launches meanwhile."""
    from jitrunners import config

    client("dynamodb").delete_table(TableName=claims)
    monkeypatch.setenv("DELIVERIES_TABLE", claims)
    config.get_settings.cache_clear()
    secondary_limit(world, 16)

    response = scale_up.handler(sqs_event(launch_message(16)), lambda_context)

    assert failed_ids(response) == ["msg-0"]
    assert world.visibility == [("receipt-0", 90)]
    assert job_checks(world, 16) == 1
    assert world.instances() == []
