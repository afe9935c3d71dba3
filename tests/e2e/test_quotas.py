"""The providers' quotas in the local stack (devstack/quotas.py): AWS answers past a bucket with
its real throttling error, which botocore retries as a throttle; the GitHub simulator answers
past a limit as GitHub does, which the Lambdas' client reads; a burst under binding quotas loses
no job and no limit admits more than it may."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from devstack.github_sim import GitHubSim
from devstack.quotas import (
    AWS_BUCKETS,
    AwsQuotas,
    Bucket,
    GitHubLimits,
    GitHubQuotas,
    ProviderClock,
    Quotas,
    TokenBucket,
    acting_as,
)
from tests.support.waits import PATIENCE_S

pytestmark = pytest.mark.e2e


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _client(service: str, endpoint: str) -> Any:
    config = Config(retries={"mode": "standard", "max_attempts": 2})
    return boto3.session.Session().client(
        service,
        endpoint_url=endpoint,
        region_name="eu-west-1",
        aws_access_key_id="devstack",
        aws_secret_access_key="devstack",
        config=config,
    )


def _quotas(clock: Clock, **buckets: Bucket) -> AwsQuotas:
    return AwsQuotas(buckets={**AWS_BUCKETS, **buckets}, clock=clock)


def test_ec2_past_its_bucket_answers_request_limit_exceeded_retried_as_a_throttle(
    moto_server: str,
) -> None:
    clock = Clock()
    quotas = _quotas(clock, **{"ec2:non-mutating": Bucket(2, 1)})
    ec2 = quotas.attach(_client("ec2", moto_server))
    ours = [{"Name": "tag:jitrunners:prefix", "Values": ["quota-test"]}]
    with acting_as("scale-up"):
        for _ in range(2):
            ec2.describe_instances(Filters=ours)
        with pytest.raises(ClientError) as refused:
            ec2.describe_instances(Filters=ours)
    error = refused.value.response
    assert error["Error"]["Code"] == "RequestLimitExceeded"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 503
    key = ("scale-up", "ec2:DescribeInstances")
    # botocore retried it, as a throttle: every attempt of the third call was refused.
    retries = error["ResponseMetadata"]["RetryAttempts"]
    assert retries >= 1
    assert quotas.calls[key] == 3
    assert quotas.throttled[key] == retries + 1
    assert quotas.requests[key] == 2 + retries + 1
    clock.now += 1.0  # one token back
    ec2.describe_instances(Filters=ours)
    assert not quotas.overdrawn()


def test_an_unfiltered_describe_spends_the_smaller_bucket_only(moto_server: str) -> None:
    clock = Clock()
    quotas = _quotas(clock, **{"ec2:unfiltered": Bucket(1, 0)})
    ec2 = quotas.attach(_client("ec2", moto_server))
    ec2.describe_instances()
    with pytest.raises(ClientError, match="RequestLimitExceeded"):
        ec2.describe_instances()
    ec2.describe_instances(Filters=[{"Name": "instance-state-name", "Values": ["running"]}])


def test_parameter_store_past_its_throughput_answers_throttling_exception(
    moto_server: str,
) -> None:
    clock = Clock()
    quotas = _quotas(clock, **{"ssm:parameter-throughput": Bucket(1, 0)})
    ssm = quotas.attach(_client("ssm", moto_server), function="instance")
    ssm.put_parameter(Name="/quota-test/a", Value="x", Type="String", Overwrite=True)
    with pytest.raises(ClientError) as refused:
        ssm.get_parameter(Name="/quota-test/a")
    error = refused.value.response
    assert error["Error"]["Code"] == "ThrottlingException"
    assert error["Error"]["Message"] == "Rate exceeded"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    retries = error["ResponseMetadata"]["RetryAttempts"]
    assert retries >= 1
    # DeleteParameter is not Parameter Store throughput: its own (assumed) bucket.
    ssm.delete_parameter(Name="/quota-test/a")
    assert quotas.throttled == {("instance", "ssm:GetParameter"): retries + 1}


# ------------------------------------------------------------------------------------- GitHub
def _limited_sim(sim: GitHubSim, clock: Callable[[], float], **limits: Any) -> GitHubQuotas:
    sim.rate_limits = GitHubQuotas(limits=GitHubLimits(**limits), clock=clock)
    return sim.rate_limits


def _jitconfig(sim: GitHubSim, token: str, name: str) -> requests.Response:
    return requests.post(
        f"{sim.url}/orgs/acme/actions/runners/generate-jitconfig",
        json={"name": name, "runner_group_id": 1, "labels": ["self-hosted"]},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


def test_github_secondary_limit_counts_points_and_answers_retry_after(sim: GitHubSim) -> None:
    clock = Clock()
    quotas = _limited_sim(sim, clock, points_per_minute=11)
    token = sim.issue_token(sim.installation_id)["token"]
    first = _jitconfig(sim, token, "r-1")
    assert first.status_code == 201
    assert first.headers["x-ratelimit-limit"] == "5000"
    assert first.headers["x-ratelimit-remaining"] == "4999"
    assert first.headers["x-ratelimit-used"] == "1"
    assert _jitconfig(sim, token, "r-2").status_code == 201  # 10 points of 11
    refused = _jitconfig(sim, token, "r-3")  # 5 more: over
    assert refused.status_code == 403
    assert refused.headers["retry-after"] == "60"
    assert "secondary rate limit" in refused.json()["message"]
    runners = requests.get(
        f"{sim.url}/orgs/acme/actions/runners",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert runners.status_code == 200  # a GET is 1 point: it still fits
    clock.now += 60
    assert _jitconfig(sim, token, "r-3").status_code == 201
    assert quotas.refused == {"points": 1}
    assert sim.counters["jitconfigs_issued"] == 3


def test_github_primary_limit_is_read_by_the_lambdas_client_as_a_wait_until_reset(
    sim: GitHubSim,
) -> None:
    from jitrunners.github.auth import TokenAuth
    from jitrunners.github.client import GitHubClient, GitHubRateLimited

    clock = Clock()
    clock.now = 1_800_000_000.0
    _limited_sim(sim, clock, requests_per_hour=2)
    client = GitHubClient(TokenAuth(sim.pat), sim.url, clock=clock, sleep=lambda s: None)
    scope = _org_scope()
    list(client.list_runners(scope, None))
    list(client.list_runners(scope, None))
    clock.now += 600
    # A process that has not seen the budget spent sends, and reads GitHub's refusal.
    fresh = GitHubClient(TokenAuth(sim.pat), sim.url, clock=clock, sleep=lambda s: None)
    with pytest.raises(GitHubRateLimited) as limited:
        list(fresh.list_runners(scope, None))
    assert limited.value.status == 403
    assert limited.value.retry_after_s == pytest.approx(3000, abs=1)
    # One that has (the second answer said `x-ratelimit-remaining: 0`) holds the call back.
    sent = sum(sim.rate_limits.requests.values())
    with pytest.raises(GitHubRateLimited) as held:
        list(client.list_runners(scope, None))
    assert held.value.status is None
    assert held.value.retry_after_s == pytest.approx(3000, abs=1)
    assert sum(sim.rate_limits.requests.values()) == sent


def test_the_providers_clock_runs_its_rate_and_a_bucket_on_it_refills_that_much_faster() -> None:
    real = Clock()
    clock = ProviderClock(2.5, real=real, epoch=lambda: 1_800_000_000.0)
    began = clock.monotonic()
    bucket = TokenBucket(Bucket(10, 1), clock.monotonic)
    bucket.take(10)
    assert not bucket.available(1)
    real.now += 2.0
    assert clock.monotonic() - began == pytest.approx(5.0)
    assert clock.time() == pytest.approx(1_800_000_005.0)
    # Two real seconds are five of the bucket's: five tokens back, not two.
    assert bucket.available(5.0)
    assert not bucket.available(5.5)
    assert (clock.emulated(2.0), clock.real(5.0)) == (5.0, 2.0)
    with pytest.raises(ValueError, match="is not within 1-10"):
        ProviderClock(0.5)


def test_a_github_hour_on_a_fast_providers_clock_ends_as_soon_for_the_lambdas_client(
    sim: GitHubSim,
) -> None:
    """The simulator's budgets and the client's holds on one providers' clock at 4 emulated
    seconds a real one: the hour's reset the client waits for comes after 900 real seconds."""
    from jitrunners.github.auth import TokenAuth
    from jitrunners.github.client import GitHubClient, GitHubRateLimited

    real = Clock()
    clock = ProviderClock(4.0, real=real, epoch=lambda: 1_800_000_000.0)
    _limited_sim(sim, clock.time, requests_per_hour=2)
    client = GitHubClient(TokenAuth(sim.pat), sim.url, clock=clock.time, sleep=lambda s: None)
    scope = _org_scope()
    list(client.list_runners(scope, None))
    list(client.list_runners(scope, None))
    real.now += 600  # 2,400 emulated seconds: 1,200 left of the hour
    with pytest.raises(GitHubRateLimited) as held:
        list(client.list_runners(scope, None))
    assert held.value.retry_after_s == pytest.approx(1200, abs=1)
    real.now += 300
    assert list(client.list_runners(scope, None)) == []


