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
        # A job per scale-up invocation, so a launch call per job: the capacity fault's rolls
        # (seed 31: refused, refused, then granted) then fall on the first three jobs' launches
        # whatever the thread timing; the third one's spot instance is interrupted (every job,
        # once). Batched, one refusal could turn a whole batch on-demand: 2 events, not 3.
        scale_up_batch_size=1,
        # 3 events open it: 2 refusals and an interruption in the first wave.
        template_overrides={"spot_breaker_threshold": 3},
        # Queued once the first wave is done and the breaker open: their launches find it so.
        # (The event that opens it may be an interruption recorded after the first wave's jobs
        # finished.)
        later_jobs=2,
        later_after_log="spot breaker opened",
    )

    assert_clean(stack, summary)
    assert summary["jobs"] == 7
    text = stack.logged_text()
    assert "spot breaker opened" in text
    assert '"SpotBreakerOpened"' in text
    assert "spot breaker open: launching on-demand" in text
    later = {job.id for job in stack.sim.jobs.values() if "-later-" in job.name}
    assert len(later) == 2
    later_markets = {
        stack.seen_instances[iid]["market"]
        for iid, job_id in stack.launched_for.items()
        if job_id in later
    }
    assert later_markets == {"on-demand"}, later_markets
    assert stack.counters["spot_interruptions"] > 0
    # Both kinds of event counted toward it: scale-down's interruptions, scale-up's refusals.
    assert '"kind":"interruption"' in text
    assert '"kind":"capacity"' in text
    assert sum(v for k, v in stack.ec2_faults.counters.items() if "capacity" in k) > 0
    markets = [i["market"] for i in stack.seen_instances.values()]
    assert "on-demand" in markets
