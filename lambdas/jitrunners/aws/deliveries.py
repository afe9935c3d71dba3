"""DynamoDB adapter: claim a webhook delivery id once, so a replayed delivery enqueues nothing;
and claim each launch of a job attempt for one delivery, so duplicates launch one instance (a
batch's launches in one transaction: `claim_launches`).

A delivery saying that one of our runners took a job (`in_progress`, `completed`) is claimed by
the job rather than by the delivery id (`ran_key`), with the runner's name: the claim is then
also the record that the job ran on one of ours. A `completed` delivery of a job that did not
run on one of ours (cancelled while queued, or run by another runner) is claimed by the job too,
marked `elsewhere`. Scale-up reads these records (`jobs_ran`, one `BatchGetItem` per batch) to
settle whether a job it would launch for still waits, without asking GitHub.

A table, not Parameter Store: a burst of deliveries would exceed Parameter Store's write rate,
while an on-demand table takes thousands of conditional writes per second.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from jitrunners.aws.clients import client, error_code

# Key and TTL attribute names (terraform/deliveries.tf and the local stack create the table so).
KEY = "delivery_id"
TTL_ATTRIBUTE = "expires_at"
OWNER_ATTRIBUTE = "owner"
RUNNER_ATTRIBUTE = "runner"
ELSEWHERE_ATTRIBUTE = "elsewhere"  # BOOL: the job attempt ended without running on ours
# What `jobs_ran` and `taker` give for a job attempt that ended without running on one of our
# runners (its `completed` delivery named none of ours); `claim(..., runner=ENDED_ELSEWHERE)`
# records it. Never a runner's name: GitHub refuses an empty one.
ENDED_ELSEWHERE = ""
# Where a job-ran claim's key starts (terraform/documents.tf: scale-up reads these items only).
RAN_PREFIX = "ran:"
# The actions of a delivery that names the runner that took the job.
RAN_ACTIONS = ("in_progress", "completed")
BATCH_GET_MAX_KEYS = 100  # DynamoDB's limit per BatchGetItem
TRANSACT_MAX_ITEMS = 100  # DynamoDB's limit per TransactWriteItems
# Transactions one chunk of launch claims may take: the first, then one per round that drops the
# claims refused (and tries the next owner of a key claimed twice). More means writes racing ours
# round after round: the claims left are then made one by one.
TRANSACT_MAX_ROUNDS = 4
# Cancellation reasons that say nothing about the claim itself: a concurrent write on its item
# (another scale-up's transaction or put for the same launch) or a throttle. Such a claim is
# made alone (`claim_launch`): its conditional put decides the race as it decides any claim, and
# if it fails too the caller fails the records back to their queue. Failing them at once would
# be as safe, but would send a whole batch back for one contended item.
_ALONE = frozenset({"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"})


def ran_key(repo: str, job_id: int, run_attempt: int, action: str) -> str:
    """The claim of one `in_progress` or `completed` delivery of a job attempt that ran on one
    of our runners, or of the `completed` delivery of one that ended elsewhere (GitHub sends one
    of each per attempt; its duplicates carry new ids)."""
    return f"{RAN_PREFIX}{repo.casefold()}:{job_id}:{run_attempt}:{action}"


def ran_keys(repo: str, job_id: int, run_attempt: int) -> list[str]:
    """The job-ran claims that may record a job attempt, one per action."""
    return [ran_key(repo, job_id, run_attempt, action) for action in RAN_ACTIONS]


def taker(found: Mapping[str, str], repo: str, job_id: int, run_attempt: int) -> str | None:
    """The runner of ours a job attempt ran on by the claims `jobs_ran` found, ENDED_ELSEWHERE
    when it ended without one of ours, None when no claim names it (it may still be queued)."""
    return next((found[k] for k in ran_keys(repo, job_id, run_attempt) if k in found), None)


class DeliveryStoreError(RuntimeError):
    """The claim table could not be read or written (throttled, unreachable, denied)."""


def claim(
    table: str, delivery_id: str, *, now: datetime, ttl_s: int, runner: str | None = None
) -> bool:
    """Record `delivery_id` as seen; False when it was already claimed and has not expired.
    `runner`: the runner a job-ran claim (`ran_key`) names, kept in the item; ENDED_ELSEWHERE
    marks the claim of a job that ended without running on one of ours.

    The conditional write is atomic: of two concurrent deliveries with one id exactly one gets
    True. DynamoDB's TTL deletes expired items within days, not at once: an expired item is
    overwritten as if it were absent.
    """
    epoch = int(now.timestamp())
    item = {KEY: {"S": delivery_id}, TTL_ATTRIBUTE: {"N": str(epoch + ttl_s)}}
    if runner:
        item[RUNNER_ATTRIBUTE] = {"S": runner}
    elif runner == ENDED_ELSEWHERE:
        item[ELSEWHERE_ATTRIBUTE] = {"BOOL": True}
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
    try:
        client("dynamodb").put_item(**_launch_put(table, key, owner, int(now.timestamp()), ttl_s))
    except ClientError as exc:
        if error_code(exc) == "ConditionalCheckFailedException":
            return False
        raise DeliveryStoreError(f"launch claim failed: {error_code(exc) or exc}") from None
    except BotoCoreError as exc:
        raise DeliveryStoreError(f"launch claim failed: {type(exc).__name__}") from None
    return True


def _launch_put(table: str, key: str, owner: str, epoch: int, ttl_s: int) -> dict[str, Any]:
    """A launch claim's conditional put: PutItem's parameters, and a transaction's `Put`."""
    return {
        "TableName": table,
        "Item": {
            KEY: {"S": key},
            OWNER_ATTRIBUTE: {"S": owner},
            TTL_ATTRIBUTE: {"N": str(epoch + ttl_s)},
        },
        "ConditionExpression": "attribute_not_exists(#key) OR #ttl < :now OR #owner = :owner",
        "ExpressionAttributeNames": {"#key": KEY, "#ttl": TTL_ATTRIBUTE, "#owner": OWNER_ATTRIBUTE},
        "ExpressionAttributeValues": {":now": {"N": str(epoch)}, ":owner": {"S": owner}},
    }


