"""Fixtures shared by every suite: a clean AWS world in moto, settings, and Lambda contexts."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# No test may reach real AWS: fixed fake credentials and region before boto3 is imported anywhere.
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_SESSION_TOKEN="testing",
    AWS_DEFAULT_REGION="eu-west-1",
    AWS_REGION="eu-west-1",
    POWERTOOLS_METRICS_NAMESPACE="jitrunners-test",
    POWERTOOLS_SERVICE_NAME="jitrunners",
)
os.environ.pop("AWS_ENDPOINT_URL", None)

from devstack import moto_fixes, startup
from tests.support.webhooks import SECRET

# Every test's EC2 backend would otherwise build moto's 1,291 default AMIs (each with a volume
# and a snapshot), seconds per test on a busy machine; tests name an AMI id, which moto does not
# validate. And botocore's model files are parsed once per worker, not once per session.
startup.lighten_moto()
# moto lacks attribute-based instance type selection (sizing); the local stack adds it.
moto_fixes.apply_instance_requirements()
moto_fixes.apply_instance_information()
startup.share_botocore_models()


# Longest first. Under pytest-xdist a worker that draws a minute-long stack test last runs it
# alone while the others are done; run the suites whose tests start the local stack (seconds to a
# minute each, much of it waiting on the stack's timers) first, and let the unit tests
# (milliseconds each) fill the end. A stable sort: within a suite, the files' order.
SUITE_ORDER = ("e2e", "integration", "deploy", "cli", "unit")
_TESTS = Path(__file__).resolve().parent


def _suite_rank(item: pytest.Item) -> int:
    try:
        suite = item.path.resolve().relative_to(_TESTS).parts[0]
    except ValueError:
        return len(SUITE_ORDER)
    return SUITE_ORDER.index(suite) if suite in SUITE_ORDER else len(SUITE_ORDER)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_suite_rank)


TEMPLATES: list[dict[str, Any]] = [
    {
        "name": "linux-x64",
        "labels": ["self-hosted", "linux", "x64", "linux-x64"],
        "launch_template": "jitrunners-linux-x64",
        "instance_types": ["m7i.large", "m6i.large", "m5.large"],
        "market": "spot-then-on-demand",
        "max_runners": 3,
        "runner_group_id": 1,
        "scope": "org",
        "start_timeout_s": 600,
        "idle_timeout_s": 300,
        "max_lifetime_s": 86400,
    },
    {
        "name": "linux-arm64",
        "labels": ["self-hosted", "linux", "arm64", "linux-arm64"],
        "launch_template": "jitrunners-linux-arm64",
        "instance_types": ["m7g.large", "m6g.large"],
        "market": "spot",
        "max_runners": 2,
        "scope": "repo",
    },
]


@dataclass
class LambdaContext:
    function_name: str = "jitrunners-test"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:eu-west-1:123456789012:function:jitrunners-test"
    aws_request_id: str = "req-0001"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


@pytest.fixture
def lambda_context() -> LambdaContext:
    return LambdaContext()


def _reset_process_caches() -> None:
    from jitrunners import config
    from jitrunners.aws import clients

    config.get_settings.cache_clear()
    config._parsed.clear()
    from jitrunners import guardrail
    from jitrunners.lifecycle.provisioning import boundary, headcount
    from jitrunners.lifecycle.recovery import sweep
    from jitrunners.lifecycle.teardown import scale_down

    boundary.reset()
    headcount.reset()
    sweep.reset()
    scale_down.reset()
    guardrail.spot_only_cache.clear()
    clients.reset()
    try:
        from aws_lambda_powertools.utilities import parameters

        parameters.clear_caches()
    except ImportError:  # pragma: no cover
        pass


@pytest.fixture
def aws() -> Iterator[None]:
    """An empty moto AWS world; adapters' cached clients are rebuilt inside it."""
    from moto import mock_aws

    _reset_process_caches()
    with mock_aws():
        yield
    _reset_process_caches()


@pytest.fixture
def job_queue(aws: None) -> str:
    import boto3

    return boto3.client("sqs").create_queue(QueueName="jitrunners-jobs")["QueueUrl"]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, job_queue: str) -> dict[str, str]:
    """A complete local-style configuration; tests override single keys with monkeypatch.setenv."""
    values = {
        "JITRUNNERS_PREFIX": "jitrunners",
        "JOB_QUEUE_URL": job_queue,
        "RUNNER_TEMPLATES": json.dumps(TEMPLATES),
        "WEBHOOK_SECRET": SECRET,
    }
    for key in (
        "RUNNER_TEMPLATES_PARAM",
        "WEBHOOK_SECRET_PARAM",
        "ALLOWED_OWNERS",
        "ALLOWED_REPOS",
        "ALLOW_PUBLIC_REPOS",
        "MAX_BODY_BYTES",
    ):
        monkeypatch.delenv(key, raising=False)
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    _reset_process_caches()
    return values


def drain(queue_url: str) -> list[dict[str, Any]]:
    """Every message now visible in a queue, with attributes (removed from the queue)."""
    import boto3

    sqs = boto3.client("sqs")
    found: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            WaitTimeSeconds=0,
        ).get("Messages", [])
        if not batch:
            return found
        for message in batch:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        found.extend(batch)


@pytest.fixture
def log_lines() -> Iterator[Any]:
    """The JSON log lines our Powertools Logger writes during the test, as a callable."""
    import io

    from jitrunners.observability import logger

    handler = logger.registered_handler
    buffer = io.StringIO()
    previous = handler.setStream(buffer)  # type: ignore[attr-defined]

    def lines() -> list[dict[str, Any]]:
        return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]

    lines.text = buffer.getvalue  # type: ignore[attr-defined]
    yield lines
    handler.setStream(previous)  # type: ignore[attr-defined]
