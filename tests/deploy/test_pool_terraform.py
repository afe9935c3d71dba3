"""Warm pools in Terraform: the `pool` field of runner_templates reaches the document the Lambdas
read as they parse it, and the variable refuses at plan what the Lambdas would refuse at load.

Both sides run for real: the module's variables.tf and documents.tf rendered by the terraform
binary (devstack/tfrender.py), and jitrunners.config.parse_templates on the same input.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from devstack import tfrender
from devstack.aws_world import TEMPLATES_FILE
from jitrunners import config
from jitrunners.pools import parse_pool
from tests.deploy import rendered
from tests.deploy import tfmodel as tf

pytestmark = pytest.mark.skipif(
    shutil.which("terraform") is None, reason="terraform is not on PATH"
)

WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]


def _window(
    days: list[str] | None = None, start: str = "07:00", end: str = "19:00", **counts: int
) -> dict[str, Any]:
    return {"days": ["mon"] if days is None else days, "start": start, "end": end, **counts}


def _scheduled(
    *windows: dict[str, Any], timezone: str | None = None, **pool: int
) -> dict[str, Any]:
    schedule: dict[str, Any] = {"windows": list(windows)}
    if timezone is not None:
        schedule["timezone"] = timezone
    return {**pool, "schedule": schedule}


BERLIN_WORKDAY = {
    "hot": 1,
    "stopped": 2,
    "hot_max_idle_s": 900,
    "schedule": {
        "timezone": "Europe/Berlin",
        "windows": [
            {"days": WEEKDAYS, "start": "07:00", "end": "19:00"},
            {"days": ["sat"], "start": "09:00", "end": "24:00", "hot": 0, "stopped": 1},
        ],
    },
}


def _templates(pools: dict[str, Any]) -> list[dict[str, Any]]:
    """The local stack's templates (linux-x64: spot-then-on-demand, max 3; linux-arm64: spot,
    max 2), with these pools."""
    templates = json.loads(TEMPLATES_FILE.read_text())
    for template in templates:
        if template["name"] in pools:
            template["pool"] = copy.deepcopy(pools[template["name"]])
    return templates


def _lambda_document(templates: list[dict[str, Any]]) -> str:
    """The same templates as the Lambdas' document would carry them (Lambda fields only)."""
    return json.dumps(
        [
            {k: v for k, v in t.items() if k in config._FIELDS}
            | {"launch_template": f"jitrunners-{t['name']}"}
            for t in templates
        ]
    )


def test_timezones_terraform_accepts_are_the_lambda_packages_tzdata() -> None:
    listed = (tf.TERRAFORM / "templates" / "timezones.txt").read_text().splitlines()
    zones = {line for line in listed if line and not line.startswith("#")}
    packaged = set(resources.files("tzdata").joinpath("zones").read_text().split())
    assert zones == packaged
    assert {"UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires"} <= zones


def test_a_pool_reaches_the_lambdas_document_as_written() -> None:
    pools = {"linux-x64": BERLIN_WORKDAY, "linux-x64-large": {"hot": 2}}
    templates = _templates(pools)

    document = rendered.render(templates).templates_document

    by_name = {t["name"]: t for t in document}
    assert "pool" not in by_name["linux-arm64"]  # absent, never null: the Lambdas refuse null
    assert by_name["linux-x64-large"]["pool"] == {
        "hot": 2,
        "stopped": 0,
        "hot_max_idle_s": 3600,
        "owner": "",
    }
    parsed = {t.name: t.pool for t in config.parse_templates(json.dumps(document))}
    assert parsed["linux-arm64"] is None
    for name, pool in pools.items():
        assert parsed[name] == parse_pool(pool), name
    assert parsed["linux-x64"].most == 3  # type: ignore[union-attr]


WINDOWS = "must be a non-empty list"  # the schedule's refusal names every window field


