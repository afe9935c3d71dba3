"""EventBridge events as AWS sends them to scale-down (shapes from the EC2 and SSM user guides)."""

from __future__ import annotations

from typing import Any

ACCOUNT = "123456789012"
REGION = "eu-west-1"


def _envelope(
    detail_type: str, source: str, detail: dict[str, Any], resource: str
) -> dict[str, Any]:
    return {
        "version": "0",
        "id": f"evt-{abs(hash((detail_type, repr(detail)))) % 10**12:012d}",
        "detail-type": detail_type,
        "source": source,
        "account": ACCOUNT,
        "time": "2026-11-22T12:00:00Z",
        "region": REGION,
        "resources": [resource],
        "detail": detail,
    }


def _arn(instance_id: str) -> str:
    return f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/{instance_id}"


def command_event(
    instance_id: str,
    command_id: str,
    status: str,
    document: str = "AWS-RunShellScript",
    time: str | None = None,
) -> dict[str, Any]:
    event = _envelope(
        "EC2 Command Invocation Status-change Notification",
        "aws.ssm",
        {
            "command-id": command_id,
            "document-name": document,
            "instance-id": instance_id,
            "requested-date-time": "2026-11-22T11:50:00.000Z",
            "status": status,
        },
        _arn(instance_id),
    )
    if time:
        event["time"] = time
    return event


def spot_event(instance_id: str, time: str | None = None) -> dict[str, Any]:
    event = _envelope(
        "EC2 Spot Instance Interruption Warning",
        "aws.ec2",
        {"instance-id": instance_id, "instance-action": "terminate"},
        _arn(instance_id),
    )
    if time:
        event["time"] = time
    return event


def state_event(instance_id: str, state: str, time: str | None = None) -> dict[str, Any]:
    event = _envelope(
        "EC2 Instance State-change Notification",
        "aws.ec2",
        {"instance-id": instance_id, "state": state},
        _arn(instance_id),
    )
    if time:
        event["time"] = time
    return event


def sqs_batch(*events: dict[str, Any], queue: str = "jitrunners-teardown") -> dict[str, Any]:
    """EventBridge events as the teardown queue's event source mapping hands them to scale-down:
    one SQS record per event, the event as the body (EventBridge's SQS target)."""
    import json

    return {
        "Records": [
            {
                "messageId": f"msg-{index}",
                "receiptHandle": f"rh-{index}",
                "body": event if isinstance(event, str) else json.dumps(event),
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}",
                "awsRegion": REGION,
            }
            for index, event in enumerate(events)
        ]
    }
