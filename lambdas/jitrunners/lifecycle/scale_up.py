"""One scale-up batch: shared dependencies, per-record outcomes and the record dispatcher."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn

from jitrunners.config import RunnerTemplate, Settings
from jitrunners.lifecycle import boundary
from jitrunners.models import JobMessage, MessageError
from jitrunners.observability import count, logger

if TYPE_CHECKING:
    from jitrunners.github.client import GitHubClient


# Back-off before a `taken` or `release` message whose AWS or queue call failed is tried again.
BOOKS_RETRY_S = 30


def utcnow() -> datetime:
    return datetime.now(UTC)


def pause(seconds: float) -> None:
    time.sleep(seconds)


@dataclass(slots=True)
class ScaleUpDeps:
    """What scale-up needs from outside; the handler wires AWS and GitHub, tests inject clocks."""

    settings: Settings
    templates: Callable[[], Sequence[RunnerTemplate]]
    github: Callable[[], GitHubClient]
    enqueue: Callable[[JobMessage, int], str]  # (message, delay_s) -> message id
    # (messages, delay_s) -> message id per message, None where it was not sent
    enqueue_many: Callable[[Sequence[JobMessage], int], list[str | None]]
    retry_later: Callable[[str, int], None]  # (receipt handle, delay_s)
    arn_base: str  # "arn:<partition>:ec2:<region>:<account>:instance/"
    # Looked up at call time, so tests can swap the module's clock and pause for fakes.
    clock: Callable[[], datetime] = field(default=lambda: utcnow())  # noqa: PLW0108
    sleep: Callable[[float], None] = field(default=lambda s: pause(s))  # noqa: PLW0108

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
def correlated(message: JobMessage | None, **more: Any) -> Iterator[None]:
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


class ScaleUpBatch:
    """Launches are decided for the whole batch at once (fewest EC2 calls); the record handler
    then reports each record's outcome. Starts are handled record by record."""

    def __init__(self, deps: ScaleUpDeps) -> None:
        self.deps = deps
        self.outcomes: dict[str, Outcome] = {}

    def prepare(self, raw_records: Sequence[Mapping[str, Any]]) -> None:
        from jitrunners.lifecycle.launch import plan_launches

        launches: list[tuple[Record, JobMessage]] = []
        for raw in raw_records:
            record = Record.from_event(raw)
            try:
                message = JobMessage.from_json(record.body)
            except MessageError:
                continue  # the record handler fails it, with the reason
            if message.kind == "launch":
                launches.append((record, message))
        if launches:
            self.outcomes.update(plan_launches(launches, self.deps))

    def handle(self, record: Any) -> str:
        """Powertools' record handler (it passes `record=`, an SQSRecord)."""
        return self._handle(Record.from_event(record.raw_event))

    def _handle(self, record: Record) -> str:
        try:
            message = JobMessage.from_json(record.body)
        except MessageError as exc:
            count("MessageRejected", reason="invalid_message")
            logger.error(
                "job message rejected: it will reach the DLQ",
                extra={"reason": str(exc), "message_id": record.message_id},
            )
            raise
        with correlated(message):
            if message.kind in ("taken", "release"):
                try:
                    return self._books(message)
                except RecordFailed as failure:
                    fail(record, self.deps, failure)
            if message.kind == "rerun":
                return self._rerun_check(message)
            if message.kind == "start":
                from jitrunners.lifecycle.start import start_runner

                try:
                    return start_runner(message, record, self.deps)
                except RecordFailed as failure:
                    fail(record, self.deps, failure)
            outcome = self.outcomes.get(record.message_id)
            if outcome is None:  # cannot happen: prepare() saw every record
                raise RecordFailed("launch not planned")
            if outcome.failure is not None:
                fail(record, self.deps, outcome.failure)
            return outcome.result

    def _books(self, message: JobMessage) -> str:
        """`taken` and `release` messages: keep the books by job (DESIGN §6b)."""
        from botocore.exceptions import BotoCoreError, ClientError

        from jitrunners.aws.queue import QueueError
        from jitrunners.lifecycle import bookkeeping

        try:
            if message.kind == "release":
                outcome = bookkeeping.release_job(message, self.deps)
            else:
                assert message.instance_id is not None  # JobMessage.from_json guarantees it
                outcome = bookkeeping.record_taken(message, message.instance_id, self.deps)
        except (ClientError, BotoCoreError, QueueError) as exc:
            # Every step is idempotent: the whole message is tried again.
            logger.warning("job bookkeeping failed: retried", extra={"detail": str(exc)})
            raise RecordFailed("bookkeeping failed", BOOKS_RETRY_S) from None
        logger.info("job bookkeeping", extra={"kind": message.kind, "outcome": outcome})
        return outcome

    def _rerun_check(self, message: JobMessage) -> str:
        from jitrunners.lifecycle.cleanup import Context
        from jitrunners.lifecycle.rerun import check_failed_job

        deps = self.deps
        if boundary.refused_repository(message, deps.settings):
            return "refused"
        # The failed job ran on this runner: the books first (its `in_progress` may be lost).
        self._books(replace(message, kind="taken"))
        ctx = Context.build(deps.settings, deps.templates(), deps.github(), deps.clock)
        outcome = check_failed_job(message, ctx)
        if outcome.startswith("wait:github") or outcome == "wait:claim_failed":
            # The pending record is written: the housekeeper advances it if we cannot now.
            logger.info("re-run check left to the housekeeper", extra={"outcome": outcome})
        return outcome
