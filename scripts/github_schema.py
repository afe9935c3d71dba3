"""GitHub's published API and webhook descriptions, distilled to what jitrunners uses.

The simulator (devstack/github_sim.py) and the client (lambdas/jitrunners/github/client.py) are
held to GitHub's own OpenAPI descriptions, as octokit publishes them on the npm registry:
`@octokit/openapi` (REST, api.github.com), `@octokit/openapi-webhooks` (webhook payloads) and
`@octokit/webhooks-examples` (real payloads). This script `npm pack`s the pinned versions (about
30 MB, a few seconds), reads only the files it needs straight out of the tarballs, and keeps the
operations jitrunners calls and the webhooks it handles, with every component they reference, as
one small JSON file under .cache/ (tests/support/github_openapi.py reads it).

Nothing is rewritten: schemas stay OpenAPI 3.0 (`nullable`) and 3.1 as published; the reader
turns them into JSON Schema.

    python scripts/github_schema.py --out .cache/github-openapi/github.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Changing a version fetches again (the Makefile depends on this file).
PACKAGES = {
    "@octokit/openapi": "23.0.2",
    "@octokit/openapi-webhooks": "12.1.0",
    "@octokit/webhooks-examples": "7.6.1",
}
DEFAULT_OUT = ROOT / ".cache" / "github-openapi" / "github.json"
FORMAT = 1

# The REST operations jitrunners calls or the simulator answers (path -> methods).
OPERATIONS: dict[str, tuple[str, ...]] = {
    "/app/installations": ("get",),
    "/app/installations/{installation_id}/access_tokens": ("post",),
    "/orgs/{org}/installation": ("get",),
    "/repos/{owner}/{repo}/installation": ("get",),
    "/app/hook/deliveries": ("get",),
    "/app/hook/deliveries/{delivery_id}": ("get",),
    "/app/hook/deliveries/{delivery_id}/attempts": ("post",),
    "/app-manifests/{code}/conversions": ("post",),
    "/orgs/{org}/actions/runners": ("get",),
    "/orgs/{org}/actions/runners/generate-jitconfig": ("post",),
    "/orgs/{org}/actions/runners/{runner_id}": ("get", "delete"),
    "/orgs/{org}/actions/runner-groups/{runner_group_id}": ("get",),
    "/repos/{owner}/{repo}/actions/runners": ("get",),
    "/repos/{owner}/{repo}/actions/runners/generate-jitconfig": ("post",),
    "/repos/{owner}/{repo}/actions/runners/{runner_id}": ("get", "delete"),
    "/repos/{owner}/{repo}/actions/jobs/{job_id}": ("get",),
    "/repos/{owner}/{repo}/actions/jobs/{job_id}/rerun": ("post",),
    "/repos/{owner}/{repo}/actions/runs": ("get",),
    "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs": ("get",),
}
WEBHOOKS = (
    "ping",
    "workflow-job-queued",
    "workflow-job-waiting",
    "workflow-job-in-progress",
    "workflow-job-completed",
)
EXAMPLE_EVENTS = ("ping", "workflow_job")
# Schemas outside the operations: errors the description does not list per operation (401, 5xx,
# rate limits), and the installation as the component describes it (tests/support/github_openapi.py
# ERRATA).
EXTRA_SCHEMAS = ("basic-error", "installation")


def _refs(node: Any) -> set[str]:
    found: set[str] = set()
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            ref = item.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/"):
                found.add(ref)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _pointer(doc: dict[str, Any], ref: str) -> Any:
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _strip(node: Any) -> Any:
    """Drop prose (a `description`/`summary` that is text, never a property of that name)."""
    if isinstance(node, dict):
        return {
            k: _strip(v)
            for k, v in node.items()
            if not (k in ("description", "summary") and isinstance(v, str))
        }
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def _with_components(doc: dict[str, Any], roots: dict[str, Any]) -> dict[str, Any]:
    """`roots` plus every component they reference, transitively, under `components`."""
    components: dict[str, dict[str, Any]] = {}
    pending = _refs(roots)
    seen: set[str] = set()
    while pending:
        ref = pending.pop()
        if ref in seen:
            continue
        seen.add(ref)
        _, section, kind, name = ref.split("/", 3)
        if section != "components":
            continue
        target = _pointer(doc, ref)
        components.setdefault(kind, {})[name] = target
        pending |= _refs(target)
    return {**roots, "components": components}


def distil(api: dict[str, Any], hooks: dict[str, Any], examples: list[Any]) -> dict[str, Any]:
    paths = {
        path: {method: api["paths"][path][method] for method in methods}
        for path, methods in OPERATIONS.items()
    }
    extra = {name: {"$ref": f"#/components/schemas/{name}"} for name in EXTRA_SCHEMAS}
    api_part = _with_components(api, {"paths": paths, "x-extra": extra})
    hook_part = _with_components(hooks, {"webhooks": {n: hooks["webhooks"][n] for n in WEBHOOKS}})
    return {
        "format": FORMAT,
        "packages": PACKAGES,
        "api": {"openapi": api["openapi"], **_strip(api_part)},
        "webhooks": {"openapi": hooks["openapi"], **_strip(hook_part)},
        "examples": {e["name"]: e["examples"] for e in examples if e["name"] in EXAMPLE_EVENTS},
    }


def _member(tarball: Path, name: str) -> Any:
    with tarfile.open(tarball) as archive:
        handle = archive.extractfile(f"package/{name}")
        if handle is None:  # pragma: no cover - a directory
            raise SystemExit(f"{tarball.name}: package/{name} is not a file")
        return json.load(handle)


def download(workdir: Path) -> dict[str, Path]:
    specs = [f"{name}@{version}" for name, version in PACKAGES.items()]
    subprocess.run(  # noqa: S603 - fixed arguments
        ["npm", "pack", "--silent", "--pack-destination", str(workdir), *specs],  # noqa: S607
        check=True,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "npm_config_fund": "false", "npm_config_audit": "false"},
    )
    tarballs: dict[str, Path] = {}
    for name, version in PACKAGES.items():
        path = workdir / f"{name.lstrip('@').replace('/', '-')}-{version}.tgz"
        if not path.is_file():
            raise SystemExit(f"npm pack did not write {path.name}")
        tarballs[name] = path
    return tarballs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="github-openapi-") as tmp:
        tarballs = download(Path(tmp))
        document = distil(
            _member(tarballs["@octokit/openapi"], "generated/api.github.com.json"),
            _member(tarballs["@octokit/openapi-webhooks"], "generated/api.github.com.json"),
            _member(tarballs["@octokit/webhooks-examples"], "api.github.com/index.json"),
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    partial = args.out.with_suffix(".tmp")
    partial.write_text(json.dumps(document, separators=(",", ":"), sort_keys=True))
    partial.replace(args.out)
    size = args.out.stat().st_size // 1024
    print(f"github-openapi: {len(OPERATIONS)} paths, {len(WEBHOOKS)} webhooks, {size} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
