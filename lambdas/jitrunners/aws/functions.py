"""Lambda control-plane adapter: reserved concurrency and the event source mappings of a function.

What the kill switch turns (DESIGN 5b): a function's reserved concurrency and whether the SQS
event source mapping polls. Each operation is one Lambda API call; names are function names
(`<prefix>-<key>`), never ARNs, so the same call works in AWS and in moto.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from botocore.exceptions import ClientError

from jitrunners.aws.clients import client, error_code

# Mapping states that poll, or are about to (Lambda's `State` of an event source mapping).
POLLING_STATES = frozenset({"Enabled", "Enabling", "Creating"})


class FunctionNotFound(LookupError):
    """The function does not exist (wrong prefix or region, or not deployed)."""


@dataclass(frozen=True, slots=True)
class EventSourceMapping:
    uuid: str
    function_arn: str
    source_arn: str
    state: str

    @property
    def polling(self) -> bool:
        return self.state in POLLING_STATES


def _not_found(exc: ClientError, name: str) -> None:
    if error_code(exc) == "ResourceNotFoundException":
        raise FunctionNotFound(f"Lambda function {name} not found") from None


def reserved_concurrency(name: str) -> int | None:
    """The function's reserved concurrency; None when it has none (it shares the account's)."""
    try:
        answer = client("lambda").get_function_concurrency(FunctionName=name)
    except ClientError as exc:
        _not_found(exc, name)
        raise
    value = answer.get("ReservedConcurrentExecutions")
    return None if value is None else int(value)


def zero_concurrency(name: str) -> None:
    """Reserved concurrency 0: every invocation of the function is throttled."""
    try:
        client("lambda").put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    except ClientError as exc:
        _not_found(exc, name)
        raise


def restore_concurrency(name: str, value: int | None) -> None:
    """Reserve `value` executions, or none at all (None: the account's unreserved pool)."""
    try:
        if value is None:
            client("lambda").delete_function_concurrency(FunctionName=name)
        else:
            client("lambda").put_function_concurrency(
                FunctionName=name, ReservedConcurrentExecutions=value
            )
    except ClientError as exc:
        _not_found(exc, name)
        raise


def _function_name(arn: str) -> str:
    # arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]
    parts = arn.split(":")
    return parts[6] if len(parts) > 6 else ""


def mappings_of(name: str) -> Iterator[EventSourceMapping]:
    """The event source mappings that invoke the function, through any version or alias.

    Listed whole and filtered here: Lambda's FunctionName filter matches the exact qualifier the
    mapping was created with (the `live` alias), and a mapping created by hand may name another.
    """
    pages = client("lambda").get_paginator("list_event_source_mappings")
    for page in pages.paginate():
        for item in page.get("EventSourceMappings", []):
            function_arn = str(item.get("FunctionArn", ""))
            if _function_name(function_arn) == name:
                yield EventSourceMapping(
                    uuid=str(item["UUID"]),
                    function_arn=function_arn,
                    source_arn=str(item.get("EventSourceArn", "")),
                    state=str(item.get("State", "")),
                )


def set_mapping_enabled(uuid: str, enabled: bool) -> None:
    """Stop (or resume) the mapping's polling; messages stay in the queue meanwhile."""
    client("lambda").update_event_source_mapping(UUID=uuid, Enabled=enabled)
