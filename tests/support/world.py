"""A world for lifecycle tests: our and foreign instances in moto, JIT parameters, a fake GitHub."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3

ACCOUNT = "123456789012"
REGION = "eu-west-1"
PREFIX = "jitrunners"


class Clock:
    """Injected time: tests move it forward instead of sleeping."""

    def __init__(self, now: datetime | None = None) -> None:
        # Starts at the wall clock only because moto stamps parameters with it; every assertion
        # is about differences the test makes itself.
        self.now = now or datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


# Any AMI id: moto validates none (tests/conftest.py does not load its default catalogue).
AMI = "ami-12c6146b"


def _backend_instance(instance_id: str) -> Any:
    from moto.ec2.models import ec2_backends

    return ec2_backends[ACCOUNT][REGION].get_instance(instance_id)


def launch(**kwargs: Any) -> str:
    """One running instance with the tags scale-up puts on it (none of ours when prefix is None)."""
    return _run(**kwargs)[0]


def launch_many(count: int, **kwargs: Any) -> list[str]:
    """`count` identical instances in one RunInstances call (for pagination tests)."""
    return _run(count=count, **kwargs)


def _run(
    *,
    launched_at: datetime,
    template: str = "linux-x64",
    job_id: int = 100,
    run_id: int = 200,
    run_attempt: int = 1,
    repo: str = "acme/app",
    installation_id: int | None = 7,
    command_id: str | None = None,
    started_at: datetime | None = None,
    prefix: str | None = PREFIX,
    market: str = "spot",
    count: int = 1,
    profile: str | None = None,
) -> list[str]:
    tags: dict[str, str] = {"Name": f"{prefix or 'other'}-{template}"}
    if prefix is not None:
        tags.update(
            {
                "jitrunners:prefix": prefix,
                "jitrunners:template": template,
                "jitrunners:job-id": str(job_id),
                "jitrunners:run-id": str(run_id),
                "jitrunners:run-attempt": str(run_attempt),
                "jitrunners:repo": repo,
                "jitrunners:delivery-id": f"dlv-{job_id}",
            }
        )
        if installation_id is not None:
            tags["jitrunners:installation-id"] = str(installation_id)
        if command_id is not None:
            tags["jitrunners:command-id"] = command_id
        if started_at is not None:
            tags["jitrunners:started-at"] = started_at.isoformat().replace("+00:00", "Z")
    kwargs: dict[str, Any] = {}
    if profile is not None:
        kwargs["IamInstanceProfile"] = {"Arn": instance_profile(profile)}
    if market == "spot":
        kwargs["InstanceMarketOptions"] = {"MarketType": "spot"}
    response = boto3.client("ec2").run_instances(
        ImageId=AMI,
        MinCount=count,
        MaxCount=count,
        InstanceType="m7i.large",
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ],
        **kwargs,
    )
    ids = [str(i["InstanceId"]) for i in response["Instances"]]
    for instance_id in ids:
        # moto stamps launch time with the wall clock; tests live on the injected clock instead.
        _backend_instance(instance_id).launch_time = launched_at.astimezone(UTC).replace(
            tzinfo=None
        )
    return ids


RUNNER_PROFILE = "jitrunners-runner"


def instance_profile(name: str) -> str:
    """The ARN of an IAM instance profile (created in moto on first use)."""
    iam = boto3.client("iam")
    try:
        return str(iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]["Arn"])
    except iam.exceptions.NoSuchEntityException:
        return str(iam.create_instance_profile(InstanceProfileName=name)["InstanceProfile"]["Arn"])


def state(instance_id: str) -> str:
    reservations = boto3.client("ec2").describe_instances(InstanceIds=[instance_id])
    return str(reservations["Reservations"][0]["Instances"][0]["State"]["Name"])


def stop(instance_id: str) -> None:
    boto3.client("ec2").stop_instances(InstanceIds=[instance_id])


def terminate(instance_id: str) -> None:
    boto3.client("ec2").terminate_instances(InstanceIds=[instance_id])


def spot_reclaim(instance_id: str) -> None:
    """EC2 takes a spot instance back: terminated, with the state reason AWS gives it."""
    from moto.ec2.models.instances import StateReason

    terminate(instance_id)
    _backend_instance(instance_id).state_reason = StateReason(
        "Server.SpotInstanceTermination: Spot instance termination",
        "Server.SpotInstanceTermination",
    )


def live_ours(prefix: str = PREFIX) -> set[str]:
    ec2 = boto3.client("ec2")
    found: set[str] = set()
    for page in ec2.get_paginator("describe_instances").paginate(
        Filters=[
            {"Name": "tag:jitrunners:prefix", "Values": [prefix]},
            {
                "Name": "instance-state-name",
                "Values": ["pending", "running", "stopping", "stopped"],
            },
        ]
    ):
        for reservation in page["Reservations"]:
            found.update(i["InstanceId"] for i in reservation["Instances"])
    return found


def create_deliveries_table(dynamodb: Any, name: str = "jitrunners-deliveries") -> str:
    """The claims table as terraform/deliveries.tf makes it, through the given client."""
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "delivery_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "delivery_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


def jit_param_name(instance_id: str, prefix: str = PREFIX) -> str:
    return f"/{prefix}/jit/{instance_id}"


def put_jit_param(instance_id: str, prefix: str = PREFIX) -> str:
    name = jit_param_name(instance_id, prefix)
    boto3.client("ssm").put_parameter(
        Name=name,
        Value="secret-jit-config",
        Type="SecureString",
        Tags=[
            {"Key": "jitrunners:prefix", "Value": prefix},
            {
                "Key": "jitrunners:instance-arn",
                "Value": f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/{instance_id}",
            },
        ],
    )
    return name


def delete_jit_param(instance_id: str, prefix: str = PREFIX) -> None:
    """A parameter gone before its runner's end (by hand, or an earlier cleanup)."""
    boto3.client("ssm").delete_parameter(Name=f"/{prefix}/jit/{instance_id}")


