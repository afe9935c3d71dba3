"""EC2 adapter: launch runner instances with an instant fleet, list, tag and terminate ours."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from jitrunners.aws.clients import THROTTLE_CODES, client, error_code
from jitrunners.observability import count, logger

GONE_STATES = ("shutting-down", "terminated")
TAG_PREFIX = "jitrunners:prefix"
TAG_TEMPLATE = "jitrunners:template"
TAG_JOB_ID = "jitrunners:job-id"
TAG_RUN_ID = "jitrunners:run-id"
TAG_RUN_ATTEMPT = "jitrunners:run-attempt"
TAG_REPO = "jitrunners:repo"
TAG_INSTALLATION_ID = "jitrunners:installation-id"
TAG_DELIVERY_ID = "jitrunners:delivery-id"
TAG_COMMAND_ID = "jitrunners:command-id"
TAG_STARTED_AT = "jitrunners:started-at"
# The name its runner registered with (models.runner_name), written with the command id.
TAG_RUNNER_NAME = "jitrunners:runner-name"
# The job an instance was launched for, as `<job-id>/<run-attempt>/<run-id>/<owner>/<repo>`, and
# which launch of it this is. The job tags above say which job the runner owes now: they change
# when it takes another job (a swap, DESIGN §6b); these two are set once, at launch.
TAG_LAUNCHED_FOR = "jitrunners:launched-for"
TAG_LAUNCH_ATTEMPT = "jitrunners:launch-attempt"
# Set on a swap when the need the instance was launched for was passed on to a launch of its own.
TAG_PASSED_ON = "jitrunners:passed-on"
# A sized job's sizing labels, `/`-separated (cpu=4/ram=16): its runner registers with them.
TAG_SIZING = "jitrunners:sizing"
# Written by a scale-down batch on the runners whose command it saw end (Success or Failed), before
# its terminate: the runner ended itself, no relaunch is owed (README "Scaling").
TAG_RUNNER_EXITED = "jitrunners:runner-exited"
# A warm pool member (README "Warm pools"): "hot" or "stopped"; kept once it took a job (the path).
TAG_POOL = "jitrunners:pool"
# When a stopped pool member was claimed for a job and started (its start timeout runs from it).
TAG_CLAIMED_AT = "jitrunners:claimed-at"
# A hot member's organization (it registers there before any job names a repository).
TAG_OWNER = "jitrunners:owner"
# The launch template version a stopped member booted from (recycled when the default changes).
TAG_LT_VERSION = "jitrunners:lt-version"

LIVE_STATES = ("pending", "running")
# Every state EC2 lists an instance in (a terminated one for about an hour).
ALL_STATES = ("pending", "running", "shutting-down", "terminated", "stopping", "stopped")

# Error codes, per EC2's error reference. Capacity/price: another pool or market may succeed.
CAPACITY_CODES = frozenset(
    {
        "InsufficientInstanceCapacity",
        "InsufficientCapacity",
        "InsufficientHostCapacity",
        "InsufficientReservedInstanceCapacity",
        "InsufficientFreeAddressesInSubnet",
        "SpotMaxPriceTooLow",
        "MaxSpotInstanceCountExceeded",
        "UnfulfillableCapacity",
        "Unsupported",
        "InstanceTypeNotSupported",
    }
)
THROTTLE_CODES = THROTTLE_CODES | {"ServiceUnavailable"}


class FleetError(RuntimeError):
    """Base of the EC2 launch errors; `code` is the EC2 error code."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code


class CapacityError(FleetError):
    """No pool (type x subnet x market) had capacity at an acceptable price; try again later."""


class ThrottledError(FleetError):
    """EC2 throttled us beyond our retries; back off."""


class LaunchConfigError(FleetError):
    """Quota or configuration fault (vCPU limit, missing launch template, bad subnet): no retry
    soon will fix it; an operator must."""


@dataclass(frozen=True, slots=True)
class PoolError:
    code: str
    message: str
    market: str
    instance_type: str | None = None
    subnet_id: str | None = None


@dataclass(frozen=True, slots=True)
class Launched:
    id: str
    market: str  # "spot" | "on-demand"
    instance_type: str | None


