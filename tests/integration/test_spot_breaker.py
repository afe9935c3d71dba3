"""The spot circuit breaker: its shared state in DynamoDB (moto), scale-up's market choice and
capacity refusals, and scale-down's interruptions."""

# The `world` fixture is imported from tests.support; pytest injects it by parameter name.
# ruff: noqa: F811

from __future__ import annotations

from datetime import timedelta
from typing import Any

import boto3
import pytest

from jitrunners.aws import breaker
from jitrunners.handlers import scale_up
from tests.support.ec2 import ec2_hook, fleet_error
from tests.support.scale_up import (
    World,
    failed_ids,
    job_status,
    launch_message,
    sqs_event,
    world,  # noqa: F401 - fixture
)
from tests.support.world import create_deliveries_table

TABLE = "jitrunners-deliveries"
T0 = 1_800_000_000


def _create_table() -> str:
    return create_deliveries_table(boto3.client("dynamodb"), TABLE)


@pytest.fixture
def table(aws: None) -> str:
    return _create_table()


def _record(table: str, event_id: str, now: int, **kw: Any) -> breaker.BreakerState:
    limits = {"threshold": 2, "window_s": 900, "open_s": 1800} | kw
    return breaker.record_spot_event(table, "linux-x64", event_id, now=now, **limits)


def test_two_events_within_the_window_open_the_breaker_for_its_open_time(table: str) -> None:
    assert _record(table, "i-1", T0).opened_now is False
    state = _record(table, "i-2", T0 + 600)
    assert state.opened_now is True
    assert state.open_until == T0 + 600 + 1800
    assert breaker.spot_breaker_open_until(table, "linux-x64") == T0 + 2400
    assert breaker.spot_breaker_open_until(table, "linux-arm64") == 0  # per template


def test_events_outside_the_window_and_repeats_of_one_event_do_not_count(table: str) -> None:
    _record(table, "i-1", T0)
    assert _record(table, "i-2", T0 + 901).opened_now is False  # i-1 is out of the window
    assert _record(table, "i-2", T0 + 902).opened_now is False  # warning + reclaim: once
    assert _record(table, "i-3", T0 + 903).opened_now is True


def test_after_it_closes_the_events_that_opened_it_are_forgotten(table: str) -> None:
    _record(table, "i-1", T0)
    _record(table, "i-2", T0 + 1)
    assert breaker.spot_breaker_open_until(table, "linux-x64") == T0 + 1801
    # Closed again: one more event is one, not three.
    assert _record(table, "i-3", T0 + 1802).opened_now is False
    assert _record(table, "i-4", T0 + 1803).opened_now is True


def test_a_recorder_that_also_reached_the_threshold_does_not_open_it_again(table: str) -> None:
    # Two invocations appended their events before either opened the breaker: the second
    # sees the threshold reached too, and its conditional open must fail (an open breaker is
    # not extended by the events that opened it).
    _record(table, "i-1", T0)
    assert _record(table, "i-2", T0 + 1).opened_now is True
    boto3.client("dynamodb").update_item(
        TableName=table,
        Key={"delivery_id": {"S": "spot-breaker#linux-x64"}},
        UpdateExpression="SET spot_events = :late",
        ExpressionAttributeValues={":late": {"L": [{"S": f"{T0}|i-1"}, {"S": f"{T0 + 1}|i-2"}]}},
    )
    state = _record(table, "i-3", T0 + 2)
    assert state.opened_now is False
    assert state.open_until == T0 + 1801


def test_the_stored_events_stay_bounded(table: str) -> None:
    for n in range(breaker.PRUNE_AT + 5):
        _record(table, f"i-{n}", T0 + n * 1000, threshold=1000, window_s=900)
    item = boto3.client("dynamodb").get_item(
        TableName=table, Key={"delivery_id": {"S": "spot-breaker#linux-x64"}}
    )["Item"]
    assert len(item["spot_events"]["L"]) <= breaker.PRUNE_AT + 1


# --- scale-up ---------------------------------------------------------------------------------


@pytest.fixture
def breaker_world(world: World, monkeypatch: pytest.MonkeyPatch) -> World:
    _create_table()
    monkeypatch.setenv("DELIVERIES_TABLE", TABLE)
    from jitrunners import config

    config.get_settings.cache_clear()
    return world


