"""`jitrunners rollout` against moto's Lambda versions and aliases and CloudWatch metrics: the
promote path, a rollback on a simulated breach, and an interrupted rollout that converges when
run again. The rollout's waits are replaced by a function that plays the traffic of each step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from jitrunners.aws.clients import client
from jitrunners_cli import main as cli
from jitrunners_cli import rollout
from tests.support.lambdas import (
    Deployment,
    lambda_logging_restored,  # noqa: F401 - fixture
    put_lambda_metric,
    put_own_metric,
    weights,
)

KEYS = ("webhook", "scale-up")

pytestmark = pytest.mark.usefixtures("lambda_logging_restored")


class Traffic:
    """Stands in for the rollout's wait: records the aliases' weights at each step and plays
    what the step's invocations would publish."""

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.seen: list[dict[str, dict[str, float]]] = []
        self.waited: list[float] = []
        self.plays: list[Callable[[int], None]] = []

    def __call__(self, seconds: float) -> None:
        self.waited.append(seconds)
        self.seen.append({k: weights(self.deployment.alias(k)) for k in KEYS})
        for play in self.plays:
            play(len(self.seen))


@pytest.fixture
def deployment(job_queue: str) -> Deployment:
    return Deployment(keys=KEYS).create()


@pytest.fixture
def traffic(deployment: Deployment, monkeypatch: pytest.MonkeyPatch) -> Traffic:
    fake = Traffic(deployment)
    monkeypatch.setattr(rollout, "sleep", fake)
    return fake


def run(*args: str) -> int:
    return cli.main(["rollout", *args, "--region", "eu-west-1"])


def terraform_apply(deployment: Deployment, marker: str = "2") -> None:
    """A new zip applied: Terraform publishes a version per function; the aliases stay."""
    for key in KEYS:
        assert deployment.new_code(key, marker, publish=True) == marker


def test_promote_shifts_the_weight_in_steps_and_leaves_all_on_the_new_version(
    deployment: Deployment, traffic: Traffic, capsys: pytest.CaptureFixture[str]
) -> None:
    terraform_apply(deployment)
    assert deployment.alias("webhook")["FunctionVersion"] == "1"  # apply did not move it

    assert run("webhook", "scale-up", "--interval", "300") == 0

    assert traffic.waited == [300, 300]
    assert traffic.seen == [
        {"webhook": {"2": 0.1}, "scale-up": {"2": 0.1}},
        {"webhook": {"2": 0.5}, "scale-up": {"2": 0.5}},
    ]
    for key in KEYS:
        alias = deployment.alias(key)
        assert alias["FunctionVersion"] == "2"
        assert weights(alias) == {}
        assert "rolled out from 1" in alias["Description"]
    out = capsys.readouterr().out
    assert "webhook       version 1 -> 2" in out
    assert "promoted: webhook 2, scale-up 2" in out


def test_the_rollout_publishes_latest_when_terraform_did_not(
    deployment: Deployment, traffic: Traffic
) -> None:
    assert deployment.new_code("webhook", "2", publish=False) is None
    assert run("webhook", "--steps", "50,100", "--interval", "1") == 0
    assert deployment.alias("webhook")["FunctionVersion"] == "2"
    assert traffic.seen[0]["webhook"] == {"2": 0.5}


@pytest.mark.parametrize(
    ("breach", "named"),
    [
        (lambda: put_lambda_metric("scale-up", "Errors", "2", 3), "Errors 3 > 0"),
        (lambda: put_lambda_metric("webhook", "Throttles", "2", 1), "Throttles 1 > 0"),
        (lambda: put_own_metric("scale-up", "StartFailed", "2", 2), "StartFailed 2 > 0"),
    ],
    ids=["lambda-errors", "lambda-throttles", "own-failure-metric"],
)
def test_a_breach_of_the_new_version_rolls_every_alias_back_and_exits_3(
    deployment: Deployment,
    traffic: Traffic,
    capsys: pytest.CaptureFixture[str],
    breach: Callable[[], None],
    named: str,
) -> None:
    terraform_apply(deployment)
    traffic.plays.append(lambda step: breach() if step == 1 else None)

    assert run("--interval", "60", *KEYS) == rollout.EXIT_ROLLED_BACK

    assert len(traffic.waited) == 1  # stopped at the first step
    for key in KEYS:
        alias = deployment.alias(key)
        assert alias["FunctionVersion"] == "1"
        assert weights(alias) == {}
        assert "version 2 rolled back" in alias["Description"]
    captured = capsys.readouterr()
    assert named in captured.err
    assert captured.err.startswith("jitrunners rollout: rolled back: ")
    assert "BREACH" in captured.out


def test_failures_of_the_old_version_do_not_stop_the_new_one(
    deployment: Deployment, traffic: Traffic
) -> None:
    terraform_apply(deployment)
    traffic.plays.append(lambda step: put_lambda_metric("scale-up", "Errors", "1", 5))
    traffic.plays.append(lambda step: put_lambda_metric("scale-up", "Invocations", "2", 40))
    assert run(*KEYS, "--interval", "1") == 0
    assert deployment.alias("scale-up")["FunctionVersion"] == "2"


