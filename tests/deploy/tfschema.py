"""Check Terraform modules against the aws provider's argument schema (scripts/aws_schema.py).

What `terraform validate` would say about arguments and blocks, without downloading the provider:
every resource, data source and provider block of every .tf file is walked against the schema
(nested and `dynamic` blocks included), plus each module's `required_providers` and the module
calls of the examples. Findings are plain strings naming file, line, block and argument.

Required arguments are checked on every block, `count`/`for_each` or not: Terraform validates a
block's body before it expands it, so `count = 0` does not excuse a missing argument. What cannot be
told statically is left to Terraform: an argument set to an expression that may be null, and a
required block written only as `dynamic` (counted as present; its for_each may be empty). The
assembly records no deprecations, so deprecated arguments pass, and attribute references
(`data.x.y.attr`) are not checked.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2
from hcl2.utils import SerializationOptions
from scripts import aws_schema

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = aws_schema.DEFAULT_OUT

_HCL = SerializationOptions(with_comments=False, strip_string_quotes=True)

# Terraform's own arguments and blocks (language, not provider).
META_ARGUMENTS = {
    "resource": {"count", "for_each", "provider", "depends_on"},
    "data": {"count", "for_each", "provider", "depends_on"},
    "module": {"source", "version", "count", "for_each", "providers", "depends_on"},
    "provider": {"alias", "version"},
}
META_BLOCKS = {
    "resource": {"lifecycle", "provisioner", "connection"},
    "data": {"lifecycle"},
    "module": set(),
    "provider": set(),
}
LIFECYCLE = {
    "resource": {
        "create_before_destroy",
        "prevent_destroy",
        "ignore_changes",
        "replace_triggered_by",
        "precondition",
        "postcondition",
    },
    "data": {"precondition", "postcondition"},
}
DYNAMIC_ARGUMENTS = {"for_each", "iterator", "labels"}
BUILTIN_TYPES = {"terraform_data"}  # the builtin provider's, not aws

SCHEMA_MISSING = (
    "The aws provider schema is missing: run `make tf-schema` (it downloads {package} from PyPI, "
    "about 60 MB, once, and distils it to {path}); `make test` does it first."
)


class SchemaUnavailableError(AssertionError):
    """The distilled schema is absent or from another pin: `make tf-schema` fixes it."""


@dataclass(frozen=True)
class Schema:
    """The distilled schema: type name -> struct key, struct key -> arguments and blocks."""

    raw: dict[str, Any]

    @property
    def version(self) -> str:
        return str(self.raw["version"])

    @property
    def source(self) -> str:
        return str(self.raw["source"])

    def root(self, kind: str, type_: str) -> str | None:
        if kind == "provider":
            return str(self.raw["provider"])
        found = self.raw[kind].get(type_)
        return str(found) if found is not None else None

    def struct(self, key: str) -> dict[str, Any]:
        return self.raw["structs"][key]  # type: ignore[no-any-return]

    def paths_of(self, key: str, name: str, prefix: str = "") -> Iterator[str]:
        """Where `name` is a block or argument below struct `key` (for hints)."""
        struct = self.struct(key)
        if name in struct["arguments"] and prefix:
            yield f"{prefix}{name}"
        for block, spec in struct["blocks"].items():
            here = f"{prefix}{block}"
            if block == name:
                yield here
            if spec["struct"] is not None:
                yield from self.paths_of(spec["struct"], name, here + ".")


def load_schema(path: Path = SCHEMA_PATH) -> Schema:
    package = f"{aws_schema.PACKAGE}=={aws_schema.VERSION}"
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    if not path.is_file():
        raise SchemaUnavailableError(SCHEMA_MISSING.format(package=package, path=shown))
    raw = json.loads(path.read_text())
    if raw.get("package") != package or raw.get("format") != aws_schema.FORMAT:
        raise SchemaUnavailableError(
            f"{shown} holds {raw.get('package')} (format {raw.get('format')}), the pin is "
            f"{package} (format {aws_schema.FORMAT}): run `make tf-schema`."
        )
    return Schema(raw)


# ---------------------------------------------------------------------------------------------
# Reading HCL


def _is_block_list(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(v, dict) and v.get("__is_block__") for v in value)
    )


def _is_labeled_block_list(value: Any) -> bool:
    """`name "label" { ... }`: python-hcl2 nests the body under the label."""
    return (
        isinstance(value, list)
        and bool(value)
        and all(
            isinstance(v, dict)
            and len(v) == 1
            and isinstance(next(iter(v.values())), dict)
            and next(iter(v.values())).get("__is_block__")
            for v in value
        )
    )


def _items(body: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    for key, value in body.items():
        if not key.startswith("__"):
            yield key, value


@dataclass
class Module:
    """The .tf files of one directory, parsed, with a line finder for messages."""

    path: Path
    files: dict[Path, dict[str, Any]] = field(default_factory=dict)
    texts: dict[Path, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Module:
        module = cls(path)
        for tf in sorted(path.glob("*.tf")):
            text = tf.read_text()
            module.texts[tf] = text
            module.files[tf] = hcl2.loads(text, serialization_options=_HCL)
        return module

    @classmethod
    def from_text(cls, path: Path, text: str, name: str = "main.tf") -> Module:
        module = cls(path)
        module.texts[path / name] = text
        module.files[path / name] = hcl2.loads(text, serialization_options=_HCL)
        return module

    def line(self, tf: Path, *labels: str) -> int:
        """The line of the block header `kind "label" "label"` (1 if not found)."""
        pattern = r"\s+".join(
            re.escape(x) if i == 0 else f'"{re.escape(x)}"' for i, x in enumerate(labels)
        )
        match = re.search(rf"^[ \t]*{pattern}\s*\{{", self.texts[tf], re.MULTILINE)
        return self.texts[tf].count("\n", 0, match.start()) + 1 if match else 1

    def blocks(self, kind: str) -> Iterator[tuple[Path, dict[str, Any]]]:
        for tf, parsed in self.files.items():
            for block in parsed.get(kind, []):
                yield tf, block

    def labeled(self, kind: str) -> Iterator[tuple[Path, str, str, dict[str, Any]]]:
        """`resource`/`data` blocks as (file, type, name, body)."""
        for tf, block in self.blocks(kind):
            for type_, named in _items(block):
                for name, body in _items(named):
                    yield tf, type_, name, body

    def variables(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for _, block in self.blocks("variable"):
            out.update(dict(_items(block)))
        return out


# ---------------------------------------------------------------------------------------------
# The checks


@dataclass
class _Walk:
    schema: Schema
    where: str  # 'terraform/api.tf:3: resource "aws_x" "y"'
    root: str  # struct key of the resource, for hints
    findings: list[str]

    def add(self, path: str, message: str) -> None:
        self.findings.append(f"{self.where}: {path}{message}")

    def body(self, body: dict[str, Any], key: str, path: str, kind: str = "") -> None:
        """One block body against struct `key`; `kind` is resource/data/provider at the top."""
        struct = self.schema.struct(key)
        arguments: dict[str, bool] = struct["arguments"]
        objects: dict[str, Any] = struct["objects"]
        blocks: dict[str, Any] = struct["blocks"]
        present_blocks: set[str] = set()
        for name, value in _items(body):
            shown = f"{path}{name}"
            if kind and name in META_ARGUMENTS.get(kind, set()):
                if _is_block_list(value):
                    self.add("", f'"{name}" is a meta-argument: write `{name} = ...`')
                continue
            if kind and name in META_BLOCKS.get(kind, set()):
                self._meta_block(kind, name, value)
                continue
            if name == "dynamic" and _is_labeled_block_list(value):
                for item in value:
                    for label, dyn in item.items():
                        present_blocks.add(label)
                        self._dynamic(label, dyn, blocks, objects, path)
                continue
            if _is_labeled_block_list(value):
                label = next(iter(value[0]))
                if name in blocks:
                    self.add(shown, f' takes no label, found "{label}"')
                else:
                    self._unknown(shown, name, struct, what="block")
                continue
            if _is_block_list(value):
                if name in blocks:
                    present_blocks.add(name)
                    spec = blocks[name]
                    if spec["single"] and len(value) > 1:
                        self.add(shown, f": at most one block allowed, found {len(value)}")
                    if spec["struct"] is not None:
                        for item in value:
                            self.body(item, spec["struct"], shown + ".")
                elif name in objects and not objects[name]["single"]:
                    # A list of objects written as blocks ("attributes as blocks").
                    for item in value:
                        self.body(item, objects[name]["struct"], shown + ".")
                elif name in arguments:
                    self.add(shown, f" is an argument, not a block: write `{name} = ...`")
                else:
                    self._unknown(shown, name, struct, what="block")
                continue
            if name in blocks:
                self.add(shown, f" is a block, not an argument: write `{name} {{ ... }}`")
            elif name not in arguments:
                self._unknown(shown, name, struct, what="argument")
        for name, required in sorted(arguments.items()):
            if required and name not in body:
                self.add(f"{path}{name}", ": missing required argument")
        for name, spec in sorted(blocks.items()):
            if spec["required"] and name not in present_blocks:
                self.add(f"{path}{name}", ": missing required block")

    def _unknown(self, shown: str, name: str, struct: dict[str, Any], what: str) -> None:
        elsewhere = [p for p in self.schema.paths_of(self.root, name) if p != shown]
        hint = f" (the schema has it at {', '.join(elsewhere[:3])})" if elsewhere else ""
        close = difflib.get_close_matches(name, [*struct["arguments"], *struct["blocks"]], n=3)
        guess = f"; did you mean {' or '.join(close)}?" if close else ""
        self.add(shown, f": unknown {what} (aws provider {self.schema.version}){hint}{guess}")

    def _dynamic(
        self,
        label: str,
        dyn: dict[str, Any],
        blocks: dict[str, Any],
        objects: dict[str, Any],
        path: str,
    ) -> None:
        shown = f"{path}dynamic.{label}"
        if label in blocks:
            struct = blocks[label]["struct"]
        elif label in objects and not objects[label]["single"]:
            struct = objects[label]["struct"]
        else:
            self.add(shown, f': "{label}" is not a block here')
            return
        contents = []
        for name, value in _items(dyn):
            if name == "content" and _is_block_list(value):
                contents.extend(value)
            elif name not in DYNAMIC_ARGUMENTS:
                self.add(shown, f': unknown argument "{name}" of a dynamic block')
        if "for_each" not in dyn:
            self.add(shown, ': missing "for_each"')
        if len(contents) != 1:
            self.add(shown, ": a dynamic block needs exactly one content block")
        if struct is not None:
            for content in contents:
                self.body(content, struct, f"{path}{label}.")

    def _meta_block(self, kind: str, name: str, value: Any) -> None:
        if not _is_block_list(value) and name == "lifecycle":
            self.add("", "lifecycle is a block: write `lifecycle { ... }`")
            return
        if name != "lifecycle":
            return  # provisioner/connection: their contents are the provisioner's
        for item in value:
            for key, _ in _items(item):
                if key not in LIFECYCLE[kind]:
                    self.add(f"lifecycle.{key}", f": not a lifecycle argument of a {kind} block")


def _provider_of(type_: str) -> str:
    return type_.split("_", 1)[0]


def check_module(module: Module, schema: Schema) -> list[str]:
    """Every resource, data and provider block of one module directory against the schema."""
    findings: list[str] = []
    for kind in ("resource", "data"):
        for tf, type_, name, body in module.labeled(kind):
            address = f"{type_}.{name}" if kind == "resource" else f"data.{type_}.{name}"
            where = f"{_rel(tf)}:{module.line(tf, kind, type_, name)}: {address}"
            if type_ in BUILTIN_TYPES or _provider_of(type_) != "aws":
                continue
            key = schema.root(kind, type_)
            if key is None:
                findings.append(
                    f"{where}: unknown {kind} type {type_} (aws provider {schema.version})"
                )
                continue
            _Walk(schema, where, key, findings).body(body, key, "", kind=kind)
    for tf, block in module.blocks("provider"):
        for name, body in _items(block):
            if name != "aws":
                continue
            where = f"{_rel(tf)}:{module.line(tf, 'provider', name)}: provider {name}"
            key = str(schema.root("provider", name))
            _Walk(schema, where, key, findings).body(body, key, "", kind="provider")
    return findings


def _rel(path: Path) -> Path:
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


# ---------------------------------------------------------------------------------------------
# required_providers and module calls


def _version(text: str) -> tuple[int, ...]:
    parts = re.findall(r"\d+", text.split("-", 1)[0])
    return tuple(int(p) for p in parts[:3]) + (0,) * (3 - len(parts[:3]))


def satisfies(version: str, constraints: str) -> bool:
    """Terraform's version constraint syntax: `>= 5.40, < 7`, `~> 6.0`, `= 6.28.0`, `!= 6.1`."""
    have = _version(version)
    for constraint in constraints.split(","):
        match = re.fullmatch(r"\s*(>=|<=|!=|~>|>|<|=)?\s*v?([\d.]+\S*)\s*", constraint)
        if match is None:
            raise ValueError(f"unreadable version constraint {constraint!r}")
        op, raw = match.group(1) or "=", match.group(2)
        want = _version(raw)
        if op == "~>":
            depth = max(len(raw.split(".")) - 1, 1)  # ~> 6.2 -> < 7; ~> 6.2.1 -> < 6.3
            upper = (*want[: depth - 1], want[depth - 1] + 1) + (0,) * (3 - depth)
            ok = want <= have < upper
        else:
            ok = {
                ">=": have >= want,
                "<=": have <= want,
                ">": have > want,
                "<": have < want,
                "=": have == want,
                "!=": have != want,
            }[op]
        if not ok:
            return False
    return True