def _org_scope() -> Any:
    from jitrunners.github.client import RunnerScope

    return RunnerScope("org", "acme")


def test_github_concurrent_requests_past_the_limit_are_refused_until_one_ends() -> None:
    quotas = GitHubQuotas(limits=GitHubLimits(concurrent=1), clock=Clock())
    first, _ = quotas.admit("99", "GET", "/orgs/acme/actions/runners", "GET runners")
    second, headers = quotas.admit("99", "GET", "/orgs/acme/actions/runners", "GET runners")
    assert first is None
    assert second is not None
    assert (second.status, second.limit) == (403, "concurrent")
    assert headers["retry-after"] == "1"
    quotas.release("99")
    third, _ = quotas.admit("99", "GET", "/orgs/acme/actions/runners", "GET runners")
    assert third is None


# ------------------------------------------------------------------------------------- a burst
def test_a_burst_under_binding_quotas_loses_no_job_and_no_limit_admits_more_than_it_may(
    tmp_path: Path,
) -> None:
    """300 jobs (the 1,000-job bench's burst, smaller) under AWS buckets a tenth of their size
    refilling at twice their rate, so that they bind within seconds (in real time: on the
    providers' clock at 2 the same real refill took half as long again, as the Lambdas' delays
    and the schedules then run at twice their pace). GitHub's limit is counted
    in a minute's window, so a binding one costs a minute of waiting: here it is above what the
    burst spends, the Lambdas shape to it (GITHUB_POINTS_PER_MINUTE, as a deployment sets it)
    and it refuses nothing. GitHub binding is the bench's (one App: a 60 s floor) and the
    `github-rate-limit` fault's (tests/e2e/test_pipeline.py). Scale-up reads the job queue as the
    sizing table sets it for bursts (README "Sizing"): batches of up to 50 records, a 1 s window."""
    from bench.burst_bench import quota_summary, run_burst

    jobs, points = 300, 2400
    aws = {
        name: Bucket(max(1.0, b.capacity / 10), 2 * b.refill_per_s)
        for name, b in AWS_BUCKETS.items()
    }
    quotas = Quotas(aws, GitHubLimits(points_per_minute=points, window_s=60.0))
    result = run_burst(
        jobs, {}, workdir=tmp_path, job_seconds=0.2, timeout_s=PATIENCE_S, quotas=quotas,
        scale_up_batch=50,
    )  # fmt: skip
    summary = quota_summary(result)
    assert summary["scale_up_batch"] == [50, 1.0]
    assert summary["clock_rate"] == 1.0
    assert summary["lost"] == 0
    assert not any(result["left"].values()), result["left"]
    # The buckets bound: some requests were refused, each answered as AWS answers it and
    # retried later (nothing lost above), and no bucket ever admitted more than it holds.
    assert summary["throttled_share"] > 0
    assert result["quotas"]["overdrawn"] == {}
    assert summary["quota_floor_s"] > 0
    assert summary["bound_by"].startswith("aws ")
    # GitHub: the Lambdas kept within the points they were told of; nothing was refused.
    assert result["quotas"]["github_peak_points"] <= points
    assert result["quotas"]["github_refused_by_limit"] == {}
    assert summary["calls_per_job"]["github"] > 0
    assert summary["calls_per_job"]["by_api"]["ec2:CreateFleet"] > 0


