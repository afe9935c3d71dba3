"""Move job messages from the DLQ back to the job queue, dropping only jobs GitHub no longer has."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from jitrunners.aws import inbox, queue
from jitrunners.config import Settings
from jitrunners.models import JobMessage, MessageError, PoolMessage, parse_message
from jitrunners.observability import count, logger

# GitHub cancels a job that stayed queued for 24 h: past that a launch can only make an idle runner.
JOB_QUEUE_LIFETIME: Final = timedelta(hours=24)
# Time kept in hand after the last batch: one batch (10 GitHub look-ups, 10 sends, 10 deletes)
# must fit in it, so the Lambda is never killed between a send and its delete by its own timeout.
BATCH_BUDGET_MS: Final = 20_000
# How long a received message stays hidden while we work on it (longer than one batch takes).
VISIBILITY_S: Final = 60
MAX_BATCHES: Final = 50


@dataclass
class RedriveReport:
    """What a run did: counts by outcome (`move`, `hold:<why>`, `drop:<why>`)."""

    outcomes: Counter[str] = field(default_factory=Counter)
    batches: int = 0

    @property
    def moved(self) -> int:
        return self.outcomes["move"]


@dataclass(frozen=True)
class RedriveDeps:
    """GitHub's view of a job (`None` when GitHub no longer knows it) and the time."""

    job_status: Callable[[JobMessage], str | None]
    clock: Callable[[], datetime]
    remaining_ms: Callable[[], int]


def _queued_at(message: JobMessage) -> datetime | None:
    if not message.queued_at:
        return None
    try:
        parsed = datetime.fromisoformat(message.queued_at.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def decide(message: JobMessage, settings: Settings, deps: RedriveDeps) -> str:
    """`move`, `hold:<why>` (stays in the DLQ) or `drop:<why>` (deleted) for one message."""
    if message.redrives >= settings.max_redrives:
        # Left in the DLQ for good: the DLQ alarm is how a human hears of it.
        return "hold:max_redrives"
    queued_at = _queued_at(message)
    if queued_at is not None and deps.clock() - queued_at > JOB_QUEUE_LIFETIME:
        return "drop:older_than_24h"
    if message.kind != "launch":
        # A start belongs to an instance that exists: scale-up decides about it (start timeout,
        # re-queue of the launch). The job it was launched for says nothing about the runner.
        return "move"
    from jitrunners.github.client import GitHubError

    try:
        status = deps.job_status(message)
    except GitHubError as exc:
        # Unknown is not "not queued": keep the message and ask again next run.
        logger.warning("cannot ask GitHub about the job", extra={"status": exc.status})
        return "hold:github_unavailable"
    if status is None:
        return "drop:job_not_found"
    if status != "queued":
        return f"drop:job_{status}"
    return "move"


def redrive(
    dlq_url: str, job_queue_url: str, settings: Settings, deps: RedriveDeps
) -> RedriveReport:
    """Move what can be moved, batch by batch, while the invocation has time left.

    Send before delete: a crash in between leaves the message in the DLQ and a copy in the job
    queue. The copy is harmless (scale-up skips a job that already has an instance, and a start for
    an instance that already runs its command is a no-op) and the DLQ message is redriven again.
    """
    report = RedriveReport()
    held: list[str] = []  # receipt handles to make visible again when we are done
    try:
        while report.batches < MAX_BATCHES and deps.remaining_ms() > BATCH_BUDGET_MS:
            batch = inbox.receive(dlq_url, visibility_s=VISIBILITY_S)
            if not batch:
                break
            report.batches += 1
            for received in batch:
                outcome = _one(received, dlq_url, job_queue_url, settings, deps)
                report.outcomes[outcome] += 1
                if outcome.startswith("hold"):
                    held.append(received.receipt_handle)
    finally:
        # Held messages go back to visible at once: the DLQ alarm counts visible messages, and
        # hiding them for the visibility timeout after every run would make the alarm flap.
        for receipt in held:
            try:
                inbox.release(dlq_url, receipt)
            except Exception:  # noqa: BLE001 - it becomes visible by itself after the timeout
                logger.debug("could not release a held message")
    return report


def _one(
    received: inbox.QueuedMessage,
    dlq_url: str,
    job_queue_url: str,
    settings: Settings,
    deps: RedriveDeps,
) -> str:
    try:
        parsed = parse_message(received.body)
    except MessageError as exc:
        count("RedriveHeld", reason="malformed")
        logger.warning(
            "DLQ message is not a job message we understand; left in the DLQ",
            extra={"message_id": received.message_id, "detail": str(exc)},
        )
        return "hold:malformed"
    if isinstance(parsed, PoolMessage):
        # A warm pool's own message (a `fill`, or a member's `ready` that ran out of receives):
        # nothing a job waits on. The housekeeper asks for fills every pass and ends a member
        # never made ready at its start timeout; the pool then refills.
        inbox.delete(dlq_url, received.receipt_handle)
        count("RedriveDropped", reason="pool_message")
        logger.info(
            "pool message dropped from the DLQ: the housekeeper's pass covers it",
            extra={**parsed.log_keys(), "message_id": received.message_id},
        )
        return "drop:pool_message"
    message = parsed
    keys: dict[str, Any] = {**message.log_keys(), "message_id": received.message_id}
    keys["redrives"] = message.redrives
    verdict = decide(message, settings, deps)
    action, _, why = verdict.partition(":")
    if action == "hold":
        count("RedriveHeld", reason=why)
        logger.warning("message left in the DLQ", extra={**keys, "reason": why})
        return verdict
    if action == "drop":
        inbox.delete(dlq_url, received.receipt_handle)
        count("RedriveDropped", reason=why)
        logger.info("message dropped from the DLQ", extra={**keys, "reason": why})
        return verdict
    try:
        queue.send_job(job_queue_url, message.redriven())
    except queue.QueueError as exc:
        count("RedriveHeld", reason="send_failed")
        logger.warning("could not send to the job queue", extra={**keys, "detail": str(exc)})
        return "hold:send_failed"
    # Only now is it safe to delete: the job queue has it.
    inbox.delete(dlq_url, received.receipt_handle)
    count("Redriven")
    logger.info("message redriven", extra={**keys, "redrives": message.redrives + 1})
    return "move"