def check_required_providers(module: Module, schema: Schema) -> list[str]:
    """Every provider the module uses is declared, aws with the schema's source and a constraint
    that the checked provider version meets."""
    findings: list[str] = []
    used: set[str] = set()
    for kind in ("resource", "data"):
        for _, type_, _, _ in module.labeled(kind):
            if type_ not in BUILTIN_TYPES:
                used.add(_provider_of(type_))
    for _, block in module.blocks("provider"):
        used.update(name for name, _ in _items(block))
    declared: dict[str, Any] = {}
    where = f"{_rel(module.path)}"
    for tf, block in module.blocks("terraform"):
        where = f"{_rel(tf)}:{module.line(tf, 'terraform')}: terraform"
        for required in block.get("required_providers", []):
            declared.update(dict(_items(required)))
    for name in sorted(used - set(declared)):
        findings.append(f"{where}: required_providers does not declare {name!r}, which is used")
    aws = declared.get("aws")
    if isinstance(aws, dict):
        source = str(aws.get("source", ""))
        if source.removeprefix("registry.terraform.io/") != schema.source:
            findings.append(
                f'{where}: required_providers.aws.source is "{source}", not "{schema.source}"'
            )
        constraint = aws.get("version")
        if constraint is None:
            findings.append(f"{where}: required_providers.aws has no version constraint")
        elif not satisfies(schema.version, str(constraint)):
            findings.append(
                f'{where}: required_providers.aws.version "{constraint}" excludes aws '
                f"{schema.version}, the schema checked against"
            )
    elif aws is not None:
        findings.append(f"{where}: required_providers.aws must be an object (source, version)")
    return findings


