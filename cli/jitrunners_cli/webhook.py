"""`jitrunners webhook test`: a signed `ping` and a synthetic `workflow_job` to the deployed URL.

The synthetic job is a `queued` delivery sent with the `X-Jitrunners-Dry-Run: 1` header: the
webhook verifies its signature, applies the allowlist and the replay window and routes its labels to
a template exactly as it would a real one, then answers with what it would do and claims and
enqueues nothing, so nothing launches. It is signed with the deployment's own webhook secret, read
from SSM and never printed.
"""

from __future__ import annotations

import argparse
import json
import uuid
from datetime import UTC, datetime
from typing import Any, Final

from jitrunners.lifecycle.intake import DRY_RUN_HEADER
from jitrunners_cli import aws, render
from jitrunners_cli.deployment import Deployment, find
from jitrunners_cli.errors import EXIT_NOT_FOUND, CliError

# A job and run id no real job of ours has (GitHub's ids are far larger).
SYNTHETIC_JOB_ID: Final = 1
TIMEOUT_S: Final = (5.0, 15.0)


def register(subparsers: argparse._SubParsersAction, parents: list) -> None:  # type: ignore[type-arg]
    webhook = subparsers.add_parser("webhook", help="check the deployed webhook")
    actions = webhook.add_subparsers(dest="action", metavar="ACTION", required=True)
    test = actions.add_parser(
        "test",
        parents=parents,
        help="send a signed ping and a synthetic workflow_job; report the answers",
        description="POST a signed ping and a signed workflow_job (action queued, for the "
        "template's labels, as a dry run: nothing is queued or launched) to the deployed "
        "webhook URL.",
    )
    test.add_argument("--template", help="runner template whose labels the job asks for")
    test.add_argument("--repo", help="OWNER/REPO of the synthetic job (default: an allowed one)")
    test.add_argument("--url", help="webhook URL (default: the deployed API's)")
    test.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    deployment = find(args.prefix)
    report = check(deployment, template=args.template, repo=args.repo, url=args.url)
    if args.json:
        render.emit_json(report)
    else:
        print(f"webhook {report['url']}")
        for key in ("ping", "workflow_job"):
            answer = report[key]
            verdict = "ok" if answer["ok"] else "FAILED"
            body = json.dumps(answer["body"], separators=(",", ":"))
            print(render.clip(f"  {key:<13} {answer['status']} {body}  {verdict}", 80))
            print(render.clip(f"  {'':<13} {answer['meaning']}", 80))
    failed = [key for key in ("ping", "workflow_job") if not report[key]["ok"]]
    if failed:
        raise CliError(
            f"{' and '.join(failed)} not answered as expected: {report[failed[0]]['meaning']}"
        )
    return 0


def _secret(deployment: Deployment) -> str:
    from jitrunners.signature import usable_secrets

    name = deployment.names.webhook_secret_param
    raw = aws.parameter(name, decrypt=True)
    if raw is None:
        raise CliError(f"no parameter {name}", EXIT_NOT_FOUND)
    usable = usable_secrets([line.rstrip("\r") for line in raw.split("\n") if line.strip()])
    if not usable:
        raise CliError(
            f"{name} holds no usable secret (unset, the placeholder or under 16 bytes): the "
            "webhook refuses every delivery; `jitrunners setup github-app` stores one"
        )
    return usable[0]


def _repo(deployment: Deployment, wanted: str | None) -> str:
    if wanted:
        return wanted
    settings = deployment.settings
    if settings.allowed_repos:
        return settings.allowed_repos[0]
    owner = settings.allowed_owners[0] if settings.allowed_owners else "jitrunners"
    return f"{owner}/jitrunners-webhook-test"


