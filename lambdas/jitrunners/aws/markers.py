"""Small durable records in SSM Parameter Store: claims that make an action happen at most once."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from botocore.exceptions import ClientError

from jitrunners.aws.clients import client, error_code
from jitrunners.aws.ssm import delete_parameter


@dataclass(frozen=True, slots=True)
class Marker:
    name: str
    value: str
    last_modified: datetime


def claim(name: str, value: str, prefix: str) -> bool:
    """Create the record; False when it already exists (someone else claimed it first).

    PutParameter without Overwrite is atomic in SSM, which is what makes this a claim: of two
    concurrent callers exactly one gets True.
    """
    try:
        client("ssm").put_parameter(
            Name=name,
            Value=value,
            Type="String",
            Overwrite=False,
            Tags=[{"Key": "jitrunners:prefix", "Value": prefix}],
        )
    except ClientError as exc:
        if error_code(exc) == "ParameterAlreadyExists":
            return False
        raise
    return True


def exists(name: str) -> bool:
    try:
        client("ssm").get_parameter(Name=name)
    except ClientError as exc:
        if error_code(exc) == "ParameterNotFound":
            return False
        raise
    return True


def put(name: str, value: str) -> None:
    """Overwrite an existing record (SSM refuses tags on an overwrite; the claim set them)."""
    client("ssm").put_parameter(Name=name, Value=value, Type="String", Overwrite=True)


def list_markers(path: str) -> Iterator[Marker]:
    """Every record under `path` (recursive, paginated)."""
    pages = client("ssm").get_paginator("get_parameters_by_path")
    for page in pages.paginate(Path=path.rstrip("/"), Recursive=True):
        for item in page.get("Parameters", []):
            modified = item.get("LastModifiedDate") or datetime.now(UTC)
            if modified.tzinfo is None:
                modified = modified.replace(tzinfo=UTC)
            yield Marker(str(item["Name"]), str(item.get("Value", "")), modified)


def remove(name: str) -> bool:
    """Delete a record; False when it was already gone (the same call as any parameter's)."""
    return delete_parameter(name)
