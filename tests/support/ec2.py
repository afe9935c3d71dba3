"""A moto EC2 world for runner launches, and botocore hooks that inject EC2 faults."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import boto3

from jitrunners.aws.clients import client

# Any AMI id: moto validates none (tests/conftest.py does not load its default catalogue).
AMI = "ami-12c6146b"


def make_world(templates: tuple[str, ...] = ("jitrunners-linux-x64",)) -> list[str]:
    """Two subnets and the launch templates; returns the subnet ids."""
    ec2 = boto3.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, AvailabilityZone=az)["Subnet"]["SubnetId"]
        for cidr, az in (("10.0.1.0/24", "eu-west-1a"), ("10.0.2.0/24", "eu-west-1b"))
    ]
    image = AMI
    for name in templates:
        ec2.create_launch_template(LaunchTemplateName=name, LaunchTemplateData={"ImageId": image})
    return subnets


def fleet_error(code: str, lifecycle: str, instance_type: str = "m7i.large") -> dict[str, Any]:
    return {
        "LaunchTemplateAndOverrides": {"Overrides": {"InstanceType": instance_type}},
        "Lifecycle": lifecycle,
        "ErrorCode": code,
        "ErrorMessage": f"{code} (injected)",
    }


@contextmanager
def ec2_hook(
    operation: str, respond: Callable[[dict[str, Any]], tuple[Any, dict[str, Any]] | None]
) -> Iterator[list[dict[str, Any]]]:
    """Intercept `operation` on the adapters' EC2 client.

    `respond(params)` returns (http, parsed) to short-circuit the call (a fault), or None to let
    moto answer. Yields the list of params seen.
    """
    seen: list[dict[str, Any]] = []
    event = f"before-call.ec2.{operation}"

    def hook(params: dict[str, Any], **_: Any) -> Any:
        seen.append(params)
        return respond(params)

    events = client("ec2").meta.events
    events.register(event, hook)
    try:
        yield seen
    finally:
        events.unregister(event, hook)


def error_response(code: str, status: int = 400) -> tuple[Any, dict[str, Any]]:
    from botocore.awsrequest import AWSResponse

    http = AWSResponse("https://ec2", status, {}, None)
    return http, {"Error": {"Code": code, "Message": f"{code} (injected)"}, "ResponseMetadata": {}}
