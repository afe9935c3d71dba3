"""What the stages of the job queue share: scale-up's dependencies, a record, its outcome, and
how a record fails (back to the queue after the delay it asks for)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn

from jitrunners.config import RunnerTemplate, Settings
from jitrunners.models import JobMessage, PoolMessage
from jitrunners.observability import logger

if TYPE_CHECKING:
    from jitrunners.github.client import GitHubClient


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class ScaleUpDeps:
    """What scale-up needs from outside; the handler wires AWS and GitHub, tests inject clocks."""

    settings: Settings
    templates: Callable[[], Sequence[RunnerTemplate]]
    github: Callable[[], GitHubClient]
    enqueue: Callable[[JobMessage, int], str]  # (message, delay_s) -> message id
    # (messages, delay_s) -> message id per message, None where it was not sent
    enqueue_many: Callable[[Sequence[JobMessage | PoolMessage], int], list[str | None]]
    retry_later: Callable[[str, int], None]  # (receipt handle, delay_s)
    arn_base: str  # "arn:<partition>:ec2:<region>:<account>:instance/"
    # Looked up at call time, so tests can swap the module's clock for a fake.
    clock: Callable[[], datetime] = field(default=lambda: utcnow())  # noqa: PLW0108

    def template(self, name: str) -> RunnerTemplate | None:
        return next((t for t in self.templates() if t.name == name), None)

    def instance_arn(self, instance_id: str) -> str:
        return f"{self.arn_base}{instance_id}"


@dataclass(frozen=True, slots=True)
class Record:
    """The parts of an SQS record scale-up uses."""

    message_id: str
    receipt_handle: str
    body: str
    receive_count: int

    @classmethod
    def from_event(cls, raw: Mapping[str, Any]) -> Record:
        attributes = raw.get("attributes") or {}
        return cls(
            message_id=str(raw.get("messageId", "")),
            receipt_handle=str(raw.get("receiptHandle", "")),
            body=str(raw.get("body", "")),
            receive_count=int(attributes.get("ApproximateReceiveCount") or 1),
        )


class RecordFailed(RuntimeError):
    """The record goes back to the queue (after `retry_after_s` when set) and counts a receive."""

    def __init__(self, reason: str, retry_after_s: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s


@dataclass(slots=True)
class Outcome:
    """What happened to one record of the batch; `failure` set means the record fails."""

    result: str
    failure: RecordFailed | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@contextmanager
def correlated(message: JobMessage | PoolMessage | None, **more: Any) -> Iterator[None]:
    """Every log line inside carries the message's correlation keys (DESIGN §5)."""
    keys = {**(message.log_keys() if message else {}), **more}
    logger.append_keys(**keys)
    try:
        yield
    finally:
        logger.remove_keys(list(keys))


def fail(record: Record, deps: ScaleUpDeps, failure: RecordFailed) -> NoReturn:
    """Fail a record, first moving its next delivery to the back-off the failure asks for."""
    if failure.retry_after_s is not None:
        try:
            deps.retry_later(record.receipt_handle, failure.retry_after_s)
        except Exception as exc:  # noqa: BLE001 - the default visibility timeout still applies
            logger.warning("could not set the retry delay", extra={"detail": str(exc)})
    raise failure
