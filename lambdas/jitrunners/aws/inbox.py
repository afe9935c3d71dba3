"""The SQS queues, consuming side: receive, delete, release and back off received messages.

Apart from `queue.py` so that a function that only sends (the webhook) neither imports nor is
granted the consuming calls (tests/deploy checks each function's IAM policy against its imports).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from botocore.exceptions import BotoCoreError, ClientError

from jitrunners.aws.clients import client, error_code
from jitrunners.aws.queue import QueueError


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
