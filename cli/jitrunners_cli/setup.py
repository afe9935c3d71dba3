"""`jitrunners setup github-app --org ORG`: create the deployment's GitHub App from a manifest.

GitHub's manifest flow: a page on 127.0.0.1 posts the manifest (permissions this deployment
needs, its webhook URL, the `workflow_job` event) to GitHub; GitHub creates the App and sends the
browser back here with a one-time code, which `POST /app-manifests/{code}/conversions` turns into
the App's id, private key and webhook secret. The key and the secret go straight into the module's
SSM SecureStrings; no secret is printed or written anywhere else.
"""

from __future__ import annotations

import argparse
import functools
import html
import json
import os
import secrets
import sys
import threading
import webbrowser
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from urllib.parse import parse_qs, quote, urlsplit

from jitrunners_cli import aws, render
from jitrunners_cli.deployment import GITHUB_URL_ENV, Deployment, find
from jitrunners_cli.errors import EXIT_USAGE, CliError

GITHUB_WEB: Final = "https://github.com"
GITHUB_API: Final = "https://api.github.com"
API_VERSION: Final = "2022-11-28"


def register(subparsers: argparse._SubParsersAction, parents: list) -> None:  # type: ignore[type-arg]
    setup = subparsers.add_parser("setup", help="one-time setup")
    what = setup.add_subparsers(dest="what", metavar="WHAT", required=True)
    app = what.add_parser(
        "github-app",
        parents=parents,
        help="create the GitHub App from a manifest and store its credentials in SSM",
        description="Create a GitHub App for the organization with exactly the permissions "
        "this deployment uses, pointed at its webhook; store the App's private key and webhook "
        "secret in the module's SSM SecureStrings.",
    )
    app.add_argument("--org", required=True, help="organization that owns the App")
    app.add_argument("--ghes-url", help="GitHub Enterprise Server URL (https://github.example)")
    app.add_argument("--name", help="App name (default: <prefix>-<org>; unique on GitHub)")
    app.add_argument("--port", type=int, default=0, help="local port of the form (default: any)")
    app.add_argument("--no-browser", action="store_true", help="only print the form's URL")
    app.add_argument(
        "--timeout", type=float, default=600.0, help="seconds to wait for GitHub (default 600)"
    )
    app.set_defaults(func=run)


def github_urls(ghes_url: str | None, deployment: Deployment) -> tuple[str, str]:
    """(web, API) base URLs: GHES serves its API under /api/v3; otherwise github.com, or what
    JITRUNNERS_GITHUB_URL and the Lambdas' GITHUB_API_URL say (the local stack's simulator)."""
    if ghes_url:
        if not ghes_url.startswith(("https://", "http://")):
            raise CliError(f"--ghes-url {ghes_url!r}: expected https://HOST", EXIT_USAGE)
        web = ghes_url.rstrip("/")
        return web, f"{web}/api/v3"
    web = os.environ.get(GITHUB_URL_ENV, "").strip().rstrip("/") or GITHUB_WEB
    api = (deployment.environment or {}).get("GITHUB_API_URL", "").strip().rstrip("/")
    return web, api or GITHUB_API


def permissions(deployment: Deployment) -> dict[str, str]:
    """What the Lambdas' GitHub calls need, and nothing more (README "GitHub App permissions"):
    runners of an org-scope template need the organization's self-hosted runners (generate-
    jitconfig, list, delete, read its runner group); of a repo-scope template, the repository's
    administration; job status, runs and their jobs need actions read, re-runs of interrupted
    jobs actions write; metadata read every App has."""
    scopes = {t.scope for t in deployment.templates()}
    wanted = {"metadata": "read"}
    if "org" in scopes:
        wanted["organization_self_hosted_runners"] = "write"
    if "repo" in scopes:
        wanted["administration"] = "write"
    env = deployment.environment or {}
    rerun = env.get("RERUN_INTERRUPTED_JOBS", "false").strip().lower() in ("1", "true", "yes")
    wanted["actions"] = "write" if rerun else "read"
    return dict(sorted(wanted.items()))


