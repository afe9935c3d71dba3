"""SSM adapter: JIT config SecureStrings and the RunCommand that starts a runner."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from botocore.exceptions import ClientError

from jitrunners.aws.clients import client, error_code

# RunCommand invocation statuses after which nothing more runs on the instance. "Cancelling" and
# "InProgress" are not terminal: the runner may still be working.
TERMINAL_COMMAND_STATUSES: Final = frozenset(
    {"Success", "Failed", "TimedOut", "Cancelled", "Undeliverable", "Terminated"}
)
# The runner script exited by itself: the runner ran its job, idled out or could not start. Not
# an end imposed from outside (a timeout, a cancel, or the instance going under it).
RUNNER_EXITED_STATUSES: Final = frozenset({"Success", "Failed"})

TAG_PREFIX = "jitrunners:prefix"
TAG_INSTANCE_ARN = "jitrunners:instance-arn"
COMMENT_MAX = 100
# The documents the start step sends (Linux, Windows).
RUNNER_DOCUMENTS = frozenset({"AWS-RunShellScript", "AWS-RunPowerShellScript"})
# SendCommand's delivery timeout bounds (seconds).
DELIVERY_TIMEOUT_MIN_S = 30
DELIVERY_TIMEOUT_MAX_S = 2_592_000


class AgentNotReady(RuntimeError):
    """The instance's SSM agent is not registered yet (SendCommand: InvalidInstanceId)."""


@dataclass(frozen=True, slots=True)
class ParamInfo:
    name: str
    last_modified: datetime | None


def _prefix_of(name: str) -> str:
    # "/<prefix>/jit/<instance-id>" -> "<prefix>"
    return name.strip("/").split("/", 1)[0]


def put_jit_config(name: str, value: str, instance_arn: str, kms_key_id: str = "") -> bool:
    """Store a JIT config; False when the parameter already exists (it is never overwritten).

    The instance-ARN tag is what the runner role's policy matches, so each instance can read only
    its own parameter.
    """
    request = {
        "Name": name,
        "Value": value,
        "Type": "SecureString",
        "Tier": "Standard",
        "Tags": [
            {"Key": TAG_PREFIX, "Value": _prefix_of(name)},
            {"Key": TAG_INSTANCE_ARN, "Value": instance_arn},
        ],
    }
    if kms_key_id:
        request["KeyId"] = kms_key_id
    try:
        client("ssm").put_parameter(**request)
    except ClientError as exc:
        if error_code(exc) == "ParameterAlreadyExists":
            return False
        raise
    return True


def parameter_exists(name: str) -> bool:
    """Whether a parameter exists, without reading (or being allowed to read) its value."""
    response = client("ssm").describe_parameters(
        ParameterFilters=[{"Key": "Name", "Option": "Equals", "Values": [name]}]
    )
    return bool(response.get("Parameters"))


def delete_parameter(name: str) -> bool:
    """Delete a parameter; False when it was already gone."""
    try:
        client("ssm").delete_parameter(Name=name)
    except ClientError as exc:
        if error_code(exc) == "ParameterNotFound":
            return False
        raise
    return True


DESCRIBE_PAGE: Final = 50
# DeleteParameters takes at most 10 names per call.
DELETE_CHUNK: Final = 10


def delete_parameters(names: Sequence[str]) -> set[str]:
    """Delete up to 10 parameters in one call (DeleteParameters); returns the names that existed
    and were deleted. Names SSM does not know are skipped, not an error. Raises the client's
    error when the call fails (throttled, denied): then nothing is deleted."""
    if len(names) > DELETE_CHUNK:
        raise ValueError(f"DeleteParameters takes at most {DELETE_CHUNK} names")
    response = client("ssm").delete_parameters(Names=list(names))
    return {str(name) for name in response.get("DeletedParameters", [])}


def list_jit_parameters(prefix: str) -> list[ParamInfo]:
    """Every JIT config parameter under /<prefix>/jit/ (names and ages only, never values)."""
    path = f"/{prefix}/jit"
    found: list[ParamInfo] = []
    paginator = client("ssm").get_paginator("describe_parameters")
    # 50 a page, DescribeParameters' most (its default is 10): a parameter lives as long as its
    # runner, so a pass lists one per live runner.
    for page in paginator.paginate(
        ParameterFilters=[{"Key": "Path", "Option": "OneLevel", "Values": [path]}],
        PaginationConfig={"PageSize": DESCRIBE_PAGE},
    ):
        for data in page.get("Parameters", []):
            found.append(ParamInfo(name=data["Name"], last_modified=data.get("LastModifiedDate")))
    return found


