"""Per-job sizing labels: the refusal table, the requests they become, and template matching."""

from __future__ import annotations

from typing import Any

import pytest

from jitrunners.config import ConfigError, parse_templates
from jitrunners.routing import match_template, sizing_not_enabled
from jitrunners.sizing import SizingRefused, for_job

SIZED: dict[str, Any] = {
    "name": "sized",
    "labels": ["self-hosted", "linux", "sized"],
    "launch_template": "jitrunners-sized",
    "instance_types": ["m7i.large"],
    "market": "spot-then-on-demand",
    "sizing": {
        "max_cpu": 16,
        "max_ram_gb": 64,
        "families": ["m7i", "m7a", "c7i"],
        "on_demand": True,
        "max_disk_gb": 200,
    },
}
PLAIN: dict[str, Any] = {
    "name": "plain",
    "labels": ["self-hosted", "linux", "plain"],
    "launch_template": "jitrunners-plain",
    "instance_types": ["m7i.large"],
}


def _templates(**sizing: Any) -> Any:
    sized = SIZED | {"sizing": SIZED["sizing"] | sizing} if sizing else SIZED
    return parse_templates([PLAIN, sized])


@pytest.mark.parametrize(
    ("label", "reason"),
    [
        ("cpu=0", "sizing_malformed"),
        ("cpu=four", "sizing_malformed"),
        ("cpu=-2", "sizing_malformed"),
        ("cpu=4.5", "sizing_malformed"),
        ("cpu=", "sizing_malformed"),
        ("cpu=32", "sizing_outside_policy"),
        ("ram=128", "sizing_outside_policy"),
        ("ram=08", "sizing_malformed"),
        ("family=m7i+r7i", "sizing_outside_policy"),
        ("family=m7i+m7i", "sizing_malformed"),
        ("family=M7I;rm", "sizing_malformed"),
        ("arch=arm64", "sizing_outside_policy"),
        ("arch=sparc", "sizing_malformed"),
        ("spot=maybe", "sizing_malformed"),
        ("disk=4", "sizing_outside_policy"),
        ("disk=500", "sizing_outside_policy"),
        ("gpu=1", "sizing_not_allowed"),
    ],
)
def test_a_label_outside_the_policy_or_malformed_is_refused_naming_it(
    label: str, reason: str
) -> None:
    template = _templates()[1]
    with pytest.raises(SizingRefused) as refused:
        for_job(
            ["self-hosted", "sized", "cpu=2", label] if "cpu" not in label else ["sized", label],
            template,
        )
    assert refused.value.reason == reason
    assert refused.value.label == label


def test_a_repeated_key_is_refused_not_resolved() -> None:
    template = _templates()[1]
    with pytest.raises(SizingRefused) as refused:
        for_job(["sized", "cpu=4", "CPU=8"], template)
    assert (refused.value.reason, refused.value.label) == ("sizing_repeated", "CPU=8")


def test_on_demand_is_refused_where_the_policy_does_not_allow_it() -> None:
    template = _templates(on_demand=False)[1]
    with pytest.raises(SizingRefused) as refused:
        for_job(["sized", "spot=false"], template)
    assert refused.value.reason == "sizing_outside_policy"


def test_a_sized_request_is_bounded_on_every_axis() -> None:
    template = _templates()[1]
    sizing = for_job(
        ["self-hosted", "sized", "cpu=4", "ram=16", "family=m7a+m7i", "disk=100"], template
    )
    assert sizing is not None
    assert sizing.key == "cpu=4/ram=16/family=m7a+m7i/arch=x64/disk=100"
    assert sizing.market("spot-then-on-demand") == "spot-then-on-demand"
    req = sizing.instance_requirements(template.sizing)
    assert req["VCpuCount"] == {"Min": 4, "Max": 4}
    assert req["MemoryMiB"] == {"Min": 16384, "Max": 16384}
    assert req["AllowedInstanceTypes"] == ["m7a.*", "m7i.*"]
    assert req["CpuManufacturers"] == ["intel", "amd"]
    assert req["BurstablePerformance"] == "excluded"
    assert req["InstanceGenerations"] == ["current"]
    assert req["AcceleratorCount"] == {"Max": 0}