def _spot_refused(params: dict[str, Any]) -> Any:
    """EC2 refuses every spot pool for capacity; on-demand launches."""
    from botocore.awsrequest import AWSResponse

    if params["body"].get("TargetCapacitySpecification.DefaultTargetCapacityType") != "spot":
        return None
    errors = [fleet_error("InsufficientInstanceCapacity", "spot", t) for t in ("m7i.large",)]
    return AWSResponse("https://ec2", 200, {}, None), {"Errors": errors, "Instances": []}


def _markets(calls: list[dict[str, Any]]) -> list[str]:
    return [c["body"]["TargetCapacitySpecification.DefaultTargetCapacityType"] for c in calls]


def test_capacity_refusals_open_the_breaker_and_the_next_launch_goes_on_demand(
    breaker_world: World,
    lambda_context: Any,
    capsys: pytest.CaptureFixture[str],
    log_lines: Any,
) -> None:
    for job_id in (81, 82, 83):
        job_status(breaker_world, job_id)
    with ec2_hook("CreateFleet", _spot_refused) as calls:
        scale_up.handler(sqs_event(launch_message(81)), lambda_context)
        scale_up.handler(sqs_event(launch_message(82)), lambda_context)
    assert _markets(calls) == ["spot", "on-demand", "spot", "on-demand"]
    out = capsys.readouterr().out
    assert '"SpotBreakerOpened"' in out
    [opened] = [line for line in log_lines() if line["message"].startswith("spot breaker opened")]
    assert (opened["template"], opened["kind"], opened["spot_events"]) == (
        "linux-x64",
        "capacity",
        2,
    )

    with ec2_hook("CreateFleet", lambda _p: None) as calls:
        response = scale_up.handler(sqs_event(launch_message(83)), lambda_context)
    assert failed_ids(response) == []
    assert _markets(calls) == ["on-demand"]  # spot is not even tried while open
    assert '"SpotBreakerOnDemandLaunches"' in capsys.readouterr().out

    # Once it closes, spot is tried again (room made under max_runners first).
    ec2 = boto3.client("ec2")
    ec2.terminate_instances(InstanceIds=[i["InstanceId"] for i in breaker_world.instances()])
    breaker_world.clock.now += timedelta(seconds=1801)
    job_status(breaker_world, 84)
    with ec2_hook("CreateFleet", lambda _p: None) as calls:
        scale_up.handler(sqs_event(launch_message(84)), lambda_context)
    assert _markets(calls) == ["spot"]


def test_a_spot_only_template_keeps_to_spot_while_open(
    breaker_world: World, lambda_context: Any
) -> None:
    now = int(breaker_world.clock().timestamp())
    for n in (1, 2):
        breaker.record_spot_event(
            TABLE, "linux-arm64", f"i-{n}", now=now, threshold=2, window_s=900, open_s=1800
        )
    job_status(breaker_world, 85)
    with ec2_hook("CreateFleet", lambda _p: None) as calls:
        scale_up.handler(
            sqs_event(launch_message(85, labels=["self-hosted", "arm64"])), lambda_context
        )
    assert _markets(calls) == ["spot"]


# --- scale-down -------------------------------------------------------------------------------


def test_spot_interruptions_seen_by_scale_down_open_the_breaker(
    env: dict[str, str],
    fast_ec2: None,
    github: Any,
    clock: Any,
    lambda_context: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from jitrunners.config import get_settings, load_templates
    from jitrunners.handlers import scale_down
    from jitrunners.lifecycle.cleanup import Context
    from tests.conftest import _reset_process_caches
    from tests.support import world as ec2_world
    from tests.support.events import spot_event, sqs_batch, state_event

    _create_table()
    monkeypatch.setenv("DELIVERIES_TABLE", TABLE)
    _reset_process_caches()
    monkeypatch.setattr(
        scale_down,
        "lifecycle_context",
        lambda: Context.build(get_settings(), load_templates(get_settings()), github, clock),
    )
    first, second = (
        ec2_world.launch(launched_at=clock() - timedelta(minutes=5), job_id=n) for n in (1, 2)
    )

    scale_down.handler(sqs_batch(spot_event(first, time=clock().isoformat())), lambda_context)
    # The same instance's reclaim after its warning counts once.
    ec2_world.spot_reclaim(first)
    scale_down.handler(sqs_batch(state_event(first, "terminated")), lambda_context)
    assert breaker.spot_breaker_open_until(TABLE, "linux-x64") == 0

    scale_down.handler(sqs_batch(spot_event(second, time=clock().isoformat())), lambda_context)
    assert breaker.spot_breaker_open_until(TABLE, "linux-x64") == int(clock().timestamp()) + 1800
