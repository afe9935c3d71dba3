"""The workflow_job payload parser and the job message of DESIGN §4."""

from __future__ import annotations

import json

import pytest

from jitrunners.models import JobMessage, MessageError, PayloadError, WorkflowJob
from tests.support.webhooks import workflow_job_payload


def test_payload_parses_the_fields_we_use() -> None:
    job = WorkflowJob.from_payload(
        workflow_job_payload(job_id=5, run_id=6, run_attempt=2, created_at="2026-11-22T10:00:00Z")
    )
    assert (job.job_id, job.run_id, job.run_attempt) == (5, 6, 2)
    assert job.repo == "acme/widgets"
    assert job.owner == "acme"
    assert job.installation_id == 99
    assert job.private is True
    assert job.queued_at == "2026-11-22T10:00:00Z"


def test_token_mode_payload_without_installation() -> None:
    assert (
        WorkflowJob.from_payload(workflow_job_payload(installation_id=None)).installation_id is None
    )


def test_public_visibility_wins_over_private_flag() -> None:
    payload = workflow_job_payload(private=True)
    payload["repository"]["visibility"] = "public"
    assert WorkflowJob.from_payload(payload).private is False


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: p.pop("workflow_job"), "missing field workflow_job.labels"),
        (lambda p: p["workflow_job"].pop("id"), "missing field workflow_job.id"),
        (lambda p: p["workflow_job"].update(id="5"), "field workflow_job.id has the wrong type"),
        (lambda p: p["workflow_job"].update(id=True), "field workflow_job.id has the wrong type"),
        (lambda p: p["workflow_job"].update(id=-1), "field workflow_job.id must be positive"),
        (lambda p: p["workflow_job"].update(labels=[1]), "labels must be a list of strings"),
        (lambda p: p["repository"].update(full_name="no-slash"), "full_name must be"),
        (lambda p: p["repository"].update(full_name="a/b/c"), "full_name must be"),
        (lambda p: p["repository"].update(private="yes"), "repository.private has the wrong type"),
        (lambda p: p.update(installation={"id": "9"}), "installation.id has the wrong type"),
    ],
)
def test_bad_payloads_name_the_field(mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    payload = workflow_job_payload()
    mutate(payload)
    with pytest.raises(PayloadError, match=message):
        WorkflowJob.from_payload(payload)


def _launch() -> JobMessage:
    job = WorkflowJob.from_payload(workflow_job_payload(created_at="2026-11-22T10:00:00Z"))
    return JobMessage.launch_for(job, "linux-x64", "d-1")


def test_launch_message_has_exactly_the_design_fields() -> None:
    body = json.loads(_launch().to_json())
    assert body == {
        "v": 1,
        "kind": "launch",
        "job_id": 4242,
        "run_id": 777,
        "run_attempt": 1,
        "repo": "acme/widgets",
        "owner": "acme",
        "installation_id": 99,
        "labels": ["self-hosted", "linux-x64"],
        "template": "linux-x64",
        "delivery_id": "d-1",
        "queued_at": "2026-11-22T10:00:00Z",
        "attempt": 1,
    }


def test_messages_round_trip_and_start_carries_the_instance() -> None:
    launch = _launch()
    assert JobMessage.from_json(launch.to_json()) == launch
    start = launch.start_for("i-0123456789abcdef0")
    assert json.loads(start.to_json())["instance_id"] == "i-0123456789abcdef0"
    assert JobMessage.from_json(start.to_json()) == start
    again = start.relaunch()
    assert (again.kind, again.instance_id, again.attempt) == ("launch", None, 2)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("nope", "not JSON"),
        ("[]", "not a JSON object"),
        ('{"v": 2, "kind": "launch"}', "unsupported message version 2"),
        ('{"kind": "launch"}', "unsupported message version None"),
        ('{"v": 1, "kind": "explode"}', "unknown message kind"),
        ('{"v": 1, "kind": "launch", "job_id": 1}', "is missing or has the wrong type"),
    ],
)
def test_unknown_or_broken_messages_are_refused(body: str, message: str) -> None:
    with pytest.raises(MessageError, match=message):
        JobMessage.from_json(body)


def test_start_message_without_instance_is_refused() -> None:
    body = json.loads(_launch().to_json())
    body["kind"] = "start"
    with pytest.raises(MessageError, match="needs instance_id"):
        JobMessage.from_json(json.dumps(body))


@pytest.mark.parametrize(
    "instance_id",
    [
        "i-0; rm -rf /",
        "i-0123456789abcdef0\n",
        "../../jit/i-0123456789abcdef0",
        "i-12",
        "I-01234567",
        "",
    ],
)
@pytest.mark.parametrize("kind", ["start", "rerun"])
def test_message_with_an_instance_id_not_shaped_like_one_is_rejected(
    kind: str, instance_id: str
) -> None:
    """The id reaches EC2/SSM calls and a RunCommand's parameter name: it is checked at parse."""
    body = json.loads(_launch().start_for("i-0123456789abcdef0").to_json())
    body.update(kind=kind, instance_id=instance_id)
    with pytest.raises(MessageError, match="instance_id"):
        JobMessage.from_json(json.dumps(body))


def test_repository_without_private_field_is_treated_as_public() -> None:
    """A payload that does not say the repository is private is not taken for private: the
    public-repository refusal must fail safe."""
    payload = workflow_job_payload(private=True)
    del payload["repository"]["private"]
    del payload["repository"]["visibility"]
    assert WorkflowJob.from_payload(payload).private is False


@pytest.mark.parametrize(
    ("name", "instance", "launched_for"),
    [
        ("i-0123456789abcdef0-4242-1", "i-0123456789abcdef0", (4242, 1)),
        ("i-0123456789abcdef0", "i-0123456789abcdef0", None),  # named before names carried jobs
        ("i-01234567-9-3", "i-01234567", (9, 3)),
        ("i-0123456789abcdef0-4242", None, None),
        ("i-0123456789abcdef0-4242-1-x", None, None),
        ("runner-i-0123456789abcdef0", None, None),
        ("GitHub Actions 7", None, None),
        ("", None, None),
        (None, None, None),
    ],
)
def test_runner_names_say_instance_and_launched_for_job(
    name: str | None, instance: str | None, launched_for: tuple[int, int] | None
) -> None:
    from jitrunners.models import runner_instance, runner_launched_for, runner_name

    assert runner_instance(name) == instance
    assert runner_launched_for(name) == launched_for
    if launched_for is not None and instance is not None:
        assert runner_name(instance, *launched_for) == name


def test_a_start_says_whether_its_jit_config_is_stored_and_a_relaunch_forgets_it() -> None:
    start = _launch().start_for("i-0123456789abcdef0", jit_stored=True)
    assert JobMessage.from_json(start.to_json()).jit_stored is True
    plain = _launch().start_for("i-0123456789abcdef0")
    assert "jit_stored" not in json.loads(plain.to_json())  # bodies as before the field
    assert start.relaunch().jit_stored is False
    body = json.loads(start.to_json())
    for bad in ("yes", 1):
        with pytest.raises(MessageError, match="jit_stored"):
            JobMessage.from_json(json.dumps(body | {"jit_stored": bad}))
    launch = json.loads(_launch().to_json())
    with pytest.raises(MessageError, match="jit_stored"):
        JobMessage.from_json(json.dumps(launch | {"jit_stored": True}))
