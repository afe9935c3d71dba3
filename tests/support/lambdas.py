"""The module's Lambda functions in moto (versions, `live` aliases, the job queue's mapping), and a
poller that plays Lambda's SQS event source the way AWS runs it.

Moto stores functions, versions, aliases, reserved concurrency and event source mappings, but never
runs a function by itself except in one place: SendMessage to a queue with an enabled mapping
invokes the function right away (in Docker) inside the send. AWS polls instead, and honours the
mapping's state and the function's reserved concurrency. So the mapping is kept out of moto's
queue (`unhook_sqs_push`) and `EventSourcePoller` polls as AWS does.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

ACCOUNT = "123456789012"
REGION = "eu-west-1"
PREFIX = "jitrunners"
ALIAS = "live"
KEYS = ("webhook", "scale-up", "scale-down", "redrive", "housekeeper", "budget-guard")
# What terraform/main.tf reserves by default (webhook_reserved_concurrency, scale-up's maximum).
RESERVED = {"webhook": 50, "scale-up": 5}


def code_zip(marker: str) -> bytes:
    """A deployment package whose bytes differ per marker (new code -> a new version)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("jitrunners/__init__.py", f"# build {marker}\n")
    return buffer.getvalue()


def name(key: str, prefix: str = PREFIX) -> str:
    return f"{prefix}-{key}"


@dataclass
class Deployment:
    """What `terraform apply` leaves: functions published once, each alias on that version."""

    prefix: str = PREFIX
    keys: tuple[str, ...] = KEYS
    mapping_uuid: str = ""
    queue_arn: str = ""

    @property
    def lam(self) -> Any:
        return boto3.client("lambda", region_name=REGION)

    def create(self, *, queue_url: str | None = None, kill_switch: bool = False) -> Deployment:
        role = boto3.client("iam").create_role(
            RoleName=f"{self.prefix}-lambda", AssumeRolePolicyDocument="{}"
        )["Role"]["Arn"]
        for key in self.keys:
            self.lam.create_function(
                FunctionName=name(key, self.prefix),
                Runtime="python3.12",
                Role=role,
                Handler=f"jitrunners.handlers.{key.replace('-', '_')}.handler",
                Code={"ZipFile": code_zip("1")},
                Publish=True,
                Tags={"jitrunners:prefix": self.prefix},
            )
            self.lam.create_alias(
                FunctionName=name(key, self.prefix), Name=ALIAS, FunctionVersion="1"
            )
        for key, value in RESERVED.items():
            if key in self.keys:
                self.lam.put_function_concurrency(
                    FunctionName=name(key, self.prefix), ReservedConcurrentExecutions=value
                )
        boto3.client("ssm").put_parameter(
            Name=f"/{self.prefix}/config/kill-switch",
            Type="String",
            Value=json.dumps({"kill_switch": kill_switch, "reserved_concurrency": RESERVED}),
        )
        if queue_url is not None and "scale-up" in self.keys:
            self.queue_arn = boto3.client("sqs").get_queue_attributes(
                QueueUrl=queue_url, AttributeNames=["QueueArn"]
            )["Attributes"]["QueueArn"]
            alias_arn = self.lam.get_alias(FunctionName=name("scale-up", self.prefix), Name=ALIAS)[
                "AliasArn"
            ]
            mapping = self.lam.create_event_source_mapping(
                EventSourceArn=self.queue_arn,
                FunctionName=alias_arn,
                BatchSize=10,
                FunctionResponseTypes=["ReportBatchItemFailures"],
                Tags={"jitrunners:prefix": self.prefix},
            )
            self.mapping_uuid = mapping["UUID"]
            unhook_sqs_push()
        return self

    def new_code(self, key: str, marker: str, *, publish: bool) -> str | None:
        """What `terraform apply` of a new zip does ($LATEST updated, and published when the
        module publishes); the alias does not move. Returns the new version when published."""
        answer = self.lam.update_function_code(
            FunctionName=name(key, self.prefix), ZipFile=code_zip(marker), Publish=publish
        )
        return str(answer["Version"]) if publish else None

    def alias(self, key: str) -> dict[str, Any]:
        return self.lam.get_alias(FunctionName=name(key, self.prefix), Name=ALIAS)

    def concurrency(self, key: str) -> int | None:
        found = self.lam.get_function_concurrency(FunctionName=name(key, self.prefix))
        return found.get("ReservedConcurrentExecutions")

    def mapping_state(self) -> str:
        return str(self.lam.get_event_source_mapping(UUID=self.mapping_uuid)["State"])


