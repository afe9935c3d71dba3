"""The local stack's SQS event source and API Gateway obey the kill switch as Lambda and API
Gateway do (the switch's state as the stack reads it from moto: devstack/aws_world.py)."""

from __future__ import annotations

from typing import Any

import boto3
import requests

from devstack.shims import ApiGatewayShim, SqsEventSource


class Handler:
    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        self.batches.append([r["body"] for r in event.get("Records", [])])
        return {"statusCode": 202, "body": "{}", "batchItemFailures": []}


def queue(name: str = "jobs") -> tuple[Any, str]:
    sqs = boto3.client("sqs", region_name="eu-west-1")
    url = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "0"})["QueueUrl"]
    for body in ("a", "b"):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    return sqs, url


def received(sqs: Any, url: str) -> int:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attrs["Attributes"]["ApproximateNumberOfMessages"])


def test_a_disabled_mapping_receives_nothing(aws: None) -> None:
    sqs, url = queue()
    handler = Handler()
    source = SqsEventSource(sqs, url, handler, "eu-west-1", intake=lambda: (False, True))  # type: ignore[arg-type]
    assert source.poll_once() == 0
    assert handler.batches == []
    assert source.counters["paused_polls"] == 1
    assert received(sqs, url) == 2


def test_a_function_at_concurrency_zero_gets_no_batch_but_receives_count(aws: None) -> None:
    sqs, url = queue()
    handler = Handler()
    source = SqsEventSource(sqs, url, handler, "eu-west-1", intake=lambda: (True, False))  # type: ignore[arg-type]
    source.poll_once()
    assert handler.batches == []
    assert source.counters["throttled"] == 2
    message = sqs.receive_message(QueueUrl=url, AttributeNames=["ApproximateReceiveCount"])
    assert message["Messages"][0]["Attributes"]["ApproximateReceiveCount"] == "2"


def test_an_enabled_mapping_delivers_batches(aws: None) -> None:
    sqs, url = queue()
    handler = Handler()
    source = SqsEventSource(sqs, url, handler, "eu-west-1", intake=lambda: (True, True))  # type: ignore[arg-type]
    assert source.poll_once() == 2
    assert sorted(handler.batches[0]) == ["a", "b"]
    assert received(sqs, url) == 0


def test_api_gateway_answers_500_while_the_webhook_is_stopped() -> None:
    handler = Handler()
    stopped = [True]
    shim = ApiGatewayShim(handler, stopped=lambda: stopped[0]).start()  # type: ignore[arg-type]
    try:
        assert requests.post(shim.url, data=b"{}", timeout=30).status_code == 500
        assert handler.batches == []
        stopped[0] = False
        assert requests.post(shim.url, data=b"{}", timeout=30).status_code == 202
        assert shim.statuses["throttled"] == 1
    finally:
        shim.stop()