def claim_launches(
    table: str, claims: Sequence[tuple[str, str]], *, now: datetime, ttl_s: int
) -> dict[tuple[str, str], bool]:
    """Claim many launches at once: (key, owner) -> True when `owner` holds `key`'s claim now,
    as `claim_launch` called for each claim in order would answer (a key claimed twice in one
    call, two deliveries of one job in one batch: its first owner that may take it wins, a later
    different owner gets False, the same owner again True).

    One `TransactWriteItems` per 100 keys (a lone claim: one `PutItem`, half the write units of
    a transactional write). A transaction is all or nothing: when DynamoDB cancels it, the claims
    it refused (`ConditionalCheckFailed`: another owner's) get False, and the rest go again in a
    transaction of their own. A claim cancelled by a concurrent write on its item or by a
    throttle is made alone with `claim_launch`: that conditional put decides it as it decides
    any claim, so whoever wins the item, one owner holds it. Raises DeliveryStoreError when the
    table cannot be written; the claims this call made stay made, and as a claim admits its
    owner again the caller's retry of them gets the same answers.
    """
    # Each key's distinct owners in the order of the claims: the next is tried only when the
    # one before is refused (once one holds the key, every later different owner is refused).
    owners: dict[str, list[str]] = {}
    for key, owner in claims:
        if owner not in owners.setdefault(key, []):
            owners[key].append(owner)
    answers: dict[tuple[str, str], bool] = {}
    keys = list(owners)
    for start in range(0, len(keys), TRANSACT_MAX_ITEMS):
        chunk = {key: owners[key] for key in keys[start : start + TRANSACT_MAX_ITEMS]}
        answers |= _claim_chunk(table, chunk, now=now, ttl_s=ttl_s)
    return answers