def check_module_calls(module: Module) -> list[str]:
    """Module blocks: a local source that exists, inputs that are its variables, required
    variables given."""
    findings: list[str] = []
    for tf, block in module.blocks("module"):
        for name, body in _items(block):
            where = f"{_rel(tf)}:{module.line(tf, 'module', name)}: module {name}"
            source = str(body.get("source", ""))
            if not source.startswith(("./", "../")):
                findings.append(f'{where}: source "{source}" is not a local path (not checked)')
                continue
            target = (module.path / source).resolve()
            if not target.is_dir() or not any(target.glob("*.tf")):
                findings.append(f'{where}: source "{source}" is not a directory with .tf files')
                continue
            variables = Module.load(target).variables()
            given = {k for k, v in _items(body) if not _is_block_list(v)} - META_ARGUMENTS["module"]
            for arg in sorted(given - set(variables)):
                findings.append(f'{where}: "{arg}" is not a variable of {_rel(target)}')
            for var, spec in sorted(variables.items()):
                if "default" not in spec and var not in given:
                    findings.append(f'{where}: required variable "{var}" is not set')
    return findings


def module_dirs(root: Path = ROOT / "terraform") -> list[Path]:
    """The module and each of its examples (every directory below with .tf files)."""
    dirs = {p.parent for p in root.rglob("*.tf") if ".terraform" not in p.parts}
    return sorted(dirs)


def check_all(schema: Schema, root: Path = ROOT / "terraform") -> list[str]:
    findings: list[str] = []
    for path in module_dirs(root):
        module = Module.load(path)
        findings += check_module(module, schema)
        findings += check_required_providers(module, schema)
        findings += check_module_calls(module)
    return findings