def send_runner_command(
    instance_id: str,
    *,
    param_name: str,
    script_path: str,
    idle_timeout_s: int,
    max_lifetime_s: int,
    start_timeout_s: int,
    comment: str,
    os: str = "linux",
    output_log_group: str = "",
) -> str:
    """Run start-runner on the instance (docs/contracts.md "RunCommand"); returns the command id.

    The command names the parameter, never its value: command parameters are visible in the
    command history and in EventBridge events.
    """
    if os == "windows":
        document = "AWS-RunPowerShellScript"
        line = (
            f"& 'C:\\jitrunners\\start-runner.ps1' -ParameterName {param_name} "
            f"-IdleTimeoutSeconds {idle_timeout_s}"
        )
    else:
        document = "AWS-RunShellScript"
        line = f"{script_path} {param_name} {idle_timeout_s}"
    request = {
        "InstanceIds": [instance_id],
        "DocumentName": document,
        # The document's default executionTimeout is 1 h, which would kill long jobs.
        "Parameters": {"commands": [line], "executionTimeout": [str(max_lifetime_s)]},
        "Comment": comment[:COMMENT_MAX],
        "TimeoutSeconds": max(DELIVERY_TIMEOUT_MIN_S, min(start_timeout_s, DELIVERY_TIMEOUT_MAX_S)),
    }
    if output_log_group:
        request["CloudWatchOutputConfig"] = {
            "CloudWatchLogGroupName": output_log_group,
            "CloudWatchOutputEnabled": True,
        }
    try:
        response = client("ssm").send_command(**request)
    except ClientError as exc:
        if error_code(exc) == "InvalidInstanceId":
            raise AgentNotReady(f"SSM agent on {instance_id} is not online yet") from None
        raise
    return str(response["Command"]["CommandId"])


def find_runner_command(instance_id: str, comment_prefix: str) -> str | None:
    """The id of a runner command already sent to the instance (ours: a runner document and our
    comment), or None. A fresh instance has a handful of commands at most: one page is enough."""
    wanted = comment_prefix[:COMMENT_MAX]  # send_runner_command cuts the comment there
    response = client("ssm").list_commands(InstanceId=instance_id)
    for command in response.get("Commands", []):
        if command.get("DocumentName") in RUNNER_DOCUMENTS and str(
            command.get("Comment", "")
        ).startswith(wanted):
            return str(command["CommandId"])
    return None


@dataclass(frozen=True, slots=True)
class CommandInvocation:
    """A RunCommand invocation as GetCommandInvocation reports it."""

    status: str
    ended_at: datetime | None  # None while it runs, or when SSM gives no (readable) end time


def get_command_invocation(command_id: str, instance_id: str) -> CommandInvocation | None:
    """The invocation's status and end time, None if SSM does not know it."""
    try:
        response = client("ssm").get_command_invocation(
            CommandId=command_id, InstanceId=instance_id
        )
    except ClientError as exc:
        if error_code(exc) in ("InvocationDoesNotExist", "InvalidCommandId"):
            return None
        raise
    status = str(response.get("Status") or "")
    if not status:
        return None
    return CommandInvocation(status, _iso_time(response.get("ExecutionEndDateTime")))


def _iso_time(value: object) -> datetime | None:
    """SSM's ExecutionEndDateTime: ISO 8601 text ("2026-12-01T09:30:00.123Z"), "" while the
    command runs; a timestamp where a client parses it."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(str(value or ""))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def get_command_status(command_id: str, instance_id: str) -> str | None:
    """The invocation's status (Pending, InProgress, Success, Failed, ...), None if unknown."""
    invocation = get_command_invocation(command_id, instance_id)
    return None if invocation is None else invocation.status


def agents_online(instance_ids: Sequence[str]) -> set[str]:
    """Those of `instance_ids` whose SSM agent is online now (one DescribeInstanceInformation per
    50 ids, the most its InstanceIds filter takes)."""
    online: set[str] = set()
    ids = list(dict.fromkeys(instance_ids))
    for start in range(0, len(ids), 50):
        chunk = ids[start : start + 50]
        response = client("ssm").describe_instance_information(
            Filters=[{"Key": "InstanceIds", "Values": chunk}], MaxResults=50
        )
        for info in response.get("InstanceInformationList", []):
            if info.get("PingStatus") == "Online":
                online.add(str(info.get("InstanceId")))
    return online
