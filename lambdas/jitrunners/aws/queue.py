"""The SQS job queue: send job messages (with an optional delay) and move them between queues."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from botocore.exceptions import BotoCoreError, ClientError

from jitrunners.aws.clients import client, error_code
from jitrunners.models import JobMessage


class QueueError(RuntimeError):
    """A message could not be sent; the caller must not acknowledge what it was asked to deliver."""


def _attributes(message: JobMessage) -> dict[str, dict[str, str]]:
    return {
        "delivery_id": {"DataType": "String", "StringValue": message.delivery_id or "-"},
        "kind": {"DataType": "String", "StringValue": message.kind},
    }


def send_job(queue_url: str, message: JobMessage, *, delay_s: int = 0) -> str:
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


def retry_later(queue_url: str, receipt_handle: str, delay_s: int) -> None:
    """Make a received message visible again after `delay_s` (0-43200) instead of the queue's
    default visibility timeout: the back-off of a record the caller is about to fail."""
    try:
        client("sqs").change_message_visibility(
            QueueUrl=queue_url,
            ReceiptHandle=receipt_handle,
            VisibilityTimeout=max(0, min(int(delay_s), 43_200)),
        )
    except (ClientError, BotoCoreError) as exc:
        # Not fatal: the message still comes back, only after the default visibility timeout.
        raise QueueError(
            f"cannot change message visibility: {error_code(exc) or type(exc).__name__}"
        ) from exc


SQS_BATCH_MAX = 10


def send_jobs(
    queue_url: str, messages: Sequence[JobMessage], *, delay_s: int = 0
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


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """One received SQS message: its id, body and the receipt handle that deletes or releases it."""

    message_id: str
    body: str
    receipt_handle: str = field(repr=False)
    receive_count: int = 1


def receive(
    queue_url: str, *, max_messages: int = 10, visibility_s: int = 60
) -> list[QueuedMessage]:
    """Up to 10 visible messages, hidden for `visibility_s` while the caller works on them."""
    response = client("sqs").receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=max(1, min(max_messages, 10)),
        VisibilityTimeout=visibility_s,
        WaitTimeSeconds=0,
        AttributeNames=["ApproximateReceiveCount"],
    )
    return [
        QueuedMessage(
            message_id=str(m["MessageId"]),
            body=str(m.get("Body") or ""),
            receipt_handle=str(m["ReceiptHandle"]),
            receive_count=int(m.get("Attributes", {}).get("ApproximateReceiveCount", 1)),
        )
        for m in response.get("Messages", [])
    ]


def delete(queue_url: str, receipt_handle: str) -> None:
    client("sqs").delete_message(QueueUrl=queue_url, ReceiptHandle=receipt_handle)


def release(queue_url: str, receipt_handle: str) -> None:
    """Make a received message visible again now instead of after its visibility timeout."""
    retry_later(queue_url, receipt_handle, 0)