def test_the_stack_runs_the_lambdas_github_client_on_its_providers_clock(tmp_path: Path) -> None:
    """With the providers' clock at 4, the client the Lambdas share (made at start, as a warm
    container has it) reads GitHub's windows, resets and `retry-after` on that clock, not on real
    time (which would hold a call for a window GitHub already ended); and jobs go through."""
    import time

    from devstack.stack import Options, Stack
    from jitrunners.config import get_settings
    from jitrunners.github.client import get_client

    options = Options(
        jobs=3, job_seconds=0.2, workdir=tmp_path, timeout_s=PATIENCE_S, agent="inline",
        quotas=Quotas(clock_rate=4.0), visibility_timeout_s=2, housekeeper_every_s=3.0,
    )  # fmt: skip
    stack = Stack(options, out=(tmp_path / "progress.txt").open("w"))
    try:
        stack.start()
        summary = stack.run_demo()
        client = get_client(get_settings()).without_waiting()
        # Read together: the providers' clock, the client's two readers of GitHub's time, real.
        provider, held, shaped, real = (
            stack.provider_clock.time(), client._clock(), client.shaper._clock(), time.time()
        )  # fmt: skip
    finally:
        stack.stop()
    assert summary["completed"] == 3, stack.progress.lines
    assert summary["instances_left"] == summary["queue_left"] == 0
    # The run took seconds of real time: the providers' clock is three times that ahead.
    assert provider - real > 1.0
    assert held == pytest.approx(provider, abs=0.5)
    assert shaped == pytest.approx(provider, abs=0.5)
