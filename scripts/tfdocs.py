"""Generate the inputs/outputs tables of terraform/README.md from variables.tf and outputs.tf.

`python scripts/tfdocs.py --write` rewrites the part between the BEGIN/END markers;
`--check` (what the test does) fails when the README is out of date. Offline, python-hcl2 only.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import hcl2

ROOT = Path(__file__).resolve().parent.parent
MODULE = ROOT / "terraform"
README = MODULE / "README.md"
BEGIN = "<!-- BEGIN_TF_DOCS -->"
END = "<!-- END_TF_DOCS -->"
MAX_TYPE = 60


def _load(name: str) -> list[dict[str, Any]]:
    with (MODULE / name).open() as handle:
        return hcl2.load(handle).get("variable" if name == "variables.tf" else "output", [])


def _unquote(value: Any) -> Any:
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    if isinstance(value, list):
        return [_unquote(v) for v in value]
    if isinstance(value, dict):
        return {_unquote(k): _unquote(v) for k, v in value.items() if not k.startswith("__")}
    return value


def _expr(value: Any) -> str:
    text = str(value)
    if text.startswith("${") and text.endswith("}"):
        text = text[2:-1]
    return re.sub(r"\s+", " ", text).strip()


def _cell(text: str) -> str:
    text = re.sub(r"^<<-?EOT\s*|\s*EOT$", "", text.strip())  # heredoc descriptions
    return re.sub(r"\s+", " ", text.replace("|", "\\|")).strip()


def _type(value: Any) -> str:
    text = _expr(value)
    if len(text) > MAX_TYPE:
        text = text.split("(", 1)[0] + "(object(...))" if "object(" in text else text[:MAX_TYPE]
    return f"`{text}`"


def _default(var: dict[str, Any]) -> str:
    if "default" not in var:
        return "n/a"
    value = _unquote(var["default"])
    if value is None:
        return "`null`"
    if isinstance(value, str) and value.startswith("${"):
        return f"`{_expr(value)}`"
    return f"`{json.dumps(value, separators=(', ', ': '))}`"


def render() -> str:
    lines = [BEGIN, "## Inputs", "", "| Name | Description | Type | Default | Required |",
             "| --- | --- | --- | --- | :---: |"]  # fmt: skip
    variables = {_unquote(k): v for block in _load("variables.tf") for k, v in block.items()}
    for name in sorted(variables, key=lambda n: ("default" in variables[n], n)):
        var = variables[name]
        description = _cell(_unquote(str(var.get("description", ""))).strip())
        required = "no" if "default" in var else "yes"
        sensitive = " (sensitive)" if var.get("sensitive") is True else ""
        lines.append(
            f"| `{name}` | {description}{sensitive} | {_type(var.get('type', 'any'))} | "
            f"{_cell(_default(var))} | {required} |"
        )
    lines += ["", "## Outputs", "", "| Name | Description |", "| --- | --- |"]
    outputs = {_unquote(k): v for block in _load("outputs.tf") for k, v in block.items()}
    for name in sorted(outputs):
        description = _cell(_unquote(str(outputs[name].get("description", ""))))
        lines.append(f"| `{name}` | {description} |")
    lines.append(END)
    return "\n".join(lines)


def updated(readme: str) -> str:
    if BEGIN not in readme or END not in readme:
        raise SystemExit(f"{README}: no {BEGIN} ... {END} markers")
    head, _, rest = readme.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return head + render() + tail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true")
    mode.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    current = README.read_text()
    wanted = updated(current)
    if args.write:
        README.write_text(wanted)
        return 0
    if wanted != current:
        sys.stderr.write("terraform/README.md is out of date: run `make tf-docs`\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