@dataclass(slots=True)
class LaunchResult:
    instances: list[Launched] = field(default_factory=list)
    errors: list[PoolError] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Instance:
    id: str
    state: str
    template: str | None
    job_id: int | None
    run_attempt: int | None
    repo: str | None
    installation_id: int | None
    launch_time: datetime | None
    command_id: str | None
    started_at: str | None
    lifecycle: str  # "spot" | "on-demand"
    tags: Mapping[str, str]
    # EC2's StateReason code, e.g. "Server.SpotInstanceTermination" for a spot reclaim.
    state_reason: str = ""
    # The IAM instance profile (IamInstanceProfile.Arn); "" when the instance has none.
    profile_arn: str = ""
    instance_type: str = ""
    zone: str = ""  # its availability zone
    platform: str = ""  # "windows" or "" (Linux/UNIX)

    @property
    def spot_reclaimed(self) -> bool:
        """EC2 took the instance back (terminated or stopped it for spot capacity or price)."""
        return self.state_reason.startswith("Server.SpotInstance")


def pool_of(instance: Any) -> str | None:
    """The warm pool kind an instance was launched for ("hot" or "stopped"), or None."""
    return (getattr(instance, "tags", None) or {}).get(TAG_POOL) or None


def free_member(instance: Any) -> bool:
    """A warm pool member no job has taken yet (README "Warm pools")."""
    return pool_of(instance) is not None and getattr(instance, "job_id", None) is None


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def _tag_fields(tags: Mapping[str, str]) -> dict[str, Any]:
    """The Instance fields its tags say."""
    return {
        "template": tags.get(TAG_TEMPLATE),
        "job_id": _int_or_none(tags.get(TAG_JOB_ID)),
        "run_attempt": _int_or_none(tags.get(TAG_RUN_ATTEMPT)),
        "repo": tags.get(TAG_REPO),
        "installation_id": _int_or_none(tags.get(TAG_INSTALLATION_ID)),
        "command_id": tags.get(TAG_COMMAND_ID),
        "started_at": tags.get(TAG_STARTED_AT),
        "tags": dict(tags),
    }


def retagged(instance: Instance, tags: Mapping[str, str]) -> Instance:
    """The instance as described again after `tags` were written to it (no call)."""
    return replace(instance, **_tag_fields({**instance.tags, **tags}))


def _instance(data: Mapping[str, Any]) -> Instance:
    tags = {t["Key"]: t["Value"] for t in data.get("Tags", [])}
    return Instance(
        id=data["InstanceId"],
        state=data.get("State", {}).get("Name", ""),
        launch_time=data.get("LaunchTime"),
        lifecycle=data.get("InstanceLifecycle") or "on-demand",
        **_tag_fields(tags),
        state_reason=str((data.get("StateReason") or {}).get("Code") or ""),
        profile_arn=str((data.get("IamInstanceProfile") or {}).get("Arn") or ""),
        instance_type=str(data.get("InstanceType") or ""),
        zone=str((data.get("Placement") or {}).get("AvailabilityZone") or ""),
        platform=str(data.get("Platform") or ""),
    )


def launched_instance(launched: Launched, tags: Mapping[str, str]) -> Instance:
    """A just launched instance as DescribeInstances lists it: pending, with the tags it was
    launched with (its fleet's, and a lone launch's job tags)."""
    return Instance(
        id=launched.id,
        state="pending",
        launch_time=None,
        lifecycle="spot" if launched.market == "spot" else "on-demand",
        **_tag_fields(tags),
        instance_type=launched.instance_type or "",
    )


def classify(code: str, message: str = "") -> FleetError:
    if code in CAPACITY_CODES:
        return CapacityError(code, message)
    if code in THROTTLE_CODES:
        return ThrottledError(code, message)
    return LaunchConfigError(code, message)


def markets_for(market: str) -> tuple[str, ...]:
    return {"spot": ("spot",), "on-demand": ("on-demand",)}.get(market, ("spot", "on-demand"))


def _tag_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