def test_the_tolerance_counts_a_version_s_failures_over_the_whole_rollout(
    deployment: Deployment, traffic: Traffic
) -> None:
    terraform_apply(deployment)
    traffic.plays.append(
        lambda step: put_lambda_metric("webhook", "Errors", "2", 1) if step == 1 else None
    )
    assert run(*KEYS, "--interval", "1", "--max-failures", "1") == 0
    assert deployment.alias("webhook")["FunctionVersion"] == "2"

    terraform_apply(deployment, "3")
    traffic.plays[:] = [lambda step: put_lambda_metric("webhook", "Errors", "3", 1)]
    assert run(*KEYS, "--interval", "1", "--max-failures", "1") == rollout.EXIT_ROLLED_BACK
    assert len(traffic.waited) == 2 + 2  # one error a step: the second step's total is 2 > 1
    assert deployment.alias("webhook")["FunctionVersion"] == "2"


def test_an_interrupted_rollout_resumes_where_it_stopped_and_converges(
    deployment: Deployment, traffic: Traffic, capsys: pytest.CaptureFixture[str]
) -> None:
    terraform_apply(deployment)

    def interrupt(step: int) -> None:
        if step == 2:
            raise KeyboardInterrupt  # Ctrl-C (or a lost terminal) while the 50 % step is watched

    traffic.plays.append(interrupt)
    assert run(*KEYS, "--interval", "30") == 130
    for key in KEYS:
        assert deployment.alias(key)["FunctionVersion"] == "1"
        assert weights(deployment.alias(key)) == {"2": 0.5}
    assert "run `jitrunners rollout` again" in capsys.readouterr().out

    traffic.plays.clear()
    traffic.seen.clear()
    assert run(*KEYS, "--interval", "30") == 0
    # The interrupted step is watched again before the promotion; no step is redone below it.
    assert traffic.seen == [{"webhook": {"2": 0.5}, "scale-up": {"2": 0.5}}]
    for key in KEYS:
        assert deployment.alias(key)["FunctionVersion"] == "2"
        assert weights(deployment.alias(key)) == {}
    assert "resuming at 50%" in capsys.readouterr().out

    traffic.seen.clear()
    assert run(*KEYS, "--interval", "30") == 0  # and once more: nothing left to do
    assert traffic.seen == []


def test_abort_sends_an_interrupted_rollout_back(deployment: Deployment, traffic: Traffic) -> None:
    terraform_apply(deployment)
    traffic.plays.append(lambda step: (_ for _ in ()).throw(KeyboardInterrupt))
    assert run(*KEYS, "--interval", "1") == 130
    assert weights(deployment.alias("webhook")) == {"2": 0.1}
    assert run(*KEYS, "--abort") == 0
    for key in KEYS:
        assert deployment.alias(key)["FunctionVersion"] == "1"
        assert weights(deployment.alias(key)) == {}


def test_nothing_new_is_nothing_to_do(
    deployment: Deployment, traffic: Traffic, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(*KEYS) == 0
    assert traffic.waited == []
    assert "nothing to roll out" in capsys.readouterr().out
    assert deployment.alias("webhook")["FunctionVersion"] == "1"


def test_a_stopped_function_is_not_canaried(
    deployment: Deployment, traffic: Traffic, capsys: pytest.CaptureFixture[str]
) -> None:
    terraform_apply(deployment)
    deployment.lam.put_function_concurrency(
        FunctionName="jitrunners-webhook", ReservedConcurrentExecutions=0
    )
    assert run(*KEYS) == 1
    assert "jitrunners-webhook: reserved concurrency 0" in capsys.readouterr().err
    assert deployment.alias("webhook")["FunctionVersion"] == "1"
    assert traffic.waited == []


def test_an_unknown_prefix_is_one_clear_line(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["rollout", "webhook", "--prefix", "nope", "--region", "eu-west-1"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("jitrunners rollout: no jitrunners deployment with prefix 'nope'")
    assert err.count("\n") == 1


def test_a_function_missing_is_an_incomplete_deployment(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("redrive") == 3
    assert "the deployment 'jitrunners' is incomplete" in capsys.readouterr().err


def test_no_credentials_is_one_clear_line(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    from jitrunners.aws import clients

    clients.reset()
    assert run("webhook") == 4
    assert capsys.readouterr().err.startswith("jitrunners rollout: no AWS credentials")


def test_access_denied_is_one_clear_line(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    def deny(**_: Any) -> Any:
        body = {"Error": {"Code": "AccessDeniedException", "Message": "not allowed"}}
        return AWSResponse("https://lambda", 403, {}, None), body

    client("lambda").meta.events.register("before-call.lambda.GetAlias", deny)
    assert run("webhook") == 4
    assert capsys.readouterr().err == (
        "jitrunners rollout: access denied: GetAlias (AccessDeniedException): not allowed\n"
    )
