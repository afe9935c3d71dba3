"""DynamoDB adapter: claim a webhook delivery id once, so a replayed delivery enqueues nothing;
and claim each launch of a job attempt for one delivery, so duplicates launch one instance.

A delivery saying that one of our runners took a job (`in_progress`, `completed`) is claimed by
the job rather than by the delivery id (`ran_key`), with the runner's name: the claim is then
also the record that the job ran on one of ours, which scale-up reads (`jobs_ran`, one
`BatchGetItem` per batch) before it asks GitHub whether a job it would launch for is still
queued.

A table, not Parameter Store: a burst of deliveries would exceed Parameter Store's write rate,
while an on-demand table takes thousands of conditional writes per second.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from botocore.exceptions import BotoCoreError, ClientError

from jitrunners.aws.clients import client, error_code

# Key and TTL attribute names (terraform/deliveries.tf and the local stack create the table so).
KEY = "delivery_id"
TTL_ATTRIBUTE = "expires_at"
OWNER_ATTRIBUTE = "owner"
RUNNER_ATTRIBUTE = "runner"
# Where a job-ran claim's key starts (terraform/documents.tf: scale-up reads these items only).
RAN_PREFIX = "ran:"
# The actions of a delivery that names the runner that took the job.
RAN_ACTIONS = ("in_progress", "completed")
BATCH_GET_MAX_KEYS = 100  # DynamoDB's limit per BatchGetItem


def ran_key(repo: str, job_id: int, run_attempt: int, action: str) -> str:
    """The claim of one `in_progress` or `completed` delivery of a job attempt that ran on one
    of our runners (GitHub sends one of each per attempt; its duplicates carry new ids)."""
    return f"{RAN_PREFIX}{repo.casefold()}:{job_id}:{run_attempt}:{action}"


def ran_keys(repo: str, job_id: int, run_attempt: int) -> list[str]:
    """The job-ran claims that may record a job attempt, one per action."""
    return [ran_key(repo, job_id, run_attempt, action) for action in RAN_ACTIONS]


def taker(found: Mapping[str, str], repo: str, job_id: int, run_attempt: int) -> str | None:
    """The runner a job attempt ran on by the claims `jobs_ran` found; None when none names it."""
    return next((found[k] for k in ran_keys(repo, job_id, run_attempt) if k in found), None)


class DeliveryStoreError(RuntimeError):
    """The claim table could not be read or written (throttled, unreachable, denied)."""


def claim(
    table: str, delivery_id: str, *, now: datetime, ttl_s: int, runner: str | None = None
) -> bool:
    """Record `delivery_id` as seen; False when it was already claimed and has not expired.
    `runner`: the runner a job-ran claim (`ran_key`) names, kept in the item.

    The conditional write is atomic: of two concurrent deliveries with one id exactly one gets
    True. DynamoDB's TTL deletes expired items within days, not at once: an expired item is
    overwritten as if it were absent.
    """
    epoch = int(now.timestamp())
    item = {KEY: {"S": delivery_id}, TTL_ATTRIBUTE: {"N": str(epoch + ttl_s)}}
    if runner:
        item[RUNNER_ATTRIBUTE] = {"S": runner}
    try:
        client("dynamodb").put_item(
            TableName=table,
            Item=item,
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


def jobs_ran(table: str, keys: Iterable[str], *, now: datetime) -> dict[str, str]:
    """Of the job-ran claims `keys` (`ran_key`), those recorded and unexpired: key -> runner name.

    One `BatchGetItem` per 100 keys (strongly consistent: a claim written a moment ago counts).
    Keys DynamoDB leaves unprocessed (throttling) are read as absent: the caller then asks
    GitHub, as it would without this record. Raises DeliveryStoreError when the table cannot be
    read."""
    wanted = sorted(set(keys))
    epoch = int(now.timestamp())
    found: dict[str, str] = {}
    for start in range(0, len(wanted), BATCH_GET_MAX_KEYS):
        chunk = wanted[start : start + BATCH_GET_MAX_KEYS]
        try:
            answer = client("dynamodb").batch_get_item(
                RequestItems={
                    table: {
                        "Keys": [{KEY: {"S": key}} for key in chunk],
                        "ConsistentRead": True,
                        "ProjectionExpression": "#key, #runner, #ttl",
                        "ExpressionAttributeNames": {
                            "#key": KEY,
                            "#runner": RUNNER_ATTRIBUTE,
                            "#ttl": TTL_ATTRIBUTE,
                        },
                    }
                }
            )
        except ClientError as exc:
            raise DeliveryStoreError(f"read failed: {error_code(exc) or exc}") from None
        except BotoCoreError as exc:
            raise DeliveryStoreError(f"read failed: {type(exc).__name__}") from None
        for item in answer.get("Responses", {}).get(table, []):
            runner = item.get(RUNNER_ATTRIBUTE, {}).get("S")
            expires = item.get(TTL_ATTRIBUTE, {}).get("N")
            if runner and expires is not None and int(expires) >= epoch:
                found[item[KEY]["S"]] = runner
    return found
