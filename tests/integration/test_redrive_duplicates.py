"""A redrive that dies between send and delete duplicates a message; scale-up makes it harmless."""

# The `world` fixture is imported from tests.support; pytest injects it by parameter name.
# ruff: noqa: F811

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from jitrunners.aws import inbox
from jitrunners.handlers import redrive as redrive_handler
from jitrunners.handlers import scale_up
from jitrunners.models import JobMessage
from tests.conftest import drain
from tests.support.scale_up import (
    World,
    failed_ids,
    job_status,
    launch_message,
    sqs_event,
    world,  # noqa: F401 - fixture
)


class _Killed(Exception):
    pass


def test_duplicate_from_a_crashed_redrive_launches_one_instance(
    world: World, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sqs = boto3.client("sqs")  # not the adapters' client: the world fakes its visibility calls
    dlq = sqs.create_queue(QueueName="jitrunners-dlq")["QueueUrl"]
    monkeypatch.setenv("DLQ_URL", dlq)
    from jitrunners import config

    config.get_settings.cache_clear()  # not _reset_process_caches(): keep the world's hooks
    job_status(world, 7)
    # Queued just now: the redrive handler reads the real clock, and the payload's fixed
    # created_at would be past GitHub's 24 h queue lifetime a day after it was written.
    message = replace(launch_message(7), queued_at=datetime.now(UTC).isoformat())
    sqs.send_message(QueueUrl=dlq, MessageBody=message.to_json())

    receipts: list[str] = []

    def killed(queue_url: str, receipt_handle: str) -> None:
        receipts.append(receipt_handle)
        raise _Killed("the Lambda died between send and delete")

    with monkeypatch.context() as patch:
        patch.setattr(inbox, "delete", killed)
        with pytest.raises(_Killed):
            redrive_handler.handler({"id": "evt-1"}, lambda_context)
    # The visibility timeout runs out (here: at once) and the next scheduled run redrives again.
    sqs.change_message_visibility(QueueUrl=dlq, ReceiptHandle=receipts[0], VisibilityTimeout=0)
    assert redrive_handler.handler({"id": "evt-2"}, lambda_context)["moved"] == 1

    copies = [JobMessage.from_json(m["Body"]) for m in drain(world.queue_url)]
    assert [(m.job_id, m.redrives) for m in copies] == [(7, 1), (7, 1)]
    assert drain(dlq) == []

    # Both copies reach scale-up, in one batch or in two: one instance, one start.
    assert failed_ids(scale_up.handler(sqs_event(copies[0]), lambda_context)) == []
    assert failed_ids(scale_up.handler(sqs_event(copies[1]), lambda_context)) == []
    assert failed_ids(scale_up.handler(sqs_event(*copies), lambda_context)) == []
    assert len(world.instances()) == 1
    assert len(world.starts()) == 1