@dataclass(frozen=True, slots=True)
class Requirements:
    """A sized job's launch: attribute-based instance type selection instead of a type list."""

    instance_requirements: Mapping[str, Any]
    # The root volume's size (GB) and device, when the job asked for a disk size.
    disk_gb: int | None = None
    root_device: str = "/dev/xvda"

    def override(self, subnet: str | None) -> dict[str, Any]:
        override: dict[str, Any] = {"InstanceRequirements": dict(self.instance_requirements)}
        if subnet:
            override["SubnetId"] = subnet
        if self.disk_gb:
            # An instant fleet's override may replace the launch template's block device mapping
            # of the same device; the volume keeps the template's encryption and type settings
            # only if restated here.
            override["BlockDeviceMappings"] = [
                {
                    "DeviceName": self.root_device,
                    "Ebs": {
                        "VolumeSize": self.disk_gb,
                        "VolumeType": "gp3",
                        "Encrypted": True,
                        "DeleteOnTermination": True,
                    },
                }
            ]
        return override


def _create_fleet(
    market: str,
    count: int,
    launch_template: str,
    instance_types: Sequence[str],
    subnet_ids: Sequence[str],
    tags: Mapping[str, str],
    requirements: Requirements | None = None,
) -> dict[str, Any]:
    overrides: list[dict[str, Any]] = []
    if requirements is not None:
        # One override per subnet; EC2 picks among every type that meets the requirements.
        overrides = [requirements.override(subnet) for subnet in subnet_ids or [None]]
        instance_types = ()
    for priority, instance_type in enumerate(instance_types):
        for subnet in subnet_ids or [None]:
            override: dict[str, Any] = {"InstanceType": instance_type}
            if subnet:
                override["SubnetId"] = subnet
            if market == "on-demand":
                # On-demand has no capacity signal: take the template's order of preference.
                override["Priority"] = float(priority)
            overrides.append(override)
    request: dict[str, Any] = {
        "Type": "instant",
        "LaunchTemplateConfigs": [
            {
                "LaunchTemplateSpecification": {
                    "LaunchTemplateName": launch_template,
                    "Version": "$Default",
                },
                "Overrides": overrides,
            }
        ],
        "TargetCapacitySpecification": {
            "TotalTargetCapacity": count,
            "DefaultTargetCapacityType": market,
            "SpotTargetCapacity" if market == "spot" else "OnDemandTargetCapacity": count,
        },
        "TagSpecifications": [{"ResourceType": "instance", "Tags": _tag_list(tags)}],
    }
    if market == "spot":
        # Pools least likely to be interrupted, at a low price: the right trade for CI runners.
        request["SpotOptions"] = {"AllocationStrategy": "price-capacity-optimized"}
    else:
        # Attribute-based selection has no order of preference: the cheapest type that fits.
        strategy = "lowest-price" if requirements is not None else "prioritized"
        request["OnDemandOptions"] = {"AllocationStrategy": strategy}
    return dict(client("ec2").create_fleet(**request))


_types_cache: dict[str, tuple[str, ...]] = {}


def instance_types_for(requirements: Mapping[str, Any], architecture: str) -> tuple[str, ...]:
    """The instance types EC2 offers that meet `requirements` for an AMI of `architecture`
    (x86_64, arm64): empty when no type does. Cached per process: the catalogue changes rarely,
    and GetInstanceTypesFromInstanceRequirements counts against the non-mutating token bucket.
    Raises ThrottledError or LaunchConfigError like a launch."""
    import json

    key = json.dumps([requirements, architecture], sort_keys=True)
    if key not in _types_cache:
        response = _as_fleet_error(
            lambda: client("ec2").get_instance_types_from_instance_requirements(
                ArchitectureTypes=[architecture],
                VirtualizationTypes=["hvm"],
                InstanceRequirements=dict(requirements),
                MaxResults=1000,
            )
        )
        types = (t.get("InstanceType", "") for t in response.get("InstanceTypes", []))
        _types_cache[key] = tuple(t for t in types if t)
    return _types_cache[key]


