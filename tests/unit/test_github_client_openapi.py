"""Every client call against every answer GitHub's published description allows.

Each answer comes from the operation's schema (tests/support/github_openapi.py): every field, only
the required ones, the required ones with every nullable null, each anyOf/oneOf alternative in
turn, and the description's own examples (some of which leave out fields the schema requires: real
answers can too). Every request the client sends is checked against the same description (its
query parameters and body), so a call GitHub would refuse fails here, not in production.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from jitrunners.github.auth import AppAuth, TokenAuth
from jitrunners.github.client import GitHubClient, RunnerScope
from tests.support import github_openapi
from tests.support.github import API, private_key_pem

ORG = RunnerScope("org", "acme")
REPO = RunnerScope("repo", "acme", "acme/widgets")


@dataclass(frozen=True)
class Case:
    """One client method: the request it makes and how to call it and judge its result."""

    method: str
    path: str  # concrete, as the client sends it
    status: int
    call: Callable[[GitHubClient], Any]
    check: Callable[[Any, Any], None] = lambda result, body: None
    app: bool = False  # the call needs GitHub App credentials (App JWT)
    shape: Callable[[Any], Any] = lambda body: body  # what the caller's request pins down
    errata: bool = False  # answers from the corrected schema too (github_openapi.ERRATA)


def _named(name: str) -> Callable[[Any], Any]:
    def pin(body: Any) -> Any:
        for runner in body.get("runners", []) if isinstance(body, dict) else []:
            runner["name"] = name
        return body

    return pin


def _list(result: Any) -> list[Any]:
    return list(result)


def _check_installations(result: Any, body: Any) -> None:
    assert [i.id for i in result] == [item["id"] for item in body]
    for installation, item in zip(result, body, strict=True):
        account = item.get("account") or {}
        assert installation.account == (account.get("login") or account.get("slug") or "")


def _check_deliveries(result: Any, body: Any) -> None:
    assert [d.id for d in result] == [item["id"] for item in body]
    assert all(isinstance(d.delivered_at, datetime) for d in result)


CASES: dict[str, Case] = {
    "get_job": Case(
        "GET",
        "/repos/acme/widgets/actions/jobs/7",
        200,
        lambda c: c.get_job("acme/widgets", 7, None),
        lambda r, b: assert_equal((r.id, r.runner_name), (b["id"], b.get("runner_name"))),
    ),
    "generate_jitconfig org": Case(
        "POST",
        "/orgs/acme/actions/runners/generate-jitconfig",
        201,
        lambda c: c.generate_jitconfig(ORG, "i-0abc", ["self-hosted", "linux"], 1, None),
        lambda r, b: assert_equal(r.runner_id, b["runner"]["id"]),
    ),
    "generate_jitconfig repo": Case(
        "POST",
        "/repos/acme/widgets/actions/runners/generate-jitconfig",
        201,
        lambda c: c.generate_jitconfig(REPO, "i-0abc", ["self-hosted"], 1, None),
        lambda r, b: assert_equal(r.encoded, b["encoded_jit_config"]),
    ),
    "get_runner_group": Case(
        "GET",
        "/orgs/acme/actions/runner-groups/3",
        200,
        lambda c: c.get_runner_group("acme", 3, None),
        lambda r, b: assert_equal((r.id, r.visibility), (b["id"], b.get("visibility", ""))),
    ),
    "find_runner org": Case(
        "GET",
        "/orgs/acme/actions/runners",
        200,
        lambda c: c.find_runner(ORG, "i-0abc", None),
        lambda r, b: assert_equal(r is not None, bool(b["runners"])),
        shape=_named("i-0abc"),
    ),
    "find_runner repo": Case(
        "GET",
        "/repos/acme/widgets/actions/runners",
        200,
        lambda c: c.find_runner(REPO, "i-0abc", None),
        lambda r, b: assert_equal(r is not None, bool(b["runners"])),
        shape=_named("i-0abc"),
    ),
    "list_runners": Case(
        "GET",
        "/orgs/acme/actions/runners",
        200,
        lambda c: _list(c.list_runners(ORG, None)),
        lambda r, b: assert_equal([x.id for x in r], [x["id"] for x in b["runners"]]),
    ),
    "delete_runner org": Case(
        "DELETE",
        "/orgs/acme/actions/runners/5",
        204,
        lambda c: c.delete_runner(ORG, 5, None),
        lambda r, b: assert_equal(r, True),
    ),
    "delete_runner repo": Case(
        "DELETE",
        "/repos/acme/widgets/actions/runners/5",
        204,
        lambda c: c.delete_runner(REPO, 5, None),
        lambda r, b: assert_equal(r, True),
    ),
    "rerun_job": Case(
        "POST",
        "/repos/acme/widgets/actions/jobs/7/rerun",
        201,
        lambda c: c.rerun_job("acme/widgets", 7, None),
    ),
    "list_deliveries": Case(
        "GET",
        "/app/hook/deliveries",
        200,
        lambda c: _list(c.list_deliveries()),
        _check_deliveries,
        app=True,
    ),
    "redeliver": Case(
        "POST", "/app/hook/deliveries/9/attempts", 202, lambda c: c.redeliver(9), app=True
    ),
    "list_installations": Case(
        "GET",
        "/app/installations",
        200,
        lambda c: _list(c.list_installations()),
        _check_installations,
        app=True,
        errata=True,
    ),
    "list_runs": Case(
        "GET",
        "/repos/acme/widgets/actions/runs",
        200,
        lambda c: _list(c.list_runs("acme/widgets", "queued", None)),
        lambda r, b: assert_equal([x.id for x in r], [x["id"] for x in b["workflow_runs"]]),
    ),
    "list_run_jobs": Case(
        "GET",
        "/repos/acme/widgets/actions/runs/11/jobs",
        200,
        lambda c: _list(c.list_run_jobs("acme/widgets", 11, None)),
        lambda r, b: assert_equal([x.id for x in r], [x["id"] for x in b["jobs"]]),
    ),
    "run_job_statuses": Case(
        "GET",
        "/repos/acme/widgets/actions/runs/11/jobs",
        200,
        lambda c: _list(c.run_job_statuses("acme/widgets", 11, None)),
        lambda r, b: assert_equal(
            [(x.id, x.status, x.conclusion, x.runner_name) for x in r],
            [(x["id"], x["status"], x.get("conclusion"), x.get("runner_name")) for x in b["jobs"]],
        ),
    ),
}


def assert_equal(got: Any, want: Any) -> None:
    assert got == want, f"{got!r} != {want!r}"


def _answers(case: Case) -> Iterator[tuple[str, Any]]:
    description = github_openapi.load()
    op = description.operation(case.method, case.path)
    pointer = description.response_schema(op, case.status)
    if pointer is None:  # an answer without a body
        yield "no body", None
        return
    for index, example in enumerate(description.examples_for(op, case.status)):
        yield f"example {index}", example
    yield from description.variants(pointer)
    if case.errata:
        yield from description.variants(description.response_schema(op, case.status, errata=False))


class _Recorder:
    """Serves one answer and checks each request against the description."""

    def __init__(self, case: Case) -> None:
        self.case = case
        self.problems: list[str] = []

    def __call__(self, request: Any) -> tuple[int, dict[str, str], str]:
        split = urlsplit(request.url)
        body = json.loads(request.body) if request.body else None
        errors = github_openapi.load().request_errors(
            request.method, split.path, parse_qs(split.query), body
        )
        self.problems += [f"request {request.method} {split.path}: {e}" for e in errors]
        return self.status, {}, self.text

    def serve(self, body: Any) -> None:
        self.status = self.case.status
        self.text = "" if body is None else json.dumps(body)


def _client(app: bool) -> GitHubClient:
    auth = AppAuth("12345", private_key_pem()) if app else TokenAuth("ghp_secret")
    return GitHubClient(auth, API, sleep=lambda s: None)


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_client_reads_every_answer_the_description_allows(name: str) -> None:
    case = CASES[name]
    recorder = _Recorder(case)
    failures: list[str] = []
    tried = 0
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_callback(
            case.method, re.compile(re.escape(API + case.path) + r"(\?.*)?$"), recorder
        )
        client = _client(case.app)
        for variant, answer in _answers(case):
            body = case.shape(json.loads(json.dumps(answer)))
            recorder.serve(body)
            tried += 1
            try:
                case.check(case.call(client), body)
            except Exception as exc:  # noqa: BLE001 - every variant's failure, not the first
                failures.append(f"{variant}: {type(exc).__name__}: {exc}")
    assert tried >= 1
    assert not recorder.problems, "\n".join(sorted(set(recorder.problems)))
    assert not failures, f"{len(failures)} of {tried} answers broke {name}:\n" + "\n".join(
        failures[:20]
    )


def test_installation_tokens_are_minted_from_every_answer_the_description_allows() -> None:
    description = github_openapi.load()
    path = "/app/installations/42/access_tokens"
    op = description.operation("POST", path)
    answers = list(description.variants(description.response_schema(op, 201)))
    answers += [("example", e) for e in description.examples_for(op, 201)]
    failures = []
    for variant, answer in answers:
        with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
            recorder = _Recorder(Case("POST", path, 201, lambda c: None))
            recorder.serve(answer)
            mock.add_callback("POST", API + path, recorder)
            job = {"id": 7, "status": "queued", "conclusion": None, "runner_name": None}
            mock.get(API + "/repos/acme/widgets/actions/jobs/7", json=job)
            try:
                _client(app=True).get_job("acme/widgets", 7, 42)
                auth = mock.calls[-1].request.headers["Authorization"]
                assert auth == f"Bearer {answer['token']}"
            except Exception as exc:  # noqa: BLE001 - every variant's failure, not the first
                failures.append(f"{variant}: {type(exc).__name__}: {exc}")
            assert not recorder.problems, recorder.problems
    assert len(answers) >= 3
    assert not failures, "\n".join(failures)


def test_every_client_call_is_driven_by_a_case() -> None:
    public = {
        name
        for name, value in vars(GitHubClient).items()
        if callable(value) and not name.startswith("_")
    } - {"without_waiting", "once"}  # copies of the client, no request
    covered = {name.split()[0] for name in CASES}
    assert public == covered, f"client calls without a case: {sorted(public - covered)}"
