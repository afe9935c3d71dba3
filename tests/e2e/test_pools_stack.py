"""Warm pools through the local stack (`--pool`): filled before the jobs, they serve jobs by the hot
and stopped paths, and once drained nothing is left."""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack.__main__ import parse_pool_arg
from devstack.stack import LEFT_KEYS, Options, Stack, latency_stats
from tests.e2e.test_pipeline import assert_clean, run
from tests.support.waits import PATIENCE_S

pytestmark = pytest.mark.e2e


def test_pool_flags_parse_and_bad_ones_are_refused() -> None:
    assert parse_pool_arg("hot=3,stopped=3") == {"hot": 3, "stopped": 3}
    assert parse_pool_arg("stopped=2") == {"stopped": 2}
    assert parse_pool_arg("") is None
    for bad in ("warm=1", "hot", "hot=-1", "hot=x"):
        with pytest.raises(ValueError, match="hot=N"):
            parse_pool_arg(bad)


def test_a_pool_gets_room_in_its_templates_and_reaches_the_lambdas_parameter(
    tmp_path: Path,
) -> None:
    """The run's templates (only) get the pool; max_runners grows to hold it, a spot-only
    template may launch its stopped members on-demand, and a repository template registers its
    hot runners with the organization, as the Lambdas require."""
    stack = Stack(
        Options(
            templates=["linux-x64", "linux-arm64"], pool={"hot": 2, "stopped": 3}, workdir=tmp_path
        ),
        out=(tmp_path / "progress.txt").open("w"),
    )
    by_name = {t["name"]: t for t in stack.world.tf_templates}
    assert by_name["linux-x64"]["max_runners"] == 8  # was 3: 5 members beside the 3
    assert by_name["linux-arm64"]["market"] == "spot-then-on-demand"  # was spot
    assert by_name["linux-arm64"]["scope"] == "org"  # was repo
    assert by_name["linux-x64-large"]["max_runners"] == 2  # not a template of the run
    assert by_name["linux-x64-large"]["market"] == "spot"


def test_latency_stats_are_ranks_of_the_samples() -> None:
    assert latency_stats([]) == {"n": 0, "p50": None, "p95": None, "max": None}
    stats = latency_stats([float(n) for n in reversed(range(21))])
    assert stats == {"n": 21, "p50": 10.0, "p95": 19.0, "max": 20.0}
    assert latency_stats([1.0, 2.0])["p50"] == 1.5  # between two ranks


def test_left_keys_include_the_pool() -> None:
    assert "pool_left" in LEFT_KEYS


def _pooled_run(tmp_path: Path, pool: dict[str, int]) -> tuple[Stack, dict[str, object]]:
    """One job on a template with `pool`, filled before the job is queued, drained after;
    nothing may be left (instances, parameters, runners, messages, pool members)."""
    stack, summary = run(tmp_path, jobs=1, templates=["linux-x64"], pool=pool)
    assert_clean(stack, summary)
    assert summary["pool_left"] == 0, stack.progress.lines
    members = [s for s in stack.seen_instances.values() if s.get("pool")]
    assert members, stack.progress.lines
    assert {s["state"] for s in members} == {"terminated"}  # and the watcher saw each end
    return stack, summary


def test_a_job_goes_to_the_idle_hot_runner_and_the_drained_pool_leaves_nothing(
    tmp_path: Path,
) -> None:
    """The hot member's runner is connected and idle before the job is queued: GitHub hands
    it the job (its name says `hot`), and no instance is launched cold for it."""
    stack, summary = _pooled_run(tmp_path, {"hot": 1})
    paths = summary["queue_to_runner_s"]
    assert paths["hot"]["n"] == 1, (paths, stack.progress.lines)  # type: ignore[index]
    assert paths["cold"]["n"] == 0, (paths, stack.progress.lines)  # type: ignore[index]


def test_a_job_starts_the_stopped_member_and_the_drained_pool_leaves_nothing(
    tmp_path: Path,
) -> None:
    """The stopped member was booted, made ready and stopped before the job; the job's launch
    claims and starts it (the agent shim saw the stop and the start), and its runner (named
    `stopped`) runs the job."""
    stack, summary = _pooled_run(tmp_path, {"stopped": 1})
    paths = summary["queue_to_runner_s"]
    assert paths["stopped"]["n"] == 1, (paths, stack.progress.lines)  # type: ignore[index]
    assert stack.agent is not None
    assert stack.agent.counters["stops"] >= 1
    assert stack.agent.counters["starts"] >= 1


def test_a_hot_member_spot_reclaims_before_any_job_is_replaced_and_the_job_still_runs_hot(
    tmp_path: Path,
) -> None:
    """EC2 reclaims a free hot member (warning event, instance terminated with the spot state
    reason): scale-down ends it and asks for a refill, the pool is full again before the job,
    and the job runs on a hot member."""
    settings: dict[str, object] = {
        "jobs": 1,
        "templates": ["linux-x64"],
        "pool": {"hot": 2},
        "job_seconds": 0.3,
        "redrive_every_s": 2.0,
        "housekeeper_every_s": 3.0,
        "visibility_timeout_s": 2,
        "max_receive_count": 4,
        "workdir": tmp_path,
        "timeout_s": PATIENCE_S,
    }
    stack = Stack(Options(**settings), out=(tmp_path / "progress.txt").open("w"))  # type: ignore[arg-type]
    try:
        stack.start()
        assert stack.wait_pools(), stack.progress.lines
        first = {iid for iid, seen in stack.seen_instances.items() if seen.get("pool") == "hot"}
        reclaimed = sorted(first)[0]
        stack._interrupt(reclaimed)
        assert stack.wait_pools(), stack.progress.lines  # refilled: two ready again
        summary = stack.run_demo()
    finally:
        stack.stop()
    assert_clean(stack, summary)
    assert summary["pool_left"] == 0, stack.progress.lines
    assert stack.seen_instances[reclaimed]["state"] == "terminated"
    members = {iid for iid, seen in stack.seen_instances.items() if seen.get("pool") == "hot"}
    assert len(members - first) >= 1, stack.progress.lines  # the replacement
    assert summary["queue_to_runner_s"]["hot"]["n"] == 1, stack.progress.lines  # type: ignore[index]
