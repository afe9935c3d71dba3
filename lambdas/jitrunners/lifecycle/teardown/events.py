"""The three EventBridge events scale-down acts on, parsed once into typed values (or refused)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent

from jitrunners.aws.ssm import TERMINAL_COMMAND_STATUSES

COMMAND_STATUS: Final = "EC2 Command Invocation Status-change Notification"
SPOT_WARNING: Final = "EC2 Spot Instance Interruption Warning"
STATE_CHANGE: Final = "EC2 Instance State-change Notification"

# Instance states after which the runner is certainly gone; scale-down only cleans up after them.
GONE_STATES: Final = frozenset({"shutting-down", "terminated", "stopping", "stopped"})

_INSTANCE_ID = re.compile(r"^i-[0-9a-f]{8,17}$")


class EventError(ValueError):
    """The event is not one we understand; it is logged and dropped, never retried."""


@dataclass(frozen=True, slots=True)
class CommandFinished:
    """A RunCommand invocation reached a status; `terminal` says whether the runner is done."""

    instance_id: str
    command_id: str
    status: str
    document: str
    at: datetime

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_COMMAND_STATUSES


@dataclass(frozen=True, slots=True)
class SpotInterruption:
    """EC2 will reclaim the spot instance in about two minutes."""

    instance_id: str
    action: str
    at: datetime


@dataclass(frozen=True, slots=True)
class InstanceStateChanged:
    instance_id: str
    state: str
    at: datetime

    @property
    def gone(self) -> bool:
        return self.state in GONE_STATES


LifecycleEvent = CommandFinished | SpotInterruption | InstanceStateChanged


def _text(detail: dict[str, Any], key: str) -> str:
    value = detail.get(key)
    if not isinstance(value, str) or not value.strip():
        raise EventError(f"detail.{key} is missing or not a string")
    return value.strip()


def _instance_id(detail: dict[str, Any]) -> str:
    value = _text(detail, "instance-id")
    if not _INSTANCE_ID.match(value):
        # Managed on-premises nodes (mi-...) and garbage never belong to us.
        raise EventError("detail.instance-id is not an EC2 instance id")
    return value


def _time(raw: Any) -> datetime:
    if isinstance(raw, str):
        try:
            parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise EventError("time is missing or not ISO-8601")


def parse_event(raw: Any) -> LifecycleEvent:
    """The typed event for one EventBridge event; EventError for anything else."""
    if not isinstance(raw, dict):
        raise EventError("event is not an object")
    event = EventBridgeEvent(raw)
    detail = raw.get("detail")
    if not isinstance(detail, dict):
        raise EventError("event has no detail object")
    kind = raw.get("detail-type")
    at = _time(raw.get("time"))
    if kind == COMMAND_STATUS and event.source == "aws.ssm":
        return CommandFinished(
            instance_id=_instance_id(detail),
            command_id=_text(detail, "command-id"),
            status=_text(detail, "status"),
            document=str(detail.get("document-name") or ""),
            at=at,
        )
    if kind == SPOT_WARNING and event.source == "aws.ec2":
        return SpotInterruption(
            instance_id=_instance_id(detail),
            action=str(detail.get("instance-action") or "terminate"),
            at=at,
        )
    if kind == STATE_CHANGE and event.source == "aws.ec2":
        return InstanceStateChanged(
            instance_id=_instance_id(detail), state=_text(detail, "state"), at=at
        )
    raise EventError(f"unhandled event {str(kind)[:80]!r} from {str(raw.get('source'))[:40]!r}")


def parse_body(body: Any) -> LifecycleEvent:
    """The typed event for the body of a teardown queue message (the EventBridge event as JSON,
    as EventBridge sends it to an SQS target); EventError for anything else."""
    if not isinstance(body, str):
        raise EventError("message body is not text")
    try:
        raw = json.loads(body)
    except ValueError:
        raise EventError("message body is not JSON") from None
    return parse_event(raw)