def launch(
    *,
    launch_template: str,
    instance_types: Sequence[str],
    subnet_ids: Sequence[str],
    count: int,
    market: str,
    tags: Mapping[str, str],
    requirements: Requirements | None = None,
) -> LaunchResult:
    """Launch up to `count` instances: spot first, then on-demand where `market` allows; of
    `instance_types`, or of every type meeting `requirements` (a sized job) when given.

    One CreateFleet call per market tried, never a pause. Returns what launched and the
    per-pool errors; raises only when nothing launched: CapacityError, ThrottledError or
    LaunchConfigError, the last naming the first quota/config code seen.
    """
    result = LaunchResult()
    for market_type in markets_for(market):
        wanted = count - len(result.instances)
        if wanted <= 0:
            break
        try:
            response = _as_fleet_error(
                lambda m=market_type, n=wanted: _create_fleet(
                    m, n, launch_template, instance_types, subnet_ids, tags, requirements
                )
            )
        except CapacityError as exc:
            # The whole call refused for capacity or price: the next market may still have room.
            result.errors.append(PoolError(exc.code, str(exc), market_type))
            continue
        for group in response.get("Instances", []):
            lifecycle = group.get("Lifecycle") or market_type
            for instance_id in group.get("InstanceIds", []):
                result.instances.append(Launched(instance_id, lifecycle, group.get("InstanceType")))
        for error in response.get("Errors", []):
            overrides = error.get("LaunchTemplateAndOverrides", {}).get("Overrides", {})
            result.errors.append(
                PoolError(
                    code=str(error.get("ErrorCode", "")),
                    message=str(error.get("ErrorMessage", "")),
                    market=error.get("Lifecycle") or market_type,
                    instance_type=overrides.get("InstanceType"),
                    subnet_id=overrides.get("SubnetId"),
                )
            )
        # A quota or configuration fault will not go away by switching market: stop here.
        if any(isinstance(classify(e.code), LaunchConfigError) for e in result.errors):
            break
    if not result.instances:
        raise _worst(result.errors)
    return result


def _worst(errors: Sequence[PoolError]) -> FleetError:
    kinds = [(classify(e.code, e.message)) for e in errors]
    for wanted in (LaunchConfigError, ThrottledError, CapacityError):
        for err in kinds:
            if isinstance(err, wanted):
                return err
    return CapacityError("UnfulfillableCapacity", "CreateFleet launched nothing and said why not")


def _as_fleet_error(call: Callable[[], dict[str, Any]]) -> Any:
    """One EC2 call (botocore's one quick retry inside), its errors as FleetErrors: a throttle
    or an unreachable EC2 is a ThrottledError at once, and the records wait in the queue, not in
    this invocation."""
    try:
        return call()
    except ClientError as exc:
        raise classify(error_code(exc), str(exc)) from None
    except BotoCoreError as exc:
        raise ThrottledError(type(exc).__name__, "EC2 unreachable") from None


def list_instances(
    prefix: str,
    states: Iterable[str] = LIVE_STATES,
    *,
    instance_ids: Sequence[str] = (),
    profile_arn: str = "",
) -> list[Instance]:
    """Our instances in the given states: carrying the prefix tag and, when `profile_arn` is
    given, running with the runner instance profile.

    A tag is proof of nothing (anyone with ec2:CreateTags can set it); the instance profile is
    chosen at launch and needs iam:PassRole on our role. An instance with our tag and another
    profile is left out (never terminated, tagged or commanded), logged and counted.
    """
    filters = [
        {"Name": f"tag:{TAG_PREFIX}", "Values": [prefix]},
        {"Name": "instance-state-name", "Values": list(states)},
    ]
    if instance_ids:
        # A filter, not InstanceIds=: an unknown id must not fail the whole call.
        filters.append({"Name": "instance-id", "Values": list(instance_ids)})
    found: list[Instance] = []
    for page in client("ec2").get_paginator("describe_instances").paginate(Filters=filters):
        for reservation in page.get("Reservations", []):
            found.extend(_instance(data) for data in reservation.get("Instances", []))
    if not profile_arn:
        return found
    # EC2 ends a terminated instance's profile association (IamInstanceProfile disappears): it
    # can no longer be terminated, tagged or commanded, so its tag is enough to read its history.
    impostors = [i for i in found if i.profile_arn != profile_arn and i.state not in GONE_STATES]
    for instance in impostors:
        count("ForeignTaggedInstances")
        logger.warning(
            "instance carries our tag but not the runner instance profile: left alone",
            extra={"instance_id": instance.id, "instance_profile": instance.profile_arn or None},
        )
    foreign = {i.id for i in impostors}
    return [i for i in found if i.id not in foreign]


