"""Runner templates and settings are validated at load, with messages naming template and field."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from jitrunners.config import ConfigError, Settings, parse_templates, webhook_secrets
from tests.conftest import TEMPLATES


def _doc(**changes: Any) -> list[dict[str, Any]]:
    doc = copy.deepcopy(TEMPLATES)
    doc[0].update(changes)
    return doc


def test_design_example_document_parses_with_defaults() -> None:
    templates = parse_templates(json.dumps(TEMPLATES))
    assert [t.name for t in templates] == ["linux-x64", "linux-arm64"]
    arm = templates[1]
    assert arm.runner_group_id == 1
    assert arm.start_timeout_s == 600
    assert arm.os == "linux"
    assert arm.labels == ("self-hosted", "linux", "arm64", "linux-arm64")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"colour": "blue"}, "runner template 'linux-x64': unknown field(s) 'colour'"),
        ({"labels": []}, "runner template 'linux-x64': field 'labels' must not be empty"),
        ({"labels": ["a", ""]}, "field 'labels' must be a list of non-empty strings"),
        ({"labels": ["A", "a"]}, "field 'labels' must not repeat an entry"),
        (
            {"labels": [f"l{i}" for i in range(101)]},
            "field 'labels' must have at most 100 entries, got 101 (GitHub's generate-jitconfig",
        ),
        ({"market": "cheap"}, "field 'market' must be one of spot, on-demand, spot-then-on-demand"),
        ({"max_runners": -3}, "field 'max_runners' must be a non-negative integer"),
        ({"max_runners": True}, "field 'max_runners' must be a non-negative integer"),
        ({"max_runners": "5"}, "field 'max_runners' must be a non-negative integer"),
        ({"start_timeout_s": 0}, "field 'start_timeout_s' must be a positive integer"),
        ({"max_lifetime_s": 172801}, "field 'max_lifetime_s' must be at most 172800"),
        ({"idle_timeout_s": 90000}, "field 'idle_timeout_s' must be less than 'max_lifetime_s'"),
        ({"scope": "enterprise"}, "field 'scope' must be one of org, repo"),
        ({"instance_types": []}, "field 'instance_types' must not be empty"),
        ({"name": "Bad Name"}, "field 'name' must be 1-63 characters"),
    ],
)
def test_invalid_field_is_rejected_naming_template_and_field(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        parse_templates(json.dumps(_doc(**changes)))
    assert message in str(err.value)


def test_a_drained_template_has_max_runners_zero() -> None:
    [template, _] = parse_templates(json.dumps(_doc(max_runners=0)))
    assert template.max_runners == 0


def test_a_template_may_have_as_many_labels_as_generate_jitconfig_takes() -> None:
    labels = [f"l{i}" for i in range(100)]
    [template, _] = parse_templates(json.dumps(_doc(labels=labels)))
    assert len(template.labels) == 100


def test_missing_required_field_is_named() -> None:
    doc = _doc()
    del doc[0]["launch_template"]
    with pytest.raises(ConfigError, match="'linux-x64': field 'launch_template' is required"):
        parse_templates(doc)


def test_duplicate_names_are_rejected() -> None:
    doc = _doc()
    doc[1]["name"] = "linux-x64"
    with pytest.raises(ConfigError, match="duplicate template name 'linux-x64'"):
        parse_templates(doc)


@pytest.mark.parametrize("document", ["", "{}", "[]", "not json", "[1]", '{"name": "x"}'])
def test_document_shape_errors_are_clear(document: str) -> None:
    with pytest.raises(ConfigError, match="runner template"):
        parse_templates(document)


def test_settings_from_env_defaults_and_lists() -> None:
    settings = Settings.from_env(
        {
            "ALLOWED_OWNERS": "Acme, other ,",
            "ALLOWED_REPOS": "acme/Widgets",
            "RUNNER_TEMPLATES": json.dumps(TEMPLATES),
        }
    )
    assert settings.prefix == "jitrunners"
    assert settings.allowed_owners == ("acme", "other")
    assert settings.allowed_repos == ("acme/widgets",)
    assert settings.allow_public_repos is False
    assert settings.jit_param_name("i-0abc") == "/jitrunners/jit/i-0abc"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ALLOW_PUBLIC_REPOS": "maybe"}, "ALLOW_PUBLIC_REPOS: expected true or false"),
        ({"MAX_RUNNERS": "0"}, "MAX_RUNNERS: must be at least 1"),
        ({"MAX_RUNNERS": "ten"}, "MAX_RUNNERS: expected an integer"),
        ({"JITRUNNERS_PREFIX": "Bad_Prefix"}, "JITRUNNERS_PREFIX"),
        ({"RUNNER_TEMPLATES": "[]"}, "non-empty JSON array"),
        ({"RUNNER_TEMPLATES": "[]", "RUNNER_TEMPLATES_PARAM": "/x"}, "not both"),
        ({"START_DELAY_S": "901"}, "at most 900"),
    ],
)
def test_bad_environment_fails_the_cold_start(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_settings_repr_never_shows_the_secret() -> None:
    assert "hunter2" not in repr(Settings.from_env({"WEBHOOK_SECRET": "hunter2"}))


def test_webhook_secrets_split_on_lines_for_rotation() -> None:
    assert webhook_secrets(Settings(webhook_secret="old\r\nnew\n")) == ("old", "new")
    assert webhook_secrets(Settings(webhook_secret="")) == ()


def test_retry_delays_scale_down_but_never_to_zero_or_up() -> None:
    assert Settings.from_env({}).retry_delay(60) == 60
    fast = Settings.from_env({"RETRY_DELAY_PERCENT": "5"})
    assert [fast.retry_delay(s) for s in (0, 10, 30, 60, 120)] == [0, 1, 2, 3, 6]
    with pytest.raises(ConfigError, match="RETRY_DELAY_PERCENT"):
        Settings.from_env({"RETRY_DELAY_PERCENT": "200"})
    with pytest.raises(ConfigError, match="RETRY_DELAY_PERCENT"):
        Settings.from_env({"RETRY_DELAY_PERCENT": "0"})


def test_in_lambda_back_off_scales_with_the_retry_delays(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from jitrunners.github.client import get_client

    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    Settings.from_env({}).pause(1.0)
    fast = Settings.from_env({"RETRY_DELAY_PERCENT": "5", "GITHUB_TOKEN_PARAM": "/t"})
    fast.pause(1.0)
    fast.pause(-1.0)
    assert slept == [1.0, pytest.approx(0.05), 0.0]
    # The GitHub client's 5xx back-off sleeps through it.
    monkeypatch.setattr("jitrunners.aws.params.get_secret", lambda name: "token")
    get_client.cache_clear()
    try:
        assert get_client(fast)._sleep == fast.pause
    finally:
        get_client.cache_clear()


@pytest.mark.parametrize(
    ("variable", "field"),
    [("RECONCILE_GRACE_S", "reconcile_grace_s"), ("TEARDOWN_GRACE_S", "teardown_grace_s")],
)
def test_housekeeper_graces_default_to_two_minutes_and_may_be_zero(
    variable: str, field: str
) -> None:
    assert getattr(Settings.from_env({}), field) == 120
    assert getattr(Settings.from_env({variable: "0"}), field) == 0
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: "-1"})