def manifest(
    deployment: Deployment, org: str, name: str | None, webhook_url: str, redirect_url: str
) -> dict[str, Any]:
    return {
        "name": name or f"{deployment.prefix}-{org}",
        "url": webhook_url.rsplit("/webhook", 1)[0] or webhook_url,
        "description": f"jitrunners ({deployment.prefix}): ephemeral self-hosted runners on EC2",
        "hook_attributes": {"url": webhook_url, "active": True},
        "redirect_url": redirect_url,
        "public": False,
        "default_permissions": permissions(deployment),
        "default_events": ["workflow_job"],
    }


def form_page(action: str, manifest_json: str) -> bytes:
    """The one page the browser sees: it posts the manifest to GitHub."""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>jitrunners: create the GitHub App</title></head>
<body onload="document.forms[0].submit()">
<form method="post" action="{html.escape(action)}">
<input type="hidden" name="manifest" value="{html.escape(manifest_json)}">
<p>Posting the App manifest to GitHub ...</p>
<button type="submit">Create the GitHub App</button>
</form></body></html>
""".encode()


DONE_PAGE: Final = b"""<!doctype html><html><head><meta charset="utf-8">
<title>jitrunners</title></head><body><p>The App is created. Back to the terminal.</p></body></html>
"""


class _Flow:
    """The local server's state: the code GitHub sends back, once."""

    def __init__(self, state: str, page: bytes) -> None:
        self.state = state
        self.page = page
        self.code: str | None = None
        self.error: str | None = None
        self.done = threading.Event()


