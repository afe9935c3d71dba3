"""The CLI's AWS adapter: one AWS concept per function, typed results, clients from the Lambdas'
shared factory (jitrunners.aws.clients: one retry policy, AWS_ENDPOINT_URL honoured)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from jitrunners.aws.clients import client, error_code

MISSING_QUEUE = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})
MISSING = frozenset({"ResourceNotFoundException", "ParameterNotFound", "NotFoundException"})


def _missing(exc: ClientError, codes: Iterable[str] = MISSING) -> bool:
    return error_code(exc) in set(codes)


# ---------------------------------------------------------------------------------------- SQS
@dataclass(frozen=True, slots=True)
class QueueCounts:
    visible: int
    in_flight: int
    delayed: int

    @property
    def total(self) -> int:
        return self.visible + self.in_flight + self.delayed


def queue_url(name: str) -> str | None:
    """The queue's URL, None when there is no queue of that name."""
    try:
        return str(client("sqs").get_queue_url(QueueName=name)["QueueUrl"])
    except ClientError as exc:
        if _missing(exc, MISSING_QUEUE):
            return None
        raise


def queue_counts(url: str) -> QueueCounts:
    attributes = client("sqs").get_queue_attributes(
        QueueUrl=url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return QueueCounts(
        visible=int(attributes.get("ApproximateNumberOfMessages", 0)),
        in_flight=int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
        delayed=int(attributes.get("ApproximateNumberOfMessagesDelayed", 0)),
    )


def queue_arn(url: str) -> str:
    attributes = client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return str(attributes["Attributes"]["QueueArn"])


# -------------------------------------------------------------------------------- CloudWatch
def oldest_message_age_s(queue_names: Sequence[str], now: datetime) -> dict[str, float | None]:
    """ApproximateAgeOfOldestMessage per queue (the newest one-minute maximum of the last ten
    minutes), None where CloudWatch has no data point. SQS itself does not say it."""
    if not queue_names:
        return {}
    queries = [
        {
            "Id": f"q{index}",
            "MetricStat": {
                "Metric": {
                    "Namespace": "AWS/SQS",
                    "MetricName": "ApproximateAgeOfOldestMessage",
                    "Dimensions": [{"Name": "QueueName", "Value": name}],
                },
                "Period": 60,
                "Stat": "Maximum",
            },
        }
        for index, name in enumerate(queue_names)
    ]
    response = client("cloudwatch").get_metric_data(
        MetricDataQueries=queries,
        StartTime=now - timedelta(minutes=10),
        EndTime=now,
        ScanBy="TimestampDescending",
    )
    found: dict[str, float | None] = dict.fromkeys(queue_names)
    for result in response.get("MetricDataResults", []):
        values = result.get("Values") or []
        if values:
            found[queue_names[int(result["Id"][1:])]] = float(values[0])
    return found


@dataclass(frozen=True, slots=True)
class Alarm:
    name: str
    reason: str
    since: datetime | None


def alarms_in_alarm(name_prefix: str) -> list[Alarm]:
    found: list[Alarm] = []
    paginator = client("cloudwatch").get_paginator("describe_alarms")
    for page in paginator.paginate(AlarmNamePrefix=name_prefix, StateValue="ALARM"):
        for alarm in page.get("MetricAlarms", []) + page.get("CompositeAlarms", []):
            found.append(
                Alarm(
                    name=str(alarm["AlarmName"]),
                    reason=str(alarm.get("StateReason", "")),
                    since=alarm.get("StateUpdatedTimestamp"),
                )
            )
    return found


# ------------------------------------------------------------------------------------ Lambda
def function_environment(name: str) -> dict[str, str] | None:
    """The function's environment variables, None when there is no such function."""
    try:
        config = client("lambda").get_function_configuration(FunctionName=name)
    except ClientError as exc:
        if _missing(exc):
            return None
        raise
    return dict((config.get("Environment") or {}).get("Variables") or {})


def reserved_concurrency(name: str) -> int | None:
    """The function's reserved concurrency; None when none is reserved (the account's pool)."""
    response = client("lambda").get_function_concurrency(FunctionName=name)
    value = response.get("ReservedConcurrentExecutions")
    return None if value is None else int(value)


@dataclass(frozen=True, slots=True)
class Mapping:
    uuid: str
    state: str  # Enabled, Disabled, Enabling, Disabling, Creating, Updating, Deleting
    source_arn: str


def event_source_mappings(function_name: str) -> list[Mapping]:
    """The mappings that invoke the function through any version or alias (the module's invokes
    its `live` alias; Lambda's FunctionName filter matches one qualifier exactly)."""
    found: list[Mapping] = []
    paginator = client("lambda").get_paginator("list_event_source_mappings")
    for page in paginator.paginate():
        for data in page.get("EventSourceMappings", []):
            if str(data.get("FunctionArn", "")).split(":")[6:7] != [function_name]:
                continue
            found.append(
                Mapping(
                    uuid=str(data["UUID"]),
                    state=str(data.get("State", "")),
                    source_arn=str(data.get("EventSourceArn", "")),
                )
            )
    return found


# ---------------------------------------------------------------------------------------- SSM
def parameter(name: str, *, decrypt: bool = False) -> str | None:
    """A parameter's value, None when it does not exist. A decrypted value is a secret: never
    print or log it."""
    try:
        response = client("ssm").get_parameter(Name=name, WithDecryption=decrypt)
    except ClientError as exc:
        if _missing(exc):
            return None
        raise
    return str(response["Parameter"]["Value"])


def parameter_key_id(name: str) -> str | None:
    """The KMS key a SecureString parameter is encrypted with (None: missing or not secure)."""
    response = client("ssm").describe_parameters(
        ParameterFilters=[{"Key": "Name", "Option": "Equals", "Values": [name]}]
    )
    for data in response.get("Parameters", []):
        return data.get("KeyId")
    return None


def put_parameter(
    name: str, value: str, *, secure: bool, key_id: str | None = None, tier: str = "Standard"
) -> None:
    """Create or overwrite a parameter (a SecureString with the deployment's key)."""
    request: dict[str, Any] = {
        "Name": name,
        "Value": value,
        "Type": "SecureString" if secure else "String",
        "Overwrite": True,
        "Tier": tier,
    }
    if secure and key_id:
        request["KeyId"] = key_id
    client("ssm").put_parameter(**request)


def parameter_tags(name: str) -> dict[str, str]:
    response = client("ssm").list_tags_for_resource(ResourceType="Parameter", ResourceId=name)
    return {t["Key"]: t["Value"] for t in response.get("TagList", [])}


def tag_parameter(name: str, tags: dict[str, str]) -> None:
    client("ssm").add_tags_to_resource(
        ResourceType="Parameter",
        ResourceId=name,
        Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
    )


def untag_parameter(name: str, keys: Sequence[str]) -> None:
    client("ssm").remove_tags_from_resource(
        ResourceType="Parameter", ResourceId=name, TagKeys=list(keys)
    )


# ------------------------------------------------------------------------------ API Gateway
def api_endpoint(name: str) -> str | None:
    """The default endpoint of the HTTP API of that name, None when there is none."""
    paginator = client("apigatewayv2").get_paginator("get_apis")
    for page in paginator.paginate():
        for api in page.get("Items", []):
            if api.get("Name") == name and api.get("ApiEndpoint"):
                return str(api["ApiEndpoint"]).rstrip("/")
    return None


# --------------------------------------------------------------------------- CloudWatch Logs
@dataclass(frozen=True, slots=True)
class LogLine:
    timestamp: datetime
    group: str
    message: str


def latest_log_lines(group: str, *, streams: int = 3, limit: int = 500) -> list[LogLine]:
    """The last lines of a log group's most recent streams, oldest first ([] when no group)."""
    logs = client("logs")
    try:
        described = logs.describe_log_streams(
            logGroupName=group, orderBy="LastEventTime", descending=True, limit=streams
        )
    except ClientError as exc:
        if _missing(exc):
            return []
        raise
    lines: list[LogLine] = []
    for stream in described.get("logStreams", []):
        events = logs.get_log_events(
            logGroupName=group,
            logStreamName=stream["logStreamName"],
            startFromHead=False,
            limit=limit,
        ).get("events", [])
        lines.extend(
            LogLine(_from_ms(e["timestamp"]), group, str(e.get("message", ""))) for e in events
        )
    return sorted(lines, key=lambda line: line.timestamp)


def existing_log_groups(names: Sequence[str]) -> list[str]:
    """Those of `names` that exist (a Logs Insights query fails on a missing group)."""
    logs = client("logs")
    found: list[str] = []
    for name in names:
        response = logs.describe_log_groups(logGroupNamePrefix=name)
        if any(g.get("logGroupName") == name for g in response.get("logGroups", [])):
            found.append(name)
    return found


QUERY_DONE = frozenset({"Complete", "Failed", "Cancelled", "Timeout", "Unknown"})


def run_query(
    groups: Sequence[str],
    query: str,
    start: datetime,
    end: datetime,
    *,
    sleep: Callable[[float], None] = time.sleep,
    timeout_s: float = 120.0,
) -> list[dict[str, str]]:
    """Run a Logs Insights query to completion; each result row as field -> value."""
    logs = client("logs")
    query_id = logs.start_query(
        logGroupNames=list(groups),
        startTime=int(start.timestamp()),
        endTime=int(end.timestamp()) + 1,
        queryString=query,
    )["queryId"]
    waited = 0.0
    while True:
        response = logs.get_query_results(queryId=query_id)
        status = str(response.get("status", ""))
        if status in QUERY_DONE:
            break
        if waited >= timeout_s:
            logs.stop_query(queryId=query_id)
            raise TimeoutError(f"the Logs Insights query did not finish within {timeout_s:.0f} s")
        sleep(1.0)
        waited += 1.0
    if status != "Complete":
        raise RuntimeError(f"the Logs Insights query ended {status}")
    return [
        {str(f.get("field")): str(f.get("value", "")) for f in row}
        for row in response.get("results", [])
    ]


def _from_ms(value: int | float | str) -> datetime:
    return datetime.fromtimestamp(float(value) / 1000, UTC)


def insights_time(value: str) -> datetime | None:
    """A Logs Insights @timestamp ('2024-05-01 12:34:56.789', UTC) or epoch milliseconds."""
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return _from_ms(int(text))
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# ---------------------------------------------------------------------------------------- EC2
def instance_launch(instance_id: str) -> tuple[datetime | None, str] | None:
    """An instance's launch time and state as EC2 lists it now, None when EC2 no longer does."""
    response = client("ec2").describe_instances(
        Filters=[{"Name": "instance-id", "Values": [instance_id]}]
    )
    for reservation in response.get("Reservations", []):
        for data in reservation.get("Instances", []):
            return data.get("LaunchTime"), str(data.get("State", {}).get("Name", ""))
    return None
