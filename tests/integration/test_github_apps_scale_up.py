"""The scale-up Lambda with further GitHub Apps (GITHUB_EXTRA_APPS): moto for AWS, `responses`
for GitHub."""

# The `world` fixture is imported from tests.support; pytest injects it by parameter name.
# ruff: noqa: F811

from __future__ import annotations

import json
from typing import Any

import boto3
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from jitrunners.github.client import app_for_runner
from jitrunners.handlers import scale_up
from jitrunners.models import runner_name
from tests.support.github import API
from tests.support.scale_up import (
    JIT,
    World,
    job_status,
    launch_message,
    sqs_event,
    use_app_auth,
    world,  # noqa: F401 - fixture
)

SECOND_APP = "777"
SECOND_KEY_PARAM = "/jitrunners/secrets/github-app-key-777"
TOKENS = {99: "ghs_primary_installation_token", 555: "ghs_second_app_installation_token"}


def _second_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _app_of_job(job_id: int) -> int:
    return app_for_runner(runner_name("i-0123abcd", job_id, 1), 2)


def test_each_job_s_jit_config_comes_from_its_own_app(
    world: World, lambda_context: Any, monkeypatch: pytest.MonkeyPatch, log_lines: Any
) -> None:
    from jitrunners import config
    from jitrunners.github import client as github_client

    use_app_auth(monkeypatch)
    second_key = _second_key()
    boto3.client("ssm").put_parameter(Name=SECOND_KEY_PARAM, Value=second_key, Type="SecureString")
    monkeypatch.setenv(
        "GITHUB_EXTRA_APPS", json.dumps([{"app_id": SECOND_APP, "key_param": SECOND_KEY_PARAM}])
    )
    config.get_settings.cache_clear()
    github_client.get_client.cache_clear()
    for installation, token in TOKENS.items():
        world.github.post(
            f"{API}/app/installations/{installation}/access_tokens",
            status=201,
            json={"token": token, "expires_at": "2099-01-01T00:00:00Z"},
        )
    lookup = world.github.get(f"{API}/orgs/acme/installation", json={"id": 555})
    asked: dict[str, str] = {}

    def jitconfig(request: Any) -> tuple[int, dict[str, str], str]:
        name = json.loads(request.body)["name"]
        asked[name] = request.headers["Authorization"]
        body = {"runner": {"id": 1000 + len(asked), "name": name}, "encoded_jit_config": JIT}
        return 201, {}, json.dumps(body)

    world.github.add_callback(
        "POST", f"{API}/orgs/acme/actions/runners/generate-jitconfig", callback=jitconfig
    )
    # The template runs 3 at most: one job of the primary App's, two of the second's.
    by_app = {app: [j for j in range(601, 700) if _app_of_job(j) == app] for app in (0, 1)}
    jobs = [*by_app[0][:1], *by_app[1][:2]]
    for job_id in jobs:
        job_status(world, job_id)
    scale_up.handler(sqs_event(*(launch_message(job_id) for job_id in jobs)), lambda_context)
    scale_up.handler(sqs_event(*world.starts()), lambda_context)

    assert len(asked) == len(jobs)
    expected = {
        name: f"Bearer {TOKENS[555 if app_for_runner(name, 2) == 1 else 99]}" for name in asked
    }
    assert asked == expected
    assert len(set(asked.values())) == 2  # both Apps took jobs
    # The second App found its installation on the org with its own JWT, once.
    assert lookup.call_count == 1
    app_jwt = lookup.calls[0].request.headers["Authorization"].removeprefix("Bearer ")
    assert jwt.decode(app_jwt, options={"verify_signature": False})["iss"] == SECOND_APP
    text = log_lines.text()
    for secret in (*TOKENS.values(), JIT, second_key.splitlines()[1], app_jwt):
        assert secret not in text