def test_what_a_job_does_not_ask_is_bounded_by_the_policy_maximum() -> None:
    template = _templates()[1]
    sizing = for_job(["sized", "ram=8", "spot=false"], template)
    assert sizing is not None
    req = sizing.instance_requirements(template.sizing)
    assert req["VCpuCount"] == {"Min": 1, "Max": 16}
    assert req["AllowedInstanceTypes"] == ["m7i.*", "m7a.*", "c7i.*"]
    assert sizing.market("spot-then-on-demand") == "on-demand"


def test_a_job_without_sizing_labels_launches_the_template_types() -> None:
    template = _templates()[1]
    assert for_job(["self-hosted", "sized"], template) is None


def test_matching_picks_the_template_by_its_fixed_labels() -> None:
    plain, sized = _templates()
    assert match_template(["sized", "cpu=4", "ram=16"], (plain, sized)) is sized
    assert match_template(["plain"], (plain, sized)) is plain
    # Sizing labels alone pick nothing; a plain template does not take them.
    assert match_template(["cpu=4"], (plain, sized)) is None
    assert match_template(["plain", "cpu=4"], (plain, sized)) is None
    assert sizing_not_enabled(["plain", "cpu=4"], (plain, sized))
    assert not sizing_not_enabled(["nothing", "cpu=4"], (plain, sized))


def test_a_fixed_label_shaped_like_a_sizing_label_stays_fixed() -> None:
    template = parse_templates([SIZED | {"labels": ["sized", "gpu=1"]}])[0]
    assert match_template(["sized", "gpu=1"], [template]) is template
    assert for_job(["sized", "gpu=1"], template) is None


@pytest.mark.parametrize(
    ("sizing", "fault"),
    [
        ({"max_ram_gb": 8, "families": ["m7i"]}, "needs 'max_cpu'"),
        ({"max_cpu": 0, "max_ram_gb": 8, "families": ["m7i"]}, "'max_cpu'"),
        ({"max_cpu": 4, "max_ram_gb": 8, "families": []}, "'families'"),
        ({"max_cpu": 4, "max_ram_gb": 8, "families": ["m7i.large"]}, "'families'"),
        ({"max_cpu": 4, "max_ram_gb": 8, "families": ["m7i"], "arch": "x86"}, "'arch'"),
        ({"max_cpu": 4, "max_ram_gb": 8, "families": ["m7i"], "max_disk_gb": 4}, "max_disk_gb"),
        ({"max_cpu": 4, "max_ram_gb": 8, "families": ["m7i"], "on_demand": "yes"}, "on_demand"),
        ({"max_cpu": 4, "max_ram_gb": 8, "families": ["m7i"], "cpu": 2}, "unknown"),
    ],
)
def test_an_invalid_policy_fails_the_template_document(sizing: Any, fault: str) -> None:
    with pytest.raises(ConfigError, match="field 'sizing'") as error:
        parse_templates([SIZED | {"sizing": sizing}])
    assert fault in str(error.value)


def test_a_sized_template_keeps_room_for_a_jobs_sizing_labels() -> None:
    """A sized job's runner registers with the template's labels and one sizing label per key:
    a sized template may have only as many labels as leave room for them under generate-
    jitconfig's 100, or that job's runner would lose labels the job asks for."""
    from jitrunners.lifecycle.provisioning.jit import runner_labels
    from jitrunners.models import JobMessage

    fixed = ["self-hosted", "linux", "sized", *(f"l{i}" for i in range(90))]
    with pytest.raises(ConfigError) as err:
        parse_templates([PLAIN, SIZED | {"labels": [*fixed, "one-more"]}])
    assert (
        "runner template 'sized': field 'labels' must have at most 93 entries with 'sizing', "
        "got 94 (a sized job's runner registers with up to 7 sizing labels"
    ) in str(err.value)
    [_, sized] = parse_templates([PLAIN, SIZED | {"labels": fixed}])
    sizing = ("cpu=4", "ram=16", "family=m7i", "arch=x64", "spot=false", "disk=100", "gpu=1")
    job = JobMessage(
        kind="start",
        job_id=1,
        run_id=2,
        run_attempt=1,
        repo="acme/widgets",
        owner="acme",
        installation_id=None,
        labels=("self-hosted", "sized", *sizing),
        template="sized",
        delivery_id="d",
        queued_at="",
    )
    registered = runner_labels(job, sized)
    assert len(registered) == 100
    assert set(sizing) <= set(registered)
    # A template without sizing may have all 100.
    parse_templates([PLAIN | {"labels": [*fixed, *(f"m{i}" for i in range(7))]}])
