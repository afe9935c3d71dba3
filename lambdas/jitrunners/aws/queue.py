"""The SQS job queue: send job messages (with an optional delay) and move them between queues."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

from jitrunners.aws.clients import client, error_code
from jitrunners.models import JobMessage


class QueueError(RuntimeError):
    """A message could not be sent; the caller must not acknowledge what it was asked to deliver."""


def send_job(queue_url: str, message: JobMessage, *, delay_s: int = 0) -> str:
    """Send one job message; returns the SQS message id. The delivery id rides as an attribute."""
    try:
        response = client("sqs").send_message(
            QueueUrl=queue_url,
            MessageBody=message.to_json(),
            DelaySeconds=max(0, min(delay_s, 900)),
            MessageAttributes={
                "delivery_id": {"DataType": "String", "StringValue": message.delivery_id or "-"},
                "kind": {"DataType": "String", "StringValue": message.kind},
            },
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
