"""GitHub's published OpenAPI descriptions as JSON Schema: validate answers, requests and webhook
bodies, and generate every shape of answer the description allows.

The description comes from scripts/github_schema.py (`make github-schema`, which `make test` runs
first); JITRUNNERS_GITHUB_OPENAPI names another copy. The REST description is OpenAPI 3.0
(`nullable: true` beside a schema), the webhooks' 3.1 (JSON Schema 2020-12): both are read as
2020-12 with `nullable` turned into `anyOf [schema, null]`, and `$ref`s resolved within their own
document. Formats checked: `date-time` (the client parses them) and `uri` (absolute).
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import referencing
from jsonschema.validators import Draft202012Validator

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PATH = ROOT / ".cache" / "github-openapi" / "github.json"
API_URI = "urn:github-openapi:api"
HOOKS_URI = "urn:github-openapi:webhooks"

# Where GitHub's description contradicts itself, the schema the simulator is held to instead
# (operation, status) -> pointer. `GET /app/installations` describes `account` as allOf
# [Simple User, Enterprise] (an account that is both, which none is); the `installation`
# component, and GitHub's answers, say anyOf. The client is driven with both.
ERRATA: dict[tuple[str, str, int], dict[str, Any]] = {
    ("get", "/app/installations", 200): {
        "type": "array",
        "items": {"$ref": "#/components/schemas/installation"},
    },
}


def _json_schema(node: Any) -> Any:
    """OpenAPI 3.0 schema keywords as JSON Schema 2020-12 (`nullable` -> anyOf with null)."""
    if isinstance(node, list):
        return [_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _json_schema(value) for key, value in node.items()}
    if out.get("nullable") is True:
        del out["nullable"]
        return {"anyOf": [out, {"type": "null"}]}
    return out


def _date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    datetime.fromisoformat(value.replace("Z", "+00:00"))
    return True


def _uri(value: object) -> bool:
    if not isinstance(value, str):
        return True
    parts = urlsplit(value)
    if not parts.scheme or not (parts.netloc or parts.path):
        raise ValueError(f"{value!r} is not an absolute URI")
    return True


FORMATS = jsonschema.FormatChecker(formats=())
FORMATS.checks("date-time", raises=ValueError)(_date_time)
FORMATS.checks("uri", raises=ValueError)(_uri)


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


@dataclass(frozen=True)
class Operation:
    path: str  # as the description spells it, "/repos/{owner}/{repo}/actions/jobs/{job_id}"
    method: str  # lower case
    pointer: str  # "#/paths/~1repos.../get"


class Description:
    """The distilled description (scripts/github_schema.py) with validators over it."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.packages: dict[str, str] = document["packages"]
        self.api: dict[str, Any] = _json_schema(document["api"])
        self.hooks: dict[str, Any] = _json_schema(document["webhooks"])
        self.examples: dict[str, list[dict[str, Any]]] = document["examples"]
        self.api["x-errata"] = {
            f"{method} {path} {status}": schema for (method, path, status), schema in ERRATA.items()
        }
        spec = referencing.jsonschema.DRAFT202012
        self.registry: referencing.Registry = referencing.Registry().with_resources(
            [
                (API_URI, spec.create_resource(self.api)),
                (HOOKS_URI, spec.create_resource(self.hooks)),
            ]
        )
        self._validators: dict[tuple[str, bool], Draft202012Validator] = {}
        self._operations = [
            (re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$"), path, method)
            for path, methods in self.api["paths"].items()
            for method in methods
        ]

    # ---- finding schemas -----------------------------------------------------------------
    def node(self, pointer: str, *, hooks: bool = False) -> Any:
        node: Any = self.hooks if hooks else self.api
        for part in pointer.lstrip("#/").split("/"):
            key = part.replace("~1", "/").replace("~0", "~")
            node = node[int(key)] if isinstance(node, list) else node[key]
        return node

    def operation(self, method: str, concrete_path: str) -> Operation:
        """The operation a request to `concrete_path` is (the most specific template wins)."""
        method = method.lower()
        hits = [
            path
            for pattern, path, m in self._operations
            if m == method and pattern.match(concrete_path)
        ]
        if not hits:
            raise LookupError(f"{method.upper()} {concrete_path}: not in the description")
        path = min(hits, key=lambda p: p.count("{"))
        return Operation(path, method, f"#/paths/{_escape(path)}/{method}")

    def _deref(self, node: Any, hooks: bool = False) -> Any:
        while isinstance(node, dict) and "$ref" in node:
            node = self.node(node["$ref"], hooks=hooks)
        return node

    def response_schema(self, op: Operation, status: int, *, errata: bool = True) -> str | None:
        """A pointer to the schema of the answer's body; None when the answer has none.
        Errors the operation does not list (401, rate limits, 5xx) are GitHub's basic error.
        `errata`: the corrected schema where ERRATA has one, else the description's own."""
        if errata and (op.method, op.path, status) in ERRATA:
            return f"#/x-errata/{_escape(op.method + ' ' + op.path + ' ' + str(status))}"
        responses = self.node(op.pointer)["responses"]
        key = str(status)
        if key not in responses:
            if status >= 400:
                return "#/x-extra/basic-error"
            raise AssertionError(f"{op.method.upper()} {op.path}: {status} is not documented")
        response = responses[key]
        pointer = f"{op.pointer}/responses/{key}"
        while "$ref" in response:
            pointer = response["$ref"]
            response = self.node(pointer)
        if "application/json" not in response.get("content", {}):
            return None
        return f"{pointer}/content/application~1json/schema"

    def request_schema(self, op: Operation) -> str | None:
        body = self.node(op.pointer).get("requestBody")
        if body is None:
            return None
        return f"{op.pointer}/requestBody/content/application~1json/schema"

    def query_parameters(self, op: Operation) -> dict[str, Any]:
        """name -> schema of the operation's query parameters."""
        found = {}
        for item in self.node(op.pointer).get("parameters", []):
            parameter = self._deref(item)
            if parameter.get("in") == "query":
                found[parameter["name"]] = parameter["schema"]
        return found

    def webhook_schema(self, event: str, action: str | None) -> str:
        name = event.replace("_", "-") + (f"-{action.replace('_', '-')}" if action else "")
        webhook = self.hooks["webhooks"][name]["post"]
        return webhook["requestBody"]["content"]["application/json"]["schema"]["$ref"]

    # ---- validating ----------------------------------------------------------------------
    def errors(self, pointer: str, instance: Any, *, hooks: bool = False) -> list[str]:
        """Every way `instance` breaks the schema at `pointer` (empty when it is valid)."""
        validator = self._validator(pointer, hooks)
        found = []
        for error in sorted(validator.iter_errors(instance), key=lambda e: list(e.path)):
            # An anyOf/oneOf failure says little alone: name the closest alternative's fault.
            best = jsonschema.exceptions.best_match([error])
            where = "/".join(str(p) for p in best.absolute_path) or "(body)"
            found.append(f"{where}: {best.message[:300]}")
        return found

    def response_errors(self, method: str, path: str, status: int, body: Any) -> list[str]:
        op = self.operation(method, path)
        pointer = self.response_schema(op, status)
        if pointer is None:
            return [] if body in (None, b"", "") else [f"{status} has no body, got {body!r}"]
        return self.errors(pointer, body)

    def request_errors(
        self, method: str, path: str, query: dict[str, list[str]], body: Any
    ) -> list[str]:
        """A request against its operation: the query parameters it may send, and the body."""
        op = self.operation(method, path)
        found = []
        parameters = self.query_parameters(op)
        for name, values in query.items():
            if name not in parameters:
                found.append(f"query {name!r} is not a parameter of {op.path}")
                continue
            for value in values:
                found += [f"query {name}: {e}" for e in self._query_errors(parameters[name], value)]
        pointer = self.request_schema(op)
        if pointer is not None and body is None:
            if self.node(op.pointer)["requestBody"].get("required"):
                found.append(f"{op.path} needs a body")
        elif pointer is None:
            if body not in (None, b"", ""):
                found.append(f"{op.path} takes no body, got {body!r}")
        else:
            found += self.errors(pointer, body)
        return found

    def _query_errors(self, schema: dict[str, Any], text: str) -> list[str]:
        value: Any = text
        kind = self._deref(schema).get("type")
        try:
            if kind == "integer":
                value = int(text)
            elif kind == "boolean":
                value = {"true": True, "false": False}[text]
        except (ValueError, KeyError):
            return [f"{text!r} is not a {kind}"]
        validator = Draft202012Validator(self._deref(schema), format_checker=FORMATS)
        return [e.message for e in validator.iter_errors(value)]

    def webhook_errors(self, event: str, action: str | None, body: Any) -> list[str]:
        return self.errors(self.webhook_schema(event, action), body, hooks=True)

    # ---- completeness --------------------------------------------------------------------
    def gaps(self, pointer: str, instance: Any, *, hooks: bool = False) -> list[str]:
        """Where `instance` (valid at `pointer`) differs from the fullest answer the schema
        describes: each property the schema declares that the instance leaves out ("missing"),
        and each it sends that no schema declares ("not described"). GitHub's description marks
        fewer fields required than GitHub always sends (an error's documentation_url, most of a
        webhook's repository); a simulator held only to `required` could leave them out.
        Each gap reads "<path>: missing (<component>.<property>)": paths are the instance's,
        list indices as `*`, the component the schema that declares the property ("inline" for
        an unnamed one); under anyOf/oneOf the first alternative the instance matches is the
        one it is held to."""
        found: set[str] = set()
        self._gaps(pointer, instance, "", hooks, found)
        return sorted(found)

    def _gaps(self, pointer: str, instance: Any, where: str, hooks: bool, found: set[str]) -> None:
        branches = self._branches(pointer, instance, hooks)
        nodes = [(b, self.node(b, hooks=hooks)) for b in branches]
        if isinstance(instance, dict):
            declared: dict[str, list[str]] = {}
            owner: dict[str, str] = {}  # property -> the component declaring it
            values: list[str] = []  # schemas of a map's values (additionalProperties)
            open_ = False
            for branch, node in nodes:
                component = _component(branch)
                for name in node.get("properties", {}):
                    declared.setdefault(name, []).append(f"{branch}/properties/{_escape(name)}")
                    owner.setdefault(name, component)
                extra = node.get("additionalProperties")
                if isinstance(extra, dict):
                    values.append(f"{branch}/additionalProperties")
                if extra not in (None, False) or "patternProperties" in node:
                    open_ = True
            found.update(
                f"{where}/{name}: missing ({owner[name]}.{name})"
                for name in declared
                if name not in instance
            )
            if declared and not open_:
                here = _component(nodes[0][0]) if nodes else "inline"
                found.update(
                    f"{where}/{name}: not described ({here}.{name})"
                    for name in instance
                    if name not in declared
                )
            for name, value in instance.items():
                for sub in declared.get(name) or values:
                    self._gaps(sub, value, f"{where}/{name}", hooks, found)
        elif isinstance(instance, list):
            for branch, node in nodes:
                if isinstance(node.get("items"), dict):
                    for item in instance:
                        self._gaps(f"{branch}/items", item, f"{where}/*", hooks, found)

    def _branches(self, pointer: str, instance: Any, hooks: bool) -> list[str]:
        """Pointers of the schemas describing `instance` at `pointer`: `$ref`s followed, every
        allOf part, the first anyOf/oneOf alternative that accepts it."""
        node = self.node(pointer, hooks=hooks)
        if not isinstance(node, dict):
            return []
        if "$ref" in node:
            return self._branches(node["$ref"], instance, hooks)
        out = [pointer]
        for index in range(len(node.get("allOf", ()))):
            out += self._branches(f"{pointer}/allOf/{index}", instance, hooks)
        for keyword in ("anyOf", "oneOf"):
            for index in range(len(node.get(keyword, ()))):
                alternative = f"{pointer}/{keyword}/{index}"
                if self._validator(alternative, hooks).is_valid(instance):
                    out += self._branches(alternative, instance, hooks)
                    break
        return out

    def _validator(self, pointer: str, hooks: bool) -> Draft202012Validator:
        key = (pointer, hooks)
        if key not in self._validators:
            base = HOOKS_URI if hooks else API_URI
            self._validators[key] = Draft202012Validator(
                {"$ref": f"{base}{pointer}"}, registry=self.registry, format_checker=FORMATS
            )
        return self._validators[key]

    # ---- generating ----------------------------------------------------------------------
    def examples_for(self, op: Operation, status: int) -> list[Any]:
        """The documented examples of an answer."""
        responses = self.node(op.pointer)["responses"]
        response = self._deref(responses[str(status)])
        media = response.get("content", {}).get("application/json", {})
        found = []
        for item in media.get("examples", {}).values():
            example = self._deref(item)
            if example.get("value") is not None:
                found.append(example["value"])
        return found

    def variants(self, pointer: str, *, hooks: bool = False) -> Iterator[tuple[str, Any]]:
        """(name, instance) for the shapes the schema at `pointer` (in the webhooks' document
        with `hooks`) allows: every field; only the required ones; both with every nullable
        null; and, from each of the first two, each alternative of each anyOf/oneOf (null
        included) taken in turn. Only instances the schema accepts are yielded (an alternative
        may contradict its siblings)."""
        schema = self.node(pointer, hooks=hooks)

        def shapes() -> Iterator[tuple[str, Any]]:
            yield "all fields", _Generator(self, hooks, full=True).make(schema)
            yield "required only", _Generator(self, hooks, full=False).make(schema)
            nulls = _Generator(self, hooks, full=False, prefer_null=True)
            yield "required only, nulls", nulls.make(schema)
            yield (
                "all fields, nulls",
                _Generator(self, hooks, full=True, prefer_null=True).make(schema),
            )
            for full in (True, False):
                sites = _Generator(self, hooks, full=full)
                sites.make(schema)
                for site, count in sorted(sites.sites.items()):
                    for choice in range(count):
                        name = f"{'all' if full else 'required'} fields, {site} #{choice}"
                        generator = _Generator(self, hooks, full=full, choose={site: choice})
                        yield name, generator.make(schema)

        seen: set[str] = set()
        for name, instance in shapes():
            key = json.dumps(instance, sort_keys=True)
            if key not in seen and not self.errors(pointer, instance, hooks=hooks):
                seen.add(key)
                yield name, instance


def _component(pointer: str) -> str:
    """The named schema a pointer lies in ("simple-user"), or "inline"."""
    parts = pointer.split("/")
    return parts[3] if parts[1:3] == ["components", "schemas"] and len(parts) > 3 else "inline"


SAMPLE_TIME = "2026-03-04T05:06:07Z"


class _Generator:
    """Instances of a schema: `full` fills optional properties too; `choose` picks the
    alternative at a site (the JSON path of an anyOf/oneOf); `sites` records the sites seen."""

    MAX_DEPTH = 12

    def __init__(
        self,
        description: Description,
        hooks: bool,
        *,
        full: bool,
        prefer_null: bool = False,
        choose: dict[str, int] | None = None,
    ) -> None:
        self.description = description
        self.hooks = hooks
        self.full = full
        self.prefer_null = prefer_null
        self.choose = choose or {}
        self.sites: dict[str, int] = {}

    def make(self, schema: Any, where: str = "", depth: int = 0) -> Any:
        schema = self.description._deref(schema, self.hooks)
        if not isinstance(schema, dict):
            return None
        for keyword in ("anyOf", "oneOf"):
            if keyword in schema:
                options = schema[keyword]
                site = where or "(body)"
                self.sites[site] = len(options)
                if site in self.choose:
                    pick = self.choose[site]
                elif self.prefer_null and any(o.get("type") == "null" for o in options):
                    pick = next(i for i, o in enumerate(options) if o.get("type") == "null")
                else:
                    pick = next((i for i, o in enumerate(options) if o.get("type") != "null"), 0)
                rest = {k: v for k, v in schema.items() if k != keyword}
                # An alternative's own alternatives are another site ("~" marks the nesting).
                return self.make(_merge(rest, options[pick]), f"{where}~", depth)
        if "allOf" in schema:
            merged = {k: v for k, v in schema.items() if k != "allOf"}
            for part in schema["allOf"]:
                merged = _merge(merged, self.description._deref(part, self.hooks))
            return self.make(merged, where, depth)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return schema["enum"][0]
        kind = schema.get("type")
        if isinstance(kind, list):
            non_null = [k for k in kind if k != "null"]
            if (self.prefer_null and "null" in kind) or not non_null:
                return None
            kind = non_null[0]
        if kind is None:
            kind = "object" if "properties" in schema else None
        if kind == "object":
            return self._object(schema, where, depth)
        if kind == "array":
            if depth >= self.MAX_DEPTH:
                return []
            count = max(1, schema.get("minItems", 0))
            return [self.make(schema.get("items", {}), f"{where}/*", depth + 1)] * count
        if "example" in schema and _fits(schema["example"], kind):
            return copy.deepcopy(schema["example"])
        if kind == "string":
            fmt = schema.get("format")
            if fmt == "date-time":
                return SAMPLE_TIME
            if fmt == "uri":
                return "https://api.github.com/example"
            return "x" * max(1, schema.get("minLength", 0)) if schema.get("minLength") else "text"
        if kind == "integer":
            return max(1, schema.get("minimum", 1))
        if kind == "number":  # ids GitHub types as number are whole numbers all the same
            return 2
        if kind == "boolean":
            return True
        if kind == "null":
            return None
        return "text"

    def _object(self, schema: dict[str, Any], where: str, depth: int) -> dict[str, Any]:
        required = set(schema.get("required", ()))
        out: dict[str, Any] = {}
        for name, sub in schema.get("properties", {}).items():
            optional = name not in required
            if optional and (not self.full or depth >= self.MAX_DEPTH // 2):
                continue
            out[name] = self.make(sub, f"{where}/{name}", depth + 1)
        return out


def _fits(value: Any, kind: str | None) -> bool:
    kinds = {
        "string": str,
        "integer": int,
        "number": (int, float),
        "boolean": bool,
        "array": list,
        "object": dict,
    }
    expected = kinds.get(kind or "")
    if expected is None:
        return False
    if kind in ("integer", "number") and isinstance(value, bool):
        return False
    return isinstance(value, expected)


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for key, value in b.items():
        if key == "properties":
            # A property both sides describe must satisfy both (allOf parts narrow each other).
            mine = out.get("properties", {})
            out["properties"] = {
                **mine,
                **{n: {"allOf": [mine[n], v]} if n in mine else v for n, v in value.items()},
            }
        elif key == "required":
            out["required"] = sorted(set(out.get("required", [])) | set(value))
        elif key == "items" and isinstance(out.get("items"), dict):
            out["items"] = {"allOf": [out["items"], value]}
        elif key == "enum" and "enum" in out:
            out["enum"] = [item for item in out["enum"] if item in value]
        else:
            out[key] = value
    return out


def path() -> Path:
    return Path(os.environ.get("JITRUNNERS_GITHUB_OPENAPI") or DEFAULT_PATH)


@cache
def load() -> Description:
    """The description; fails (never skips) when it was not fetched, saying how to get it."""
    source = path()
    if not source.is_file():
        pytest.fail(
            f"{source} is missing: run `make github-schema` (npm pack of GitHub's published "
            "OpenAPI descriptions; `make test` does it first)",
            pytrace=False,
        )
    return Description(json.loads(source.read_text()))
