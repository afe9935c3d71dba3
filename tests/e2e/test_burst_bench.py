"""The burst benchmark's own code path on small bursts: its counters are complete and add up.

No timing is asserted: the benchmark reports times, the tests only check what it counts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from bench.burst_bench import FUNCTIONS, run_burst

from tests.support.waits import PATIENCE_S

pytestmark = pytest.mark.e2e


def assert_counts_add_up(result: dict[str, Any], jobs: int) -> None:
    assert result["jobs_completed"] == jobs
    assert result["jobs_launched"] == jobs  # every job had an instance (or a runner took it)
    assert {"all_launched", "all_started", "all_completed"} <= result["seconds"].keys()
    assert not any(result["left"].values()), result["left"]
    assert result["queue_left_by_kind"] == {}
    aws, github = result["aws"], result["github"]
    assert aws["requests"] == sum(s["requests"] for s in aws["by_service"].values())
    assert aws["requests"] == sum(aws["by_operation"].values())
    assert aws["requests"] == sum(aws["by_function"].values())
    assert aws["operations"] == sum(s["operations"] for s in aws["by_service"].values())
    assert aws["retries"] == aws["requests"] - aws["operations"] == result["retries"]["botocore"]
    # The Lambdas' client counted every GitHub call the simulator saw, and nothing else did.
    assert github["requests"] == github["requests_seen_by_simulator"]
    assert github["requests"] == sum(github["by_endpoint"].values())
    assert github["requests"] == sum(github["by_function"].values())
    calls = result["calls_per_job"]
    assert calls["aws"] > 0
    assert calls["github"] > 0
    assert calls["all"] == pytest.approx(calls["aws"] + calls["github"], abs=0.011)
    assert calls["event_driven"] <= calls["all"]
    for key in ("webhook", "scale-up", "scale-down"):
        assert result["functions"][key]["invocations"] > 0, key
        assert calls["by_function"][key] > 0, key
    assert set(result["functions"]) == set(FUNCTIONS)
    # Every queued job's launch message reached scale-up once at least, and a start followed.
    assert result["retries"]["scale_up_records"]["launch"] >= jobs
    assert result["retries"]["scale_up_records"]["start"] >= jobs


def test_a_plain_burst_launches_every_job_and_its_counts_add_up(tmp_path: Path) -> None:
    result = run_burst(20, {}, workdir=tmp_path, job_seconds=0.2, timeout_s=PATIENCE_S)
    assert_counts_add_up(result, 20)
    assert result["retries"]["botocore"] == 0
    assert result["retries"]["github_client_retries"] == 0
    # Only a start may come back: the boot model draws boot times, and an agent that is not
    # online yet at the start's first delivery (the start delay) is asked about again.
    assert set(result["retries"]["sqs_receives_beyond_first"]) <= {"start"}
    assert result["aws"]["by_service"]["ec2"]["answered_by_shims"] == 0


def test_faults_show_up_as_retries_and_every_job_still_completes(tmp_path: Path) -> None:
    faults = {"ec2-capacity": 0.5, "github-5xx": 0.2}
    result = run_burst(12, faults, workdir=tmp_path, job_seconds=0.2, timeout_s=PATIENCE_S, seed=3)
    assert_counts_add_up(result, 12)
    retries = result["retries"]
    assert retries["github_5xx_answered"] > 0
    # Each 5xx answer is retried by the client, or ends a call after its last attempt (a JIT
    # config asked for at launch, ahead of boot, makes one attempt: its start asks again).
    assert 0 <= retries["github_client_retries"] <= retries["github_5xx_answered"]
    # A refused spot fleet is answered in-process (no request), one per refusal.
    assert retries["ec2_capacity_refusals"] > 0
    ec2 = result["aws"]["by_service"]["ec2"]
    assert ec2["answered_by_shims"] == retries["ec2_capacity_refusals"]
    # Refusals on the spot-only template fail records, which SQS hands back.
    if retries["scale_up_record_failures"]:
        assert sum(retries["sqs_receives_beyond_first"].values()) > 0