def jit_params(prefix: str = PREFIX) -> set[str]:
    ssm = boto3.client("ssm")
    names: set[str] = set()
    for page in ssm.get_paginator("get_parameters_by_path").paginate(
        Path=f"/{prefix}/jit", Recursive=True
    ):
        names.update(p["Name"].rsplit("/", 1)[-1] for p in page["Parameters"])
    return names


def send_runner_command(instance_id: str) -> str:
    """A real (moto) RunCommand: moto reports every command as finished with Success."""
    return str(
        boto3.client("ssm").send_command(
            InstanceIds=[instance_id],
            DocumentName="AWS-RunShellScript",
            Parameters={"commands": ["true"]},
        )["Command"]["CommandId"]
    )


# --- GitHub -------------------------------------------------------------------------------------


@dataclass
class FakeRunner:
    id: int
    name: str
    status: str = "online"
    busy: bool = False
    labels: tuple[str, ...] = ("self-hosted",)


@dataclass
class FakeJob:
    id: int
    status: str = "queued"
    conclusion: str | None = None
    runner_name: str | None = None


@dataclass
class FakeDelivery:
    id: int
    guid: str
    event: str
    action: str | None
    status_code: int
    delivered_at: datetime
    redelivery: bool = False


@dataclass
class FakeGitHub:
    """GitHub's side as the lifecycle code sees it through the client's methods (contracts.md)."""

    runners: dict[str, dict[str, FakeRunner]] = field(default_factory=dict)
    jobs: dict[tuple[str, int], FakeJob] = field(default_factory=dict)
    deliveries: list[FakeDelivery] = field(default_factory=list)
    redelivered: list[int] = field(default_factory=list)
    reruns: list[tuple[str, int]] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    failing: set[str] = field(default_factory=set)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1000))

    def _call(self, name: str) -> None:
        self.calls[name] += 1
        if name in self.failing:
            from jitrunners.github.client import GitHubError

            raise GitHubError(f"simulated failure of {name}", status=502, retryable=True)

    # runners
    def register(self, scope_path: str, name: str, **kwargs: Any) -> FakeRunner:
        runner = FakeRunner(next(self._ids), name, **kwargs)
        self.runners.setdefault(scope_path, {})[name] = runner
        return runner

    def all_runner_names(self) -> set[str]:
        return {name for scope in self.runners.values() for name in scope}

    def find_runner(self, scope: Any, name: str, installation_id: int | None) -> Any:
        self._call("find_runner")
        return self.runners.get(scope.path, {}).get(name)

    def list_runners(self, scope: Any, installation_id: int | None) -> Iterator[Any]:
        self._call("list_runners")
        yield from list(self.runners.get(scope.path, {}).values())

    def delete_runner(self, scope: Any, runner_id: int, installation_id: int | None) -> bool:
        self._call("delete_runner")
        scoped = self.runners.get(scope.path, {})
        for name, runner in list(scoped.items()):
            if runner.id == runner_id:
                del scoped[name]
                return True
        return False

    # jobs
    def get_job(self, repo: str, job_id: int, installation_id: int | None) -> Any:
        self._call("get_job")
        return self.jobs.get((repo, job_id))

    def rerun_job(self, repo: str, job_id: int, installation_id: int | None) -> None:
        self._call("rerun_job")
        self.reruns.append((repo, job_id))

    # workflow runs (reconciliation): none here; tests/integration/test_reconcile.py uses the
    # GitHub simulator
    def list_runs(self, repo: str, status: str, installation_id: int | None) -> Iterator[Any]:
        self._call("list_runs")
        yield from ()

    def list_run_jobs(self, repo: str, run_id: int, installation_id: int | None) -> Iterator[Any]:
        self._call("list_run_jobs")
        yield from ()

    def list_installations(self) -> Iterator[Any]:
        self._call("list_installations")
        yield from ()

    # deliveries (App)
    def list_deliveries(self, since: datetime) -> Iterator[Any]:
        self._call("list_deliveries")
        yield from [d for d in self.deliveries if d.delivered_at >= since]

    def redeliver(self, delivery_id: int) -> None:
        self._call("redeliver")
        self.redelivered.append(delivery_id)


def fast_ec2(monkeypatch: Any) -> None:
    """Skip loading moto's catalogue of public AMIs (a second per fresh EC2 backend); call it from
    an autouse fixture so it runs before the `aws` fixture creates the backend."""
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")


def command_id(name: str) -> str:
    """A well-formed (36-character) RunCommand id SSM has never seen: a command still running."""
    import uuid

    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))
