"""`jitrunners drain TEMPLATE [--undo]`: stop launching for a template, let running jobs finish.

Draining sets the template's `max_runners` to 0 in the runner-template parameter the Lambdas read
(`/<prefix>/config/runner-templates`): scale-up then defers every launch for it (its jobs wait in
the job queue, re-sent with a delay, never spending their receive count), while instances already
launched start and run their job. The value it replaced is kept in a tag of the parameter, which
`--undo` restores. Terraform owns the parameter: the next `terraform apply` writes the module's
`runner_templates` back, ending the drain.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, Final

from jitrunners_cli import aws, render
from jitrunners_cli.deployment import Deployment, find
from jitrunners_cli.errors import EXIT_NOT_FOUND, CliError

TAG_PREFIX: Final = "jitrunners:drained:"  # + template name -> the max_runners it replaced
CACHE_NOTE: Final = (
    "The Lambdas re-read the parameter within 5 minutes (POWERTOOLS_PARAMETERS_MAX_AGE)."
)
TERRAFORM_NOTE: Final = (
    "Terraform owns this parameter: the next `terraform apply` writes runner_templates back."
)


def register(subparsers: argparse._SubParsersAction, parents: list) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "drain",
        parents=parents,
        help="stop launching for a template; running jobs finish",
        description="Set the template's max_runners to 0 in the runner-template parameter: no "
        "new instance is launched for it, its queued jobs wait in the job queue, running jobs "
        "finish. --undo puts the previous value back.",
    )
    parser.add_argument("template", help="runner template name")
    parser.add_argument("--undo", action="store_true", help="end the drain (restore max_runners)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    deployment = find(args.prefix)
    result = undrain(deployment, args.template) if args.undo else drain(deployment, args.template)
    if args.json:
        render.emit_json(result)
        return 0
    name = result["template"]
    if not result["changed"]:
        state = "drained" if not args.undo else "not drained"
        print(f"{name}: already {state} (max_runners {result['max_runners']})")
        return 0
    if args.undo:
        print(f"{name}: drain ended, max_runners {result['max_runners']} again.")
    else:
        print(
            f"{name}: drained (max_runners {result['previous']} -> 0). No instance is launched "
            "for it; its queued jobs wait in the job queue; running jobs finish."
        )
        print(f"Undo: jitrunners drain {name} --undo --prefix {deployment.prefix}")
    print(CACHE_NOTE)
    print(TERRAFORM_NOTE)
    return 0


def _document(deployment: Deployment) -> tuple[list[dict[str, Any]], str]:
    name = deployment.names.templates_param
    raw = aws.parameter(name)
    if raw is None:
        raise CliError(f"no parameter {name}", EXIT_NOT_FOUND)
    document = json.loads(raw)
    return document, raw


def _find(document: list[dict[str, Any]], template: str) -> dict[str, Any]:
    for entry in document:
        if entry.get("name") == template:
            return entry
    known = ", ".join(str(e.get("name")) for e in document)
    raise CliError(f"no runner template {template!r} (known: {known})", EXIT_NOT_FOUND)


def _write(deployment: Deployment, document: list[dict[str, Any]]) -> None:
    from jitrunners.config import parse_templates

    text = json.dumps(document, separators=(",", ":"))
    parse_templates(text)  # never write what the Lambdas would refuse to load
    # As terraform/secrets.tf: a document over 4 KB needs the Advanced tier.
    tier = "Advanced" if len(text) > 4096 else "Standard"
    aws.put_parameter(deployment.names.templates_param, text, secure=False, tier=tier)


def drain(deployment: Deployment, template: str) -> dict[str, Any]:
    document, _ = _document(deployment)
    entry = _find(document, template)
    from jitrunners.config import RunnerTemplate

    previous = int(entry.get("max_runners", RunnerTemplate.max_runners))
    if previous == 0:
        return {"template": template, "changed": False, "max_runners": 0}
    # The tag first: a drain whose previous value was not kept could not be undone.
    aws.tag_parameter(deployment.names.templates_param, {TAG_PREFIX + template: str(previous)})
    entry["max_runners"] = 0
    _write(deployment, document)
    return {"template": template, "changed": True, "previous": previous, "max_runners": 0}


def undrain(deployment: Deployment, template: str) -> dict[str, Any]:
    document, _ = _document(deployment)
    entry = _find(document, template)
    current = int(entry.get("max_runners", 1))
    tags = aws.parameter_tags(deployment.names.templates_param)
    kept = tags.get(TAG_PREFIX + template)
    if current != 0:
        if kept is not None:
            aws.untag_parameter(deployment.names.templates_param, [TAG_PREFIX + template])
        return {"template": template, "changed": False, "max_runners": current}
    if kept is None or not kept.isdigit() or int(kept) < 1:
        raise CliError(
            f"{template} is drained but its previous max_runners was not recorded: run "
            "`terraform apply` to restore the module's runner_templates"
        )
    entry["max_runners"] = int(kept)
    _write(deployment, document)
    aws.untag_parameter(deployment.names.templates_param, [TAG_PREFIX + template])
    return {"template": template, "changed": True, "previous": 0, "max_runners": int(kept)}


def drained_templates(deployment: Deployment) -> list[str]:
    return [t.name for t in deployment.templates() if t.max_runners == 0]