# The most values EC2 takes in one filter: ids per describe of `list_by_ids`.
ID_FILTER_MAX = 200


def list_by_ids(
    prefix: str, instance_ids: Sequence[str], *, profile_arn: str = ""
) -> list[Instance]:
    """Those of `instance_ids` that are ours, in any state EC2 lists, one DescribeInstances (and
    its pages) per ID_FILTER_MAX ids; an id EC2 no longer lists, or not ours, is left out."""
    found: list[Instance] = []
    for start in range(0, len(instance_ids), ID_FILTER_MAX):
        found.extend(
            list_instances(
                prefix,
                ALL_STATES,
                instance_ids=instance_ids[start : start + ID_FILTER_MAX],
                profile_arn=profile_arn,
            )
        )
    return found


def get_instance(instance_id: str, prefix: str, profile_arn: str = "") -> Instance | None:
    """One of our instances in any state, or None when it is unknown or not ours."""
    found = list_instances(prefix, ALL_STATES, instance_ids=[instance_id], profile_arn=profile_arn)
    return found[0] if found else None


def terminate(instance_ids: Sequence[str], prefix: str, profile_arn: str = "") -> list[str]:
    """Terminate those of `instance_ids` that are ours (prefix tag, and the runner instance
    profile when `profile_arn` is given); returns the ids terminated."""
    if not instance_ids:
        return []
    ours = [
        i.id
        for i in list_instances(
            prefix,
            ("pending", "running", "stopping", "stopped"),
            instance_ids=instance_ids,
            profile_arn=profile_arn,
        )
        if i.tags.get(TAG_PREFIX) == prefix
    ]
    if ours:
        client("ec2").terminate_instances(InstanceIds=ours)
    return ours


def terminate_described(instances: Sequence[Instance], prefix: str) -> list[str]:
    """Terminate instances this invocation has just described through list_instances (ours by
    tag and instance profile), without describing them again; returns the ids terminated."""
    ours = [
        i.id
        for i in instances
        if i.tags.get(TAG_PREFIX) == prefix and i.state not in ("shutting-down", "terminated")
    ]
    if ours:
        client("ec2").terminate_instances(InstanceIds=ours)
    return ours


def tag_described(instances: Sequence[Instance], prefix: str, tags: Mapping[str, str]) -> list[str]:
    """Tag described instances of ours that are not ending yet, in one CreateTags call (EC2
    takes up to 1,000 resources a call); returns the ids tagged."""
    ours = [
        i.id
        for i in instances
        if i.tags.get(TAG_PREFIX) == prefix and i.state not in ("shutting-down", "terminated")
    ][:1000]
    if ours:
        client("ec2").create_tags(Resources=ours, Tags=_tag_list(tags))
    return ours


def stop_described(instances: Sequence[Instance], prefix: str) -> list[str]:
    """Stop described instances of ours (warm pool members, booted once); returns the ids."""
    ours = [i.id for i in instances if i.tags.get(TAG_PREFIX) == prefix and i.state == "running"]
    if ours:
        client("ec2").stop_instances(InstanceIds=ours)
    return ours


def start_described(instance: Instance, prefix: str) -> None:
    """Start a stopped instance of ours (a claimed warm pool member)."""
    if instance.tags.get(TAG_PREFIX) != prefix:
        raise FleetError("NotOurs", "not an instance of ours")
    try:
        client("ec2").start_instances(InstanceIds=[instance.id])
    except ClientError as exc:
        raise classify(error_code(exc) or "Unknown", str(exc)) from None


def launch_template_version(name: str) -> str:
    """The launch template's default version number ("" when EC2 does not say)."""
    found = client("ec2").describe_launch_templates(LaunchTemplateNames=[name])
    templates = found.get("LaunchTemplates") or [{}]
    return str(templates[0].get("DefaultVersionNumber") or "")


def tag_instance(instance_id: str, tags: Mapping[str, str]) -> None:
    client("ec2").create_tags(Resources=[instance_id], Tags=_tag_list(tags))