@pytest.mark.parametrize(
    ("name", "pool", "terraform_says"),
    [
        ("linux-x64", {"hot": 101}, "whole numbers from 0 to 100"),
        ("linux-x64", {"hot": 1.5}, "whole numbers from 0 to 100"),
        ("linux-x64", _scheduled(_window(stopped=-1)), "whole numbers from 0 to 100"),
        ("linux-x64", {"hot_max_idle_s": 59}, "hot_max_idle_s must be whole seconds"),
        ("linux-x64", {"hot_max_idle_s": 86401}, "hot_max_idle_s must be whole seconds"),
        ("linux-x64", _scheduled(_window(), timezone="Europe/Berln"), "IANA time zone"),
        ("linux-x64", _scheduled(), WINDOWS),
        ("linux-x64", _scheduled(_window(days=["monday"])), WINDOWS),
        ("linux-x64", _scheduled(_window(days=[])), WINDOWS),
        ("linux-x64", _scheduled(_window(start="7:00")), WINDOWS),
        ("linux-x64", _scheduled(_window(start="19:00", end="07:00")), WINDOWS),
        ("linux-x64", _scheduled(_window(start="24:00", end="24:00")), WINDOWS),
        ("linux-x64", _scheduled(_window(end="25:00")), WINDOWS),
        # linux-x64 has max_runners 3.
        ("linux-x64", {"hot": 2, "stopped": 2}, "at most max_runners members"),
        ("linux-x64", _scheduled(_window(hot=4), hot=1), "at most max_runners members"),
        # linux-arm64's market is spot, and its scope repo.
        ("linux-arm64", {"stopped": 1}, "stopped members need a market that allows on-demand"),
        ("linux-arm64", {"hot": 1}, "hot members need scope org"),
        ("linux-x64", {"hot": 1, "owner": "-acme"}, "owner must be a GitHub organization login"),
        (
            "linux-arm64",
            _scheduled(_window(stopped=1)),
            "stopped members need a market that allows on-demand",
        ),
    ],
)
def test_terraform_refuses_the_pools_the_lambdas_refuse(
    name: str, pool: dict[str, Any], terraform_says: str
) -> None:
    templates = _templates({name: pool})

    with pytest.raises(config.ConfigError):
        config.parse_templates(_lambda_document(templates))
    with pytest.raises(tfrender.RenderError) as refused:
        rendered.render(templates)

    message = " ".join(str(refused.value).split())
    assert "Invalid value for variable" in message
    assert terraform_says in message


@pytest.mark.parametrize(
    ("name", "pool"),
    [
        ("linux-x64", {"hot": 2, "stopped": 1}),  # exactly max_runners (3)
        ("linux-x64", {"hot": 0, "stopped": 0}),
        ("linux-x64", {"hot_max_idle_s": 60}),
        ("linux-x64", {"hot_max_idle_s": 86400}),
        (
            "linux-x64",  # a window at zero, one to midnight, one overriding one count only
            _scheduled(
                _window(days=["sun"], start="00:00", end="24:00", hot=0),
                _window(days=WEEKDAYS, start="08:30", end="08:31", stopped=0),
                timezone="America/Argentina/Buenos_Aires",
                hot=3,
            ),
        ),
        ("linux-x64-large", {"hot": 2, "owner": "acme"}),  # hot members may be spot
    ],
)
def test_terraform_accepts_the_pools_the_lambdas_accept(name: str, pool: dict[str, Any]) -> None:
    templates = _templates({name: pool})

    document = rendered.render(templates).templates_document

    [rendered_pool] = [t["pool"] for t in document if t["name"] == name]
    assert parse_pool(rendered_pool) == parse_pool(pool)
    assert config.parse_templates(_lambda_document(templates))


def _pool_locals(templates: list[dict[str, Any]], tmp_path: Path) -> dict[str, Any]:
    """terraform/pools.tf rendered offline beside variables.tf, as `terraform plan` would."""
    for name in ("variables.tf", "pools.tf", "templates"):
        (tmp_path / name).symlink_to(tf.TERRAFORM / name)
    (tmp_path / "stub.tf.json").write_text(
        json.dumps({"locals": {"prefix": "jitrunners", "metrics_namespace": "jitrunners"}})
    )
    tfvars = {
        "vpc_id": "vpc-0123456789abcdef0",
        "subnet_ids": ["subnet-0123456789abcdef0"],
        "runner_templates": templates,
        "lambda_package_path": "dist/jitrunners-lambda.zip",
    }
    (tmp_path / "terraform.tfvars.json").write_text(json.dumps(tfvars))
    done = subprocess.run(
        [shutil.which("terraform") or "terraform", "console", "-no-color"],
        input="jsonencode({alarms = local.pool_alarms, search = local.pool_search})\n",
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CLI_CONFIG_FILE": os.devnull, "CHECKPOINT_DISABLE": "1"},
        timeout=120,
        check=True,
    )
    return json.loads(json.loads(done.stdout.strip()))


def test_a_pool_empty_alarm_watches_each_kind_a_pool_ever_wants(tmp_path: Path) -> None:
    pools = {
        "linux-x64": _scheduled(_window(stopped=2), hot=1),  # stopped members in a window only
        "linux-x64-large": {"hot": 2},
        "linux-arm64": {"hot": 0, "stopped": 0},  # a pool that wants nothing: no alarm
    }

    alarms = _pool_locals(_templates(pools), tmp_path)["alarms"]

    assert alarms == {
        "linux-x64-hot": {"template": "linux-x64", "kind": "hot"},
        "linux-x64-stopped": {"template": "linux-x64", "kind": "stopped"},
        "linux-x64-large-hot": {"template": "linux-x64-large", "kind": "hot"},
    }
    none = tmp_path / "no-pools"
    none.mkdir()
    assert _pool_locals(_templates({}), none)["alarms"] == {}