def _server(flow: _Flow, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return  # the terminal shows our own lines only

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            split = urlsplit(self.path)
            if split.path == "/":
                self._answer(200, flow.page)
                return
            if split.path != "/callback":
                self._answer(404, b"not found")
                return
            query = parse_qs(split.query)
            if query.get("state", [""])[0] != flow.state:
                # Not the redirect of the manifest we posted: never exchange its code.
                self._answer(400, b"state mismatch")
                return
            code = query.get("code", [""])[0]
            if not code:
                self._answer(400, b"no code")
                return
            if flow.code is None:
                flow.code = code
                flow.done.set()
            self._answer(200, DONE_PAGE)

    return ThreadingHTTPServer(("127.0.0.1", port), Handler)


def convert(api_url: str, code: str) -> dict[str, Any]:
    """`POST /app-manifests/{code}/conversions` (no authentication: the code is one-time)."""
    import requests

    url = f"{api_url}/app-manifests/{quote(code, safe='')}/conversions"
    headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": API_VERSION}
    try:
        response = requests.post(url, headers=headers, timeout=(5.0, 30.0))
    except requests.RequestException as exc:
        raise CliError(f"cannot reach GitHub at {api_url}: {type(exc).__name__}") from None
    if response.status_code != 201:
        reason = {404: "the code is unknown or already used", 422: "GitHub refused the manifest"}
        raise CliError(
            f"GitHub did not convert the manifest ({response.status_code}: "
            f"{reason.get(response.status_code, 'unexpected answer')})"
        )
    body = response.json()
    for key in ("id", "pem", "webhook_secret", "html_url"):
        if not body.get(key):
            raise CliError(f"GitHub's conversion answer has no {key}")
    return dict(body)


def store(deployment: Deployment, app: dict[str, Any]) -> dict[str, Any]:
    """The App's key and webhook secret into the module's SecureStrings (their KMS key)."""
    names = deployment.names
    key_id = aws.parameter_key_id(names.webhook_secret_param)
    key_existed = aws.parameter_key_id(names.github_app_key_param) is not None or (
        aws.parameter(names.github_app_key_param) is not None
    )
    # terraform/secrets.tf: the App key parameter is Advanced (a 4096-bit PEM is over 4 KB).
    aws.put_parameter(
        names.github_app_key_param, app["pem"], secure=True, key_id=key_id, tier="Advanced"
    )
    aws.put_parameter(names.webhook_secret_param, app["webhook_secret"], secure=True, key_id=key_id)
    return {
        "github_app_key": names.github_app_key_param,
        "webhook_secret": names.webhook_secret_param,
        "key_parameter_created": not key_existed,
    }


def installation_url(app: dict[str, Any]) -> str:
    # html_url is <web>/apps/<slug> (github.com) or <ghes>/github-apps/<slug>.
    return f"{str(app['html_url']).rstrip('/')}/installations/new"


def run(args: argparse.Namespace, *, opened: Callable[[str], None] | None = None) -> int:
    deployment = find(args.prefix)
    deployment.templates()  # fail before GitHub when the deployment cannot be read
    webhook_url = deployment.webhook_url()
    web, api = github_urls(args.ghes_url, deployment)
    state = secrets.token_urlsafe(16)
    flow = _Flow(state, b"")
    server = _server(flow, args.port)
    local = f"http://127.0.0.1:{server.server_address[1]}"
    body = manifest(deployment, args.org, args.name, webhook_url, f"{local}/callback")
    action = f"{web}/organizations/{quote(args.org, safe='')}/settings/apps/new?state={state}"
    flow.page = form_page(action, json.dumps(body))
    thread = threading.Thread(target=server.serve_forever, name="setup-form", daemon=True)
    thread.start()
    try:
        # Instructions on stderr: stdout carries the result (a table, or JSON with --json).
        say = functools.partial(print, file=sys.stderr, flush=True)
        say(f"Open {local}/ in a browser on this machine: it posts the App manifest to {web} "
            f"(organization {args.org}).")  # fmt: skip
        say(render.clip(f"Permissions: {json.dumps(body['default_permissions'])}", 200))
        say(f"Webhook: {webhook_url} (event workflow_job)")
        (opened or (lambda url: None if args.no_browser else webbrowser.open(url)))(f"{local}/")
        if not flow.done.wait(args.timeout):
            raise CliError(f"no answer from GitHub within {args.timeout:.0f} s (--timeout)")
    finally:
        server.shutdown()
        server.server_close()
    assert flow.code is not None
    app = convert(api, flow.code)
    stored = store(deployment, app)
    result = {
        "app_id": app["id"],
        "slug": app.get("slug"),
        "html_url": app["html_url"],
        "installation_url": installation_url(app),
        "permissions": app.get("permissions") or body["default_permissions"],
        "stored": {k: v for k, v in stored.items() if k != "key_parameter_created"},
        "next": next_steps(deployment, app, stored, args.org),
    }
    if args.json:
        render.emit_json(result)
        return 0
    print(f"GitHub App {app.get('slug') or app['id']} created: id {app['id']}, {app['html_url']}")
    print(f"Stored its private key in {stored['github_app_key']} and its webhook secret in "
          f"{stored['webhook_secret']} (SecureString).")  # fmt: skip
    print(f"Install it on {args.org}: {result['installation_url']}")
    for line in result["next"]:
        print(f"Then: {line}")
    return 0


def next_steps(
    deployment: Deployment, app: dict[str, Any], stored: dict[str, Any], org: str
) -> list[str]:
    """What Terraform must still be told: the Lambdas read the App id from their environment
    (the module's github_app_id), which only `terraform apply` sets."""
    env = deployment.environment or {}
    steps: list[str] = []
    if env.get("GITHUB_APP_ID", "") != str(app["id"]):
        steps.append(
            f'set github_app_id = "{app["id"]}" (and allowed_owners to include "{org}") in the '
            "module, then `terraform apply`"
        )
    if stored["key_parameter_created"]:
        steps.append(
            "the deployment was in token mode: before that apply, adopt the key parameter with "
            "`terraform import '<module address>.aws_ssm_parameter.github_app_key_placeholder[0]'"
            f" {deployment.names.github_app_key_param}`"
        )
    return steps
