"""The spot circuit breaker through the local stack: spot interruptions and capacity refusals
open it (state shared by every scale-up and scale-down invocation, in DynamoDB), later launches
go on-demand, and every job still completes with nothing left."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.test_pipeline import assert_clean, run

pytestmark = pytest.mark.e2e


def test_interruptions_and_capacity_refusals_open_the_breaker_and_launches_go_on_demand(
    tmp_path: Path,
) -> None:
    stack, summary = run(
        tmp_path,
        jobs=5,
        seed=31,
        templates=["linux-x64"],  # spot-then-on-demand: the breaker may switch it
        faults={"spot-interrupt": 1.0, "ec2-capacity": 0.2},
        # 3 events: with the seed, two capacity refusals and an interruption open it.
        template_overrides={"spot_breaker_threshold": 3},
    )

    assert_clean(stack, summary)
    text = stack.logged_text()
    assert "spot breaker opened" in text
    assert '"SpotBreakerOpened"' in text
    assert "spot breaker open: launching on-demand" in text
    assert stack.counters["spot_interruptions"] > 0
    # Both kinds of event counted toward it: scale-down's interruptions, scale-up's refusals.
    assert '"kind":"interruption"' in text
    assert '"kind":"capacity"' in text
    assert sum(v for k, v in stack.ec2_faults.counters.items() if "capacity" in k) > 0
    markets = [i["market"] for i in stack.seen_instances.values()]
    assert "on-demand" in markets
