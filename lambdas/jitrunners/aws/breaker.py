"""DynamoDB adapter: the spot circuit breaker's state per template, shared by every concurrent
scale-up and scale-down invocation.

One item per template in the deliveries table (key `spot-breaker#<template>`): the recent spot
events (`<epoch>|<event id>`, appended atomically) and, while the breaker is open, `open_until`.
The table, not Parameter Store: appends and the conditional open are atomic there, and a burst of
interruptions would exceed Parameter Store's write rate.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from jitrunners.aws.clients import client, error_code

# The deliveries table's key and TTL attribute (terraform/deliveries.tf, aws/deliveries.py).
KEY: Final = "delivery_id"
TTL_ATTRIBUTE: Final = "expires_at"
KEY_PREFIX: Final = "spot-breaker#"
EVENTS: Final = "spot_events"
OPEN_UNTIL: Final = "open_until"
# Beyond this many stored events, the ones outside the window are dropped (best effort).
PRUNE_AT: Final = 50


class BreakerStoreError(RuntimeError):
    """The breaker's item could not be read or written (throttled, unreachable, denied)."""


@dataclass(frozen=True, slots=True)
class BreakerState:
    recent: int  # distinct events within the window
    open_until: int  # epoch seconds; 0 or past: closed
    opened_now: bool = False  # this call opened it


def breaker_key(template: str) -> str:
    return f"{KEY_PREFIX}{template}"


def _failed(what: str, exc: Exception) -> BreakerStoreError:
    code = error_code(exc) if isinstance(exc, ClientError) else type(exc).__name__
    return BreakerStoreError(f"spot breaker {what} failed: {code or exc}")


def _recent(events: list[Any], since: int) -> dict[str, int]:
    """Event id -> time of the distinct events at or after `since` (one instance's warning and
    its reclaim count once)."""
    found: dict[str, int] = {}
    for raw in events:
        stamp, _, event_id = str(raw.get("S", "")).partition("|")
        if stamp.isdigit() and int(stamp) >= since and event_id:
            found[event_id] = int(stamp)
    return found


def record_spot_event(
    table: str,
    template: str,
    event_id: str,
    *,
    now: int,
    threshold: int,
    window_s: int,
    open_s: int,
) -> BreakerState:
    """Record one spot interruption or capacity refusal; open the breaker (atomically, once)
    when `threshold` distinct events fall within `window_s`. Raises BreakerStoreError."""
    key = {KEY: {"S": breaker_key(template)}}
    expires = str(now + window_s + open_s + 86_400)
    try:
        item = client("dynamodb").update_item(
            TableName=table,
            Key=key,
            UpdateExpression="SET #ev = list_append(if_not_exists(#ev, :none), :one), #ttl = :ttl",
            ExpressionAttributeNames={"#ev": EVENTS, "#ttl": TTL_ATTRIBUTE},
            ExpressionAttributeValues={
                ":none": {"L": []},
                ":one": {"L": [{"S": f"{now}|{event_id}"}]},
                ":ttl": {"N": expires},
            },
            ReturnValues="ALL_NEW",
        )["Attributes"]
    except (ClientError, BotoCoreError) as exc:
        raise _failed("record", exc) from None
    events = item.get(EVENTS, {}).get("L", [])
    recent = _recent(events, now - window_s)
    open_until = int(item.get(OPEN_UNTIL, {}).get("N", "0"))
    if open_until > now or len(recent) < threshold:
        if len(events) > PRUNE_AT:
            _prune(table, key, events, recent)
        return BreakerState(len(recent), open_until)
    until = now + open_s
    try:
        # Only one of several concurrent recorders opens it; the events start afresh, so that
        # spot is tried again after `open_s` without the events that opened it.
        client("dynamodb").update_item(
            TableName=table,
            Key=key,
            UpdateExpression="SET #open = :until, #ev = :none",
            ConditionExpression="attribute_not_exists(#open) OR #open <= :now",
            ExpressionAttributeNames={"#open": OPEN_UNTIL, "#ev": EVENTS},
            ExpressionAttributeValues={
                ":until": {"N": str(until)},
                ":now": {"N": str(now)},
                ":none": {"L": []},
            },
        )
    except ClientError as exc:
        if error_code(exc) == "ConditionalCheckFailedException":
            return BreakerState(len(recent), spot_breaker_open_until(table, template))
        raise _failed("open", exc) from None
    except BotoCoreError as exc:
        raise _failed("open", exc) from None
    return BreakerState(len(recent), until, opened_now=True)


def _prune(table: str, key: dict[str, Any], events: list[Any], recent: dict[str, int]) -> None:
    """Keep only the recent events, unless another event was appended meanwhile (then the next
    record prunes)."""
    kept = [{"S": f"{stamp}|{event_id}"} for event_id, stamp in recent.items()]
    # Best effort: a failed prune is retried by a later record.
    with contextlib.suppress(ClientError, BotoCoreError):
        client("dynamodb").update_item(
            TableName=table,
            Key=key,
            UpdateExpression="SET #ev = :kept",
            ConditionExpression="size(#ev) = :n",
            ExpressionAttributeNames={"#ev": EVENTS},
            ExpressionAttributeValues={":kept": {"L": kept}, ":n": {"N": str(len(events))}},
        )


def spot_breaker_open_until(table: str, template: str) -> int:
    """Until when (epoch seconds) the template's breaker is open; 0 when it never opened."""
    try:
        item = (
            client("dynamodb")
            .get_item(
                TableName=table,
                Key={KEY: {"S": breaker_key(template)}},
                ConsistentRead=True,
                ProjectionExpression="#open",
                ExpressionAttributeNames={"#open": OPEN_UNTIL},
            )
            .get("Item", {})
        )
    except (ClientError, BotoCoreError) as exc:
        raise _failed("read", exc) from None
    return int(item.get(OPEN_UNTIL, {}).get("N", "0"))
