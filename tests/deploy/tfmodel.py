"""Read the Terraform module (python-hcl2) and the Lambda package (ast) for consistency tests."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import hcl2

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM = ROOT / "terraform"
PACKAGE = ROOT / "lambdas" / "jitrunners"


def unquote(value: Any) -> Any:
    """python-hcl2 keeps the quotes of string literals; drop them (and recurse)."""
    if isinstance(value, str):
        if len(value) >= 2 and value[0] == value[-1] == '"':
            return value[1:-1]
        return value
    if isinstance(value, list):
        return [unquote(v) for v in value]
    if isinstance(value, dict):
        return {
            unquote(k): unquote(v)
            for k, v in value.items()
            if k not in ("__is_block__", "__comments__")
        }
    return value


def tf_files(root: Path = TERRAFORM) -> list[Path]:
    return sorted(p for p in root.rglob("*.tf") if ".terraform" not in p.parts)


@cache
def module() -> dict[str, list[dict[str, Any]]]:
    """The root module's top-level blocks merged by kind (resource, data, locals, variable, ...)."""
    merged: dict[str, list[dict[str, Any]]] = {}
    for path in tf_files():
        if path.parent != TERRAFORM:
            continue
        with path.open() as handle:
            parsed = unquote(hcl2.load(handle))
        for kind, blocks in parsed.items():
            merged.setdefault(kind, []).extend(blocks)
    return merged


def locals_() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for block in module().get("locals", []):
        out.update(block)
    return out


def blocks(kind: str, type_: str) -> dict[str, dict[str, Any]]:
    """resource/data blocks of one type by name."""
    out: dict[str, dict[str, Any]] = {}
    for block in module().get(kind, []):
        for t, named in block.items():
            if t == type_:
                out.update(named)
    return out


def variables() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for block in module().get("variable", []):
        out.update(block)
    return out


def outputs() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for block in module().get("output", []):
        out.update(block)
    return out