def payload(repo: str, labels: list[str], now: datetime) -> dict[str, Any]:
    """A `workflow_job` `queued` delivery's body, as GitHub shapes it (the fields we read)."""
    owner, name = repo.split("/", 1)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "action": "queued",
        "workflow_job": {
            "id": SYNTHETIC_JOB_ID,
            "run_id": SYNTHETIC_JOB_ID,
            "run_attempt": 1,
            "name": "jitrunners webhook test",
            "labels": labels,
            "status": "queued",
            "created_at": stamp,
            "started_at": stamp,
            "conclusion": None,
            "runner_name": None,
        },
        "repository": {
            "full_name": repo,
            "name": name,
            "private": True,
            "visibility": "private",
            "owner": {"login": owner},
        },
        "sender": {"login": "jitrunners-cli"},
    }


def _post(
    url: str, secret: str, event: str, body: bytes, extra: dict[str, str] | None = None
) -> tuple[int, Any]:
    import requests

    from jitrunners.signature import sign

    headers = {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/jitrunners-cli",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(secret, body),
        **(extra or {}),
    }
    try:
        response = requests.post(url, data=body, headers=headers, timeout=TIMEOUT_S)
    except requests.RequestException as exc:
        raise CliError(f"cannot reach {url}: {type(exc).__name__}") from None
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, response.text[:200]


def _meaning(status: int, body: Any, *, ping: bool, param: str) -> tuple[bool, str]:
    data = body if isinstance(body, dict) else {}
    error, ignored = data.get("error"), data.get("ignored")
    if ping and status == 200 and data.get("msg") == "pong":
        return True, "signature verified with the stored secret; pong"
    if not ping and status in (200, 202) and data.get("dry_run") is True:
        return True, (
            f"signature, allowlist and labels accepted; would {data.get('would')} on "
            f"{data.get('template')} (dry run: nothing queued)"
        )
    if not ping and data.get("accepted") is True:
        return False, (
            "the webhook ignored the dry-run header (Lambdas older than the CLI) and queued a "
            "launch for synthetic job 1; scale-up drops it, GitHub not knowing that job"
        )
    if error == "secret_not_configured":
        return False, f"the webhook has no usable secret: store one in {param}"
    if error == "bad_signature":
        return False, (
            "the webhook refused our signature: it reads another secret (a rotation within "
            "its 5-minute cache, or another deployment's URL)"
        )
    if ignored == "no_template":
        return False, "no runner template matches these labels"
    if ignored in ("owner_not_allowed", "repo_not_allowed", "public_repo"):
        return False, f"the allowlist refused the repository ({ignored}): pass --repo"
    if status >= 500:
        return False, f"the webhook failed on its side ({error or status}): see its logs"
    return False, f"unexpected answer {status}"


def check(
    deployment: Deployment,
    *,
    template: str | None = None,
    repo: str | None = None,
    url: str | None = None,
) -> dict[str, Any]:
    url = url or deployment.webhook_url()
    secret = _secret(deployment)
    templates = deployment.templates()
    chosen = next((t for t in templates if t.name == template), None) if template else templates[0]
    if chosen is None:
        known = ", ".join(t.name for t in templates)
        raise CliError(f"no runner template {template!r} (known: {known})", EXIT_NOT_FOUND)
    repo = _repo(deployment, repo)
    if repo.count("/") != 1:
        raise CliError(f"--repo {repo!r}: expected OWNER/REPO")
    param = deployment.names.webhook_secret_param
    report: dict[str, Any] = {"url": url}
    ping_body = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 0}).encode()
    status, body = _post(url, secret, "ping", ping_body)
    ok, meaning = _meaning(status, body, ping=True, param=param)
    report["ping"] = {"status": status, "body": body, "ok": ok, "meaning": meaning}
    job = payload(repo, list(chosen.labels), datetime.now(UTC))
    dry_run = {DRY_RUN_HEADER: "1"}
    status, body = _post(url, secret, "workflow_job", json.dumps(job).encode(), dry_run)
    ok, meaning = _meaning(status, body, ping=False, param=param)
    report["workflow_job"] = {
        "status": status,
        "body": body,
        "ok": ok,
        "meaning": meaning,
        "action": "queued",
        "dry_run": True,
        "template": chosen.name,
        "labels": list(chosen.labels),
        "repo": repo,
    }
    return report