def unhook_sqs_push() -> None:
    """Keep moto from invoking a mapping's function inside SendMessage (see the module doc)."""
    from moto.sqs.models import sqs_backends

    for queue in sqs_backends[ACCOUNT][REGION].queues.values():
        queue.lambda_event_source_mappings.clear()


@dataclass
class EventSourcePoller:
    """Lambda's SQS poller for one mapping: nothing while the mapping is disabled; receives that
    end throttled (the messages stay, their receive count grows) while the function has reserved
    concurrency 0; otherwise batches to the handler, deleting what it did not report failed."""

    deployment: Deployment
    queue_url: str
    handler: Callable[[dict[str, Any], Any], dict[str, Any]]
    context: Any
    receives: int = 0
    throttled: int = 0
    invocations: list[dict[str, Any]] = field(default_factory=list)

    def poll_once(self) -> int:
        """One poll; returns how many messages the function processed."""
        if self.deployment.mapping_state() != "Enabled":
            return 0
        sqs = boto3.client("sqs", region_name=REGION)
        batch = sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=10,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        self.receives += len(batch)
        if not batch:
            return 0
        if self.deployment.concurrency("scale-up") == 0:
            self.throttled += len(batch)
            return 0  # the poller backs off; the messages come back after their visibility
        records = [self._record(m) for m in batch]
        response = self.handler({"Records": records}, self.context)
        self.invocations.append(response)
        failed = {item["itemIdentifier"] for item in response.get("batchItemFailures", [])}
        for message in batch:
            if message["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return len(batch) - len(failed)

    def _record(self, message: dict[str, Any]) -> dict[str, Any]:
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": message.get("Attributes", {}),
            "messageAttributes": message.get("MessageAttributes", {}),
            "md5OfBody": message.get("MD5OfBody", ""),
            "eventSource": "aws:sqs",
            "eventSourceARN": self.deployment.queue_arn,
            "awsRegion": REGION,
        }


def queue_depth(queue_url: str) -> dict[str, int]:
    """Visible and in-flight messages, as SQS counts them."""
    found = boto3.client("sqs", region_name=REGION).get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return {
        "visible": int(found["ApproximateNumberOfMessages"]),
        "in_flight": int(found["ApproximateNumberOfMessagesNotVisible"]),
    }


def sns_event(message: str, *, subject: str, topic: str = f"{PREFIX}-budget") -> dict[str, Any]:
    """The event Lambda receives from an SNS subscription (one record)."""
    topic_arn = f"arn:aws:sns:{REGION}:{ACCOUNT}:{topic}"
    return {
        "Records": [
            {
                "EventSource": "aws:sns",
                "EventVersion": "1.0",
                "EventSubscriptionArn": f"{topic_arn}:3f1c9d2e-5b7a-4e08-9c61-2d4f8a0b7e55",
                "Sns": {
                    "Type": "Notification",
                    "MessageId": "8d2f5c61-0b3e-5a47-9e12-7c4b1a9d3f08",
                    "TopicArn": topic_arn,
                    "Subject": subject,
                    "Message": message,
                    "Timestamp": "2026-03-05T01:01:38.638Z",
                    "SignatureVersion": "1",
                    "Signature": "EXAMPLE",
                    "SigningCertUrl": "https://sns.eu-west-1.amazonaws.com/cert.pem",
                    "UnsubscribeUrl": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe",
                    "MessageAttributes": {},
                },
            }
        ]
    }


