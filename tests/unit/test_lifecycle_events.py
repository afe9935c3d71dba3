"""EventBridge events are parsed into typed values once, and anything else is refused."""

from __future__ import annotations

from typing import Any

import pytest

from jitrunners.lifecycle.teardown.events import (
    CommandFinished,
    EventError,
    InstanceStateChanged,
    SpotInterruption,
    parse_event,
)
from jitrunners.models import JobMessage, MessageError
from tests.support.events import command_event, spot_event, state_event


def test_command_status_event_is_parsed() -> None:
    event = parse_event(command_event("i-0123456789abcdef0", "cmd-1", "Success"))
    assert isinstance(event, CommandFinished)
    assert (event.instance_id, event.command_id, event.status) == (
        "i-0123456789abcdef0",
        "cmd-1",
        "Success",
    )
    assert event.terminal


@pytest.mark.parametrize(
    ("status", "terminal"),
    [
        *[(s, True) for s in ("Success", "Failed", "TimedOut", "Cancelled")],
        *[(s, False) for s in ("InProgress", "Pending", "Delayed", "Cancelling")],
    ],
)
def test_only_final_command_statuses_are_terminal(status: str, terminal: bool) -> None:
    event = parse_event(command_event("i-0123456789abcdef0", "c", status))
    assert isinstance(event, CommandFinished)
    assert event.terminal is terminal


def test_spot_and_state_events_are_parsed() -> None:
    spot = parse_event(spot_event("i-00000000000000001"))
    assert isinstance(spot, SpotInterruption)
    assert spot.instance_id == "i-00000000000000001"
    state = parse_event(state_event("i-00000000000000001", "terminated"))
    assert isinstance(state, InstanceStateChanged)
    assert state.gone
    assert not parse_event(state_event("i-00000000000000001", "running")).gone  # type: ignore[union-attr]


def _broken(event: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    node = event
    *parents, last = path.split(".")
    for key in parents:
        node = node[key]
    if value is KeyError:
        node.pop(last)
    else:
        node[last] = value
    return event


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("detail.instance-id", KeyError),
        ("detail.instance-id", "mi-0123456789abcdef0"),
        ("detail.instance-id", 42),
        ("detail.command-id", KeyError),
        ("detail.status", ""),
        ("detail", "nope"),
        ("time", "yesterday"),
        ("source", "aws.s3"),
        ("detail-type", "Something Else"),
    ],
)
def test_malformed_events_are_refused(path: str, value: Any) -> None:
    with pytest.raises(EventError):
        parse_event(_broken(command_event("i-0123456789abcdef0", "c", "Success"), path, value))


@pytest.mark.parametrize("raw", [None, [], "x", 3, {}])
def test_non_objects_are_refused(raw: Any) -> None:
    with pytest.raises(EventError):
        parse_event(raw)


def _launch(**changes: Any) -> JobMessage:
    base = JobMessage(
        kind="launch",
        job_id=1,
        run_id=2,
        run_attempt=1,
        repo="acme/app",
        owner="acme",
        installation_id=7,
        labels=("self-hosted",),
        template="linux-x64",
        delivery_id="d-1",
        queued_at="2026-01-01T00:00:00Z",
    )
    from dataclasses import replace

    return replace(base, **changes)


def test_redrive_count_round_trips_and_is_absent_until_used() -> None:
    message = _launch()
    assert "redrives" not in message.to_json()
    assert JobMessage.from_json(message.to_json()).redrives == 0
    twice = message.redriven().redriven()
    assert JobMessage.from_json(twice.to_json()).redrives == 2


@pytest.mark.parametrize("bad", ['"1"', "-1", "true", "1.5"])
def test_bad_redrive_count_is_a_message_error(bad: str) -> None:
    body = _launch().to_json()[:-1] + f',"redrives":{bad}}}'
    with pytest.raises(MessageError):
        JobMessage.from_json(body)