def _claim_chunk(
    table: str, owners: Mapping[str, list[str]], *, now: datetime, ttl_s: int
) -> dict[tuple[str, str], bool]:
    """`claim_launches` for at most TRANSACT_MAX_ITEMS keys (each once per transaction)."""
    epoch = int(now.timestamp())
    answers: dict[tuple[str, str], bool] = {}
    trying = dict.fromkeys(owners, 0)  # key -> index of the owner its next put is for

    def settle(key: str, mine: bool) -> None:
        answers[(key, owners[key][trying[key]])] = mine
        trying[key] += 1
        if mine:  # it holds the key now: every later owner is refused
            answers.update({(key, later): False for later in owners[key][trying[key] :]})
            trying[key] = len(owners[key])
        if trying[key] == len(owners[key]):
            del trying[key]

    def alone(key: str) -> None:
        settle(key, claim_launch(table, key, owners[key][trying[key]], now=now, ttl_s=ttl_s))

    rounds = 0
    while trying:
        if len(trying) == 1 or rounds == TRANSACT_MAX_ROUNDS:
            for key in list(trying):
                alone(key)
            continue
        rounds += 1
        batch = [(key, owners[key][index]) for key, index in trying.items()]
        reasons = _transact(table, batch, epoch, ttl_s)
        if reasons is None:
            for key, _ in batch:
                settle(key, True)
            continue
        if len(reasons) != len(batch) or all(code == "None" for code in reasons):
            # No reason per claim (AWS documents the list for some SDKs only): tell them apart
            # one by one rather than fail them again and again.
            for key, _ in batch:
                alone(key)
            continue
        for (key, _), code in zip(batch, reasons, strict=True):
            if code == "ConditionalCheckFailed":
                settle(key, False)
            elif code in _ALONE:
                alone(key)
            elif code != "None":  # "None": its condition held; it goes again with the rest
                raise DeliveryStoreError(f"launch claims failed: {code}")
    return answers


def _transact(
    table: str, batch: Sequence[tuple[str, str]], epoch: int, ttl_s: int
) -> list[str] | None:
    """One transaction of launch claims: None when all were written, else DynamoDB's reason
    code for each claim, in order ("None": its condition held), as far as it says."""
    try:
        client("dynamodb").transact_write_items(
            TransactItems=[
                {"Put": _launch_put(table, key, owner, epoch, ttl_s)} for key, owner in batch
            ]
        )
    except ClientError as exc:
        code = error_code(exc)
        if code != "TransactionCanceledException":
            raise DeliveryStoreError(f"launch claims failed: {code or exc}") from None
        return [str(r.get("Code", "")) for r in exc.response.get("CancellationReasons") or []]
    except BotoCoreError as exc:
        raise DeliveryStoreError(f"launch claims failed: {type(exc).__name__}") from None
    return None


def jobs_ran(table: str, keys: Iterable[str], *, now: datetime) -> dict[str, str]:
    """Of the job-ran claims `keys` (`ran_key`), those recorded and unexpired: key -> the name
    of the runner of ours the job ran on, or ENDED_ELSEWHERE.

    One `BatchGetItem` per 100 keys (strongly consistent: a claim written a moment ago counts).
    Raises DeliveryStoreError when the table cannot be read, or when DynamoDB leaves keys
    unprocessed (throttling): an absent record lets a launch go ahead, so a key not read must
    not pass for one (the caller then asks GitHub, as it would without the records)."""
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
                        "ProjectionExpression": "#key, #runner, #elsewhere, #ttl",
                        "ExpressionAttributeNames": {
                            "#key": KEY,
                            "#runner": RUNNER_ATTRIBUTE,
                            "#elsewhere": ELSEWHERE_ATTRIBUTE,
                            "#ttl": TTL_ATTRIBUTE,
                        },
                    }
                }
            )
        except ClientError as exc:
            raise DeliveryStoreError(f"read failed: {error_code(exc) or exc}") from None
        except BotoCoreError as exc:
            raise DeliveryStoreError(f"read failed: {type(exc).__name__}") from None
        unread = answer.get("UnprocessedKeys", {}).get(table, {}).get("Keys", [])
        if unread:
            raise DeliveryStoreError(f"read incomplete: {len(unread)} keys unprocessed")
        for item in answer.get("Responses", {}).get(table, []):
            runner = item.get(RUNNER_ATTRIBUTE, {}).get("S") or None
            if runner is None and item.get(ELSEWHERE_ATTRIBUTE, {}).get("BOOL") is True:
                runner = ENDED_ELSEWHERE
            expires = item.get(TTL_ATTRIBUTE, {}).get("N")
            if runner is not None and expires is not None and int(expires) >= epoch:
                found[item[KEY]["S"]] = runner
    return found
