"""DynamoDB adapter: claim a webhook delivery id once, so a replayed delivery enqueues nothing;
and claim each launch of a job attempt for one delivery, so duplicates launch one instance.

A table, not Parameter Store: a burst of deliveries would exceed Parameter Store's write rate,
while an on-demand table takes thousands of conditional writes per second.
"""

from __future__ import annotations

from datetime import datetime

from botocore.exceptions import BotoCoreError, ClientError

from jitrunners.aws.clients import client, error_code

# Key and TTL attribute names (terraform/deliveries.tf and the local stack create the table so).
KEY = "delivery_id"
TTL_ATTRIBUTE = "expires_at"
OWNER_ATTRIBUTE = "owner"


class DeliveryStoreError(RuntimeError):
    """The claim table could not be read or written (throttled, unreachable, denied)."""


def claim(table: str, delivery_id: str, *, now: datetime, ttl_s: int) -> bool:
    """Record `delivery_id` as seen; False when it was already claimed and has not expired.

    The conditional write is atomic: of two concurrent deliveries with one id exactly one gets
    True. DynamoDB's TTL deletes expired items within days, not at once: an expired item is
    overwritten as if it were absent.
    """
    epoch = int(now.timestamp())
    try:
        client("dynamodb").put_item(
            TableName=table,
            Item={KEY: {"S": delivery_id}, TTL_ATTRIBUTE: {"N": str(epoch + ttl_s)}},
            ConditionExpression="attribute_not_exists(#key) OR #ttl < :now",
            ExpressionAttributeNames={"#key": KEY, "#ttl": TTL_ATTRIBUTE},
            ExpressionAttributeValues={":now": {"N": str(epoch)}},
        )
    except ClientError as exc:
        if error_code(exc) == "ConditionalCheckFailedException":
            return False
        raise DeliveryStoreError(f"claim failed: {error_code(exc) or exc}") from None
    except BotoCoreError as exc:
        raise DeliveryStoreError(f"claim failed: {type(exc).__name__}") from None
    return True


def release(table: str, delivery_id: str) -> None:
    """Forget a claim (the delivery was not enqueued after all: its redelivery must be taken)."""
    try:
        client("dynamodb").delete_item(TableName=table, Key={KEY: {"S": delivery_id}})
    except (ClientError, BotoCoreError) as exc:
        raise DeliveryStoreError(
            f"release failed: {error_code(exc) or type(exc).__name__}"
        ) from None


def claim_launch(table: str, key: str, owner: str, *, now: datetime, ttl_s: int) -> bool:
    """Claim the launch `key` for `owner` (the delivery the launch message came from); False
    when another owner holds a live claim on it.

    The same owner may claim again (a retried or deferred copy of its own message, a redriven
    one): only a *different* delivery for the same launch is refused, atomically, so that two
    copies processed at once by concurrent scale-up batches launch one instance.
    """
    epoch = int(now.timestamp())
    try:
        client("dynamodb").put_item(
            TableName=table,
            Item={
                KEY: {"S": key},
                OWNER_ATTRIBUTE: {"S": owner},
                TTL_ATTRIBUTE: {"N": str(epoch + ttl_s)},
            },
            ConditionExpression="attribute_not_exists(#key) OR #ttl < :now OR #owner = :owner",
            ExpressionAttributeNames={
                "#key": KEY,
                "#ttl": TTL_ATTRIBUTE,
                "#owner": OWNER_ATTRIBUTE,
            },
            ExpressionAttributeValues={":now": {"N": str(epoch)}, ":owner": {"S": owner}},
        )
    except ClientError as exc:
        if error_code(exc) == "ConditionalCheckFailedException":
            return False
        raise DeliveryStoreError(f"launch claim failed: {error_code(exc) or exc}") from None
    except BotoCoreError as exc:
        raise DeliveryStoreError(f"launch claim failed: {type(exc).__name__}") from None
    return True
