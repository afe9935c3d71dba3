"""Warm pool members in moto as scale-up leaves them (README "Warm pools"), the linux-x64 template
with a pool, and EMF data read back as CloudWatch would ingest them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from tests.conftest import TEMPLATES

TEMPLATE = "linux-x64"
# A command id SSM has never seen: the hot member's runner is still running.
RUNNING_COMMAND = "0f5f3a8e-6a6b-4a59-9a0e-5c1d2b3a4f01"


def with_pool(
    monkeypatch: pytest.MonkeyPatch,
    max_runners: int = 3,
    *,
    sizing: bool = False,
    **pool_field: Any,
) -> None:
    """RUNNER_TEMPLATES with a warm pool on linux-x64 (hot members register with org acme)."""
    from jitrunners import config

    template = {**TEMPLATES[0], "max_runners": max_runners, "pool": {"owner": "acme", **pool_field}}
    if sizing:
        template["sizing"] = {"max_cpu": 16, "max_ram_gb": 64, "families": ["m7i"], "arch": "x64"}
    monkeypatch.setenv("RUNNER_TEMPLATES", json.dumps([template, TEMPLATES[1]]))
    # Not _reset_process_caches(): fixtures' hooks live on the cached AWS clients.
    config.get_settings.cache_clear()
    config._parsed.clear()


def member(
    kind: str,
    *,
    ready: bool = True,
    launched_at: datetime | None = None,
    template: str = TEMPLATE,
    lt_version: str | None = None,
) -> str:
    """A free member: a ready hot one runs its registered runner (`<id>-hot`), a ready stopped one
    is stopped; an unready one has just booted. Returns its instance id."""
    tags = {
        "Name": f"jitrunners-{template}",
        "jitrunners:prefix": "jitrunners",
        "jitrunners:template": template,
        "jitrunners:pool": kind,
    }
    if kind == "hot":
        tags["jitrunners:owner"] = "acme"
    if lt_version is not None:
        tags["jitrunners:lt-version"] = lt_version
    ec2 = boto3.client("ec2")
    [instance] = ec2.run_instances(
        ImageId="ami-12c6146b",
        MinCount=1,
        MaxCount=1,
        InstanceType="m7i.large",
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ],
    )["Instances"]
    instance_id = str(instance["InstanceId"])
    if launched_at is not None:
        from moto.ec2.models import ec2_backends

        backend = ec2_backends["123456789012"]["eu-west-1"].get_instance(instance_id)
        backend.launch_time = launched_at.astimezone(UTC).replace(tzinfo=None)
    if ready and kind == "hot":
        ec2.create_tags(
            Resources=[instance_id],
            Tags=[
                {"Key": "jitrunners:command-id", "Value": RUNNING_COMMAND},
                {"Key": "jitrunners:runner-name", "Value": f"{instance_id}-hot"},
            ],
        )
    if ready and kind == "stopped":
        ec2.stop_instances(InstanceIds=[instance_id])
    return instance_id


def tags_of(instance: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in instance.get("Tags", [])}


def describe(instance_id: str) -> dict[str, Any]:
    found = boto3.client("ec2").describe_instances(InstanceIds=[instance_id])
    return dict(found["Reservations"][0]["Instances"][0])


def state(instance_id: str) -> str:
    return str(describe(instance_id)["State"]["Name"])


def emf(out: str, name: str) -> list[dict[str, Any]]:
    """Each datum of metric `name` in the EMF documents printed: its value and dimensions."""
    found = []
    for line in out.splitlines():
        if not line.startswith('{"_aws"'):
            continue
        doc = json.loads(line)
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            if any(m["Name"] == name for m in directive["Metrics"]):
                dims = {d: doc[d] for group in directive["Dimensions"] for d in group}
                values = doc[name] if isinstance(doc[name], list) else [doc[name]]
                found.extend({"value": value, **dims} for value in values)
    return found
