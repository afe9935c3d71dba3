"""The SQS job queue, producing side: send job messages (with an optional delay)."""

from __future__ import annotations

from collections.abc import Sequence

from botocore.exceptions import BotoCoreError, ClientError

from jitrunners.aws.clients import client, error_code
from jitrunners.models import JobMessage, PoolMessage


class QueueError(RuntimeError):
    """A message could not be sent; the caller must not acknowledge what it was asked to deliver."""


def _attributes(message: JobMessage | PoolMessage) -> dict[str, dict[str, str]]:
    delivery_id = message.delivery_id if isinstance(message, JobMessage) else ""
    return {
        "delivery_id": {"DataType": "String", "StringValue": delivery_id or "-"},
        "kind": {"DataType": "String", "StringValue": message.kind},
    }


def send_job(queue_url: str, message: JobMessage | PoolMessage, *, delay_s: int = 0) -> str:
    """Send one job message; returns the SQS message id. The delivery id rides as an attribute."""
    try:
        response = client("sqs").send_message(
            QueueUrl=queue_url,
            MessageBody=message.to_json(),
            DelaySeconds=max(0, min(delay_s, 900)),
            MessageAttributes=_attributes(message),
        )
    except (ClientError, BotoCoreError) as exc:
        raise QueueError(
            f"cannot send to the job queue: {error_code(exc) or type(exc).__name__}"
        ) from exc
    return str(response["MessageId"])


SQS_BATCH_MAX = 10


def send_jobs(
    queue_url: str, messages: Sequence[JobMessage | PoolMessage], *, delay_s: int = 0
) -> list[str | None]:
    """Send messages ten per SendMessageBatch; returns each one's message id, None where SQS
    refused it (the caller decides what an unsent message means)."""
    sent: list[str | None] = [None] * len(messages)
    for first in range(0, len(messages), SQS_BATCH_MAX):
        entries = [
            {
                "Id": str(index),
                "MessageBody": message.to_json(),
                "DelaySeconds": max(0, min(delay_s, 900)),
                "MessageAttributes": _attributes(message),
            }
            for index, message in enumerate(messages[first : first + SQS_BATCH_MAX], start=first)
        ]
        try:
            response = client("sqs").send_message_batch(QueueUrl=queue_url, Entries=entries)
        except (ClientError, BotoCoreError):
            continue  # this chunk stays None
        for entry in response.get("Successful", []):
            sent[int(entry["Id"])] = str(entry["MessageId"])
    return sent