def statements(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Statements of an aws_iam_policy_document, plain and `dynamic "statement"` alike."""
    yield from document.get("statement", [])
    for dynamic in document.get("dynamic", []):
        yield from dynamic.get("statement", {}).get("content", [])


def policy_actions(document: dict[str, Any]) -> set[str]:
    return {action for st in statements(document) for action in st.get("actions", [])}


# ---------------------------------------------------------------------------------------------
# The package: import closure of a module and the AWS calls in it.


def module_path(name: str) -> Path | None:
    rel = Path(*name.split("."))
    base = PACKAGE.parent
    for candidate in (base / rel.with_suffix(".py"), base / rel / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(tree: ast.AST, name: str) -> set[str]:
    """Every `jitrunners` module a module imports, at top level or inside functions."""
    found: set[str] = set()
    package = (
        name
        if module_path(name) and module_path(name).name == "__init__.py"
        else name.rpartition(".")[0]
    )  # type: ignore[union-attr]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return {f for f in found if f.split(".")[0] == "jitrunners" and module_path(f)}


def import_closure(name: str) -> set[str]:
    seen: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        parts = current.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # parent packages run too
        path = module_path(current)
        if path is None:
            continue
        todo.extend(_imports(ast.parse(path.read_text()), current))
    return {m for m in seen if module_path(m)}


def _pascal(op: str) -> str:
    return "".join(part.capitalize() for part in op.split("_"))


# Batch operations that IAM authorises through the single-item action (there is no separate
# sqs:SendMessageBatch action, for instance).
BATCH_ACTIONS = {
    "sqs:SendMessageBatch": "sqs:SendMessage",
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
    # No IAM action either: each item is authorised as its own write. The code's transactions
    # are launch claims, Puts only (jitrunners.aws.deliveries.claim_launches).
    "dynamodb:TransactWriteItems": "dynamodb:PutItem",
}


# Powertools Parameters calls SSM (or Secrets Manager) on our behalf.
POWERTOOLS_PARAMETERS = {
    "get_parameter": "ssm:GetParameter",
    "get_parameters": "ssm:GetParametersByPath",
    "get_parameters_by_name": "ssm:GetParameters",
    "get_secret": "secretsmanager:GetSecretValue",
}


class UnscannableCall(AssertionError):
    """A `client(...)` use the static scan cannot read (docs/contracts.md forbids it)."""


def _where(path: Path, node: ast.AST) -> str:
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    return f"{shown}:{getattr(node, 'lineno', '?')}"


def _calls_in(path: Path, tree: ast.AST, scope: ast.AST) -> set[str]:
    """IAM actions of the AWS calls written directly in `scope` (nested functions included)."""
    actions: set[str] = set()
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    for node in ast.walk(scope):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id == "client":
            service = (
                node.args[0].value if node.args and isinstance(node.args[0], ast.Constant) else None
            )
            parent = parents.get(node)
            if not isinstance(service, str) or not isinstance(parent, ast.Attribute):
                raise UnscannableCall(f'{_where(path, node)}: write client("svc").operation(...)')
            op = parent.attr
            if op == "get_paginator":
                call = parents.get(parent)
                if not (
                    isinstance(call, ast.Call)
                    and call.args
                    and isinstance(call.args[0], ast.Constant)
                ):
                    raise UnscannableCall(f"{_where(path, node)}: literal paginator name")
                op = str(call.args[0].value)
            elif op in ("exceptions", "meta", "can_paginate", "get_waiter"):
                continue
            action = f"{service}:{_pascal(op)}"
            actions.add(BATCH_ACTIONS.get(action, action))
        elif (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and func.value.id == "parameters"
            and func.attr in POWERTOOLS_PARAMETERS
        ):
            actions.add(POWERTOOLS_PARAMETERS[func.attr])
    return actions


def aws_actions_in(path: Path) -> set[str]:
    """IAM actions of every `client("svc").op(...)`, `client("svc").get_paginator("op")` and
    Powertools Parameters call in one module."""
    tree = ast.parse(path.read_text())
    return _calls_in(path, tree, tree)


_FUNCS = (ast.FunctionDef, ast.AsyncFunctionDef)


def _names(node: ast.AST) -> set[str]:
    """Every identifier a piece of code refers to: names and attribute names."""
    found: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            found.add(sub.id)
        elif isinstance(sub, ast.Attribute):
            found.add(sub.attr)
    return found


def handler_actions(handler_module: str, entry: str = "handler") -> set[str]:
    """IAM actions a Lambda can reach from its entry point.

    A name-based call graph over the handler's import closure: a function or class counts as
    reachable when a reachable piece of code mentions its name (as `f`, `mod.f` or `obj.f`), and
    module-level code counts from the start. Coarser than real dispatch, so it over-approximates
    (a shared name pulls in every definition of it) but never misses a call written per the
    contract; finer than whole modules, so a function that only terminates is not charged with the
    launch code that shares its adapter module.
    """
    defs: dict[str, list[tuple[Path, ast.AST, ast.AST]]] = {}
    todo: list[tuple[Path, ast.AST, ast.AST]] = []
    for name in import_closure(handler_module):
        path = module_path(name)
        if path is None:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (*_FUNCS, ast.ClassDef)):
                defs.setdefault(node.name, []).append((path, tree, node))
        # Module-level code (imports, constants, decorators) runs at import: always reachable.
        top = ast.Module(
            body=[n for n in tree.body if not isinstance(n, (*_FUNCS, ast.ClassDef))],
            type_ignores=[],
        )
        todo.append((path, tree, top))
        for node in tree.body:
            if isinstance(node, (*_FUNCS, ast.ClassDef)) and node.decorator_list:
                todo.extend((path, tree, d) for d in node.decorator_list)
        if name == handler_module:
            todo.extend(defs.get(entry, []))
    seen: set[int] = set()
    actions: set[str] = set()
    while todo:
        path, tree, node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        actions |= _calls_in(path, tree, node)
        for ref in _names(node):
            todo.extend(d for d in defs.get(ref, []) if id(d[2]) not in seen)
    return actions


def env_reads() -> set[str]:
    """Environment variable names the package reads (env.get / _flag / _int / os.environ...)."""
    names: set[str] = set()
    pattern = re.compile(r"^[A-Z][A-Z0-9_]+$")
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call | ast.Subscript):
                continue
            if isinstance(node, ast.Subscript):
                target, args = node.value, [node.slice]
            else:
                target, args = node.func, list(node.args)
            text = ast.unparse(target)
            reads_env = text.endswith(("environ.get", "env.get", "getenv")) or text in (
                "_flag",
                "_int",
                "os.environ",
                "env",
            )
            if not reads_env:
                continue
            for arg in args:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    names.update(pattern.findall(arg.value))
    return names