def budget_message(
    *,
    budget: str = f"{PREFIX}-monthly",
    alert_type: str = "ACTUAL",
    amount: str = "$1,234.56",
    threshold: str = "> $1,000.00",
    budgeted: str = "$1,000.00",
    daily: bool = False,
) -> tuple[str, str]:
    """(subject, message) of an AWS Budgets notification as Budgets publishes it to SNS: plain
    text, a letter then one `Field: value` line per field (README "Budget guardrail"). The
    wording follows a captured notification of a daily budget; a monthly one's letter is assumed
    to differ in its period words only, which the guard does not read."""
    period = "per day. Yesterday," if daily else "for the current month. Now,"
    message = (
        "AWS Budget Notification March 05, 2026\n"
        f"AWS Account {ACCOUNT}\n\n"
        "Dear AWS Customer,\n\n"
        f"You requested that we alert you when the {alert_type} Cost associated with your"
        f" {budget} budget is greater than {threshold.lstrip('> ')} {period} the {alert_type}"
        f" Cost associated with this budget is {amount}. You can find additional details below"
        " and by accessing the AWS Budgets dashboard [1].\n\n"
        f"Budget Name: {budget}\n"
        "Budget Type: Cost\n"
        f"Budgeted Amount: {budgeted}\n"
        f"Alert Type: {alert_type}\n"
        f"Alert Threshold: {threshold}\n"
        f"{alert_type} Amount: {amount}\n\n"
        "[1] https://console.aws.amazon.com/billing/home#/budgets\n"
    )
    return f"AWS Budgets: {budget} has exceeded your alert threshold", message


def put_lambda_metric(
    key: str, metric: str, version: str, value: float, prefix: str = PREFIX
) -> None:
    """What Lambda publishes for one version invoked through the alias (moto accepts AWS/
    namespaces in PutMetricData; AWS does not: there Lambda itself publishes them)."""
    function = name(key, prefix)
    boto3.client("cloudwatch").put_metric_data(
        Namespace="AWS/Lambda",
        MetricData=[
            {
                "MetricName": metric,
                "Dimensions": [
                    {"Name": "FunctionName", "Value": function},
                    {"Name": "Resource", "Value": f"{function}:{ALIAS}"},
                    {"Name": "ExecutedVersion", "Value": version},
                ],
                "Value": value,
                "Unit": "Count",
            }
        ],
    )


def put_own_metric(key: str, metric: str, version: str, value: float, prefix: str = PREFIX) -> None:
    """One of our failure metrics per version, as EMF makes CloudWatch store it."""
    boto3.client("cloudwatch").put_metric_data(
        Namespace=prefix,
        MetricData=[
            {
                "MetricName": metric,
                "Dimensions": [
                    {"Name": "service", "Value": prefix},
                    {"Name": "function", "Value": name(key, prefix)},
                    {"Name": "version", "Value": version},
                ],
                "Value": value,
                "Unit": "Count",
            }
        ],
    )


def weights(alias: dict[str, Any]) -> dict[str, float]:
    return dict((alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {})


@pytest.fixture
def lambda_logging_restored(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The CLI quiets the Lambdas' logger and metrics for its process (in-process here): put
    them back after the test."""
    import os

    from jitrunners.observability import logger

    monkeypatch.setenv(
        "POWERTOOLS_METRICS_DISABLED", os.environ.get("POWERTOOLS_METRICS_DISABLED", "false")
    )
    handler = logger.registered_handler
    stream, level = handler.stream, logger.log_level  # type: ignore[attr-defined]
    yield
    handler.setStream(stream)  # type: ignore[attr-defined]
    logger.setLevel(level)
