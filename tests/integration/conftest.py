"""Fixtures the integration tests share: an emulated clock, the fake GitHub, EC2 without waits,
and the housekeeper and scale-down handlers with both injected."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support import world
from tests.support.world import Clock, FakeGitHub


@pytest.fixture
def fast_ec2(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's EC2 without the adapters' real-time waits (`pytestmark = usefixtures(...)`)."""
    world.fast_ec2(monkeypatch)


@pytest.fixture
def tag_writes() -> Iterator[list[dict[str, Any]]]:
    """Every CreateTags call the Lambda code makes from here on (one per API call, retries not
    counted: botocore's before-parameter-build fires once per call)."""
    from jitrunners.aws.clients import client

    writes: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        writes.append(params)

    events = client("ec2").meta.events
    events.register("before-parameter-build.ec2.CreateTags", record)
    yield writes
    events.unregister("before-parameter-build.ec2.CreateTags", record)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def github() -> FakeGitHub:
    return FakeGitHub()


@pytest.fixture
def run_housekeeper(
    env: dict[str, str],
    github: FakeGitHub,
    clock: Clock,
    lambda_context: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[[], dict[str, Any]]:
    """Invoke the housekeeper handler with the fake GitHub and the clock injected."""
    from jitrunners.config import get_settings, load_templates
    from jitrunners.handlers import housekeeper
    from jitrunners.lifecycle.cleanup import Context

    def context(*, dry_run: bool = False, waiting: bool = True) -> Context:
        assert not waiting, "a sweep never sleeps through a GitHub rate limit"
        settings = get_settings()
        return Context.build(settings, load_templates(settings), github, clock, dry_run=dry_run)

    monkeypatch.setattr(housekeeper, "lifecycle_context", context)
    return lambda: housekeeper.handler(
        {"id": "evt-hk", "detail-type": "Scheduled Event"}, lambda_context
    )


@pytest.fixture
def scale_down_event(
    env: dict[str, str],
    github: FakeGitHub,
    clock: Clock,
    lambda_context: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[[dict[str, Any]], str]]:
    """Invoke the scale-down handler on a batch of one event (an SQS record, as the teardown
    queue delivers it), the fake GitHub and the clock injected; returns the outcome the handler
    logged, or "retry" when the record came back as a batch item failure."""
    import logging

    from jitrunners.config import get_settings, load_templates
    from jitrunners.handlers import scale_down
    from jitrunners.lifecycle.cleanup import Context
    from jitrunners.observability import logger
    from tests.support.events import sqs_batch

    def context() -> Context:
        settings = get_settings()
        return Context.build(settings, load_templates(settings), github, clock)

    outcomes: list[str] = []

    class Outcomes(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage() in ("event handled", "malformed event dropped"):
                outcomes.append(record.outcome)  # type: ignore[attr-defined]

    capture = Outcomes()
    stdlib = logging.getLogger(logger.name)  # the standard logger under Powertools'
    stdlib.addHandler(capture)

    def call(event: dict[str, Any]) -> str:
        outcomes.clear()
        response = scale_down.handler(sqs_batch(event), lambda_context)
        if response["batchItemFailures"]:
            return "retry"
        assert len(outcomes) == 1, outcomes
        return outcomes[0]

    monkeypatch.setattr(scale_down, "lifecycle_context", context)
    yield call
    stdlib.removeHandler(capture)
