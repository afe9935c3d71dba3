"""A small IAM policy evaluator: identity policies, and a resource or KMS key policy, per request.

Pure Python, no AWS calls. It implements AWS's documented evaluation logic for what real policies
use; each rule names the page it comes from. What it does not know (an operator, a malformed
statement) raises PolicyError: a policy the stack cannot judge must not silently allow or deny.

- Policy evaluation logic (explicit deny wins, then an allow, else implicit deny; same-account
  identity OR resource policy):
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html
- KMS: the key policy must allow, itself or by delegating to the account's IAM policies:
  https://docs.aws.amazon.com/kms/latest/developerguide/determining-access.html
- Resource ARN wildcards: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_resource.html
- Condition operators: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html
- Multivalued keys: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-single-vs-multi-valued-context-keys.html
- Policy variables: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_variables.html
"""

from __future__ import annotations

import ipaddress
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any, Literal

ContextValue = str | Sequence[str]
PolicyType = Literal["identity", "resource"]
ResourcePolicyMode = Literal["standard", "kms"]


class PolicyError(ValueError):
    """A policy (or request) this evaluator cannot judge: unknown operator, malformed statement."""


class Decision(StrEnum):
    ALLOW = "Allow"
    EXPLICIT_DENY = "ExplicitDeny"
    IMPLICIT_DENY = "ImplicitDeny"


@dataclass(frozen=True)
class Request:
    """One authorization request: who, which action on which resource, and the request context.

    Context keys are case-insensitive (as IAM's are); a value is a string or, for a multivalued
    key such as aws:TagKeys, a list of strings.
    """

    principal: str
    action: str
    resource: str
    context: Mapping[str, ContextValue] = field(default_factory=dict)
    _values: dict[str, tuple[str, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        values: dict[str, tuple[str, ...]] = {}
        for key, value in self.context.items():
            items = (value,) if isinstance(value, str) else tuple(str(v) for v in value)
            values[key.lower()] = items
        object.__setattr__(self, "_values", values)

    def values(self, key: str) -> tuple[str, ...] | None:
        """The key's values; None when the key is absent (or resolves to an empty set)."""
        found = self._values.get(key.lower())
        return found or None


@dataclass(frozen=True)
class Result:
    """The decision, the statements that made it (Sid, or `#index` without one) and, for a denial,
    whose policy lacked the allow or held the deny (AWS's error messages name it)."""

    decision: Decision
    statements: tuple[str, ...] = ()
    policy_type: PolicyType = "identity"

    @property
    def allowed(self) -> bool:
        return self.decision is Decision.ALLOW


class _Unresolved(Exception):
    """A policy variable with no value in the request: the statement does not apply."""


# ------------------------------------------------------------------------------- wildcards
_STAR, _QMARK = object(), object()
Part = Any  # str (literal text) | _STAR | _QMARK
_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_DEFAULT = re.compile(r"^\s*'(.*)'\s*$")


def _wild(text: str) -> list[Part]:
    parts: list[Part] = []
    for piece in re.split(r"([*?])", text):
        if piece == "*":
            parts.append(_STAR)
        elif piece == "?":
            parts.append(_QMARK)
        elif piece:
            parts.append(piece)
    return parts


def _render(text: str, request: Request, variables: bool) -> list[Part]:
    """Wildcards and policy variables of a policy string, variables replaced by literal text.

    `${*}`, `${?}` and `${$}` are the literal characters; `${key, 'default'}` has a default; a
    variable with no (single) value in the request raises _Unresolved.
    """
    if not variables:
        return _wild(text)
    parts: list[Part] = []
    position = 0
    for match in _VARIABLE.finditer(text):
        parts.extend(_wild(text[position : match.start()]))
        inner = match.group(1)
        if inner in ("*", "?", "$"):
            parts.append(inner)
        else:
            name, _, default = inner.partition(",")
            found = request.values(name.strip())
            fallback = _DEFAULT.match(default) if default else None
            if found is not None and len(found) == 1:
                parts.append(found[0])
            elif fallback is not None:
                parts.append(fallback.group(1))
            else:
                raise _Unresolved(name)
        position = match.end()
    parts.extend(_wild(text[position:]))
    return parts


def _text(parts: Sequence[Part]) -> str:
    return "".join("*" if p is _STAR else "?" if p is _QMARK else p for p in parts)


def _regex(parts: Sequence[Part], *, arn: bool, ignore_case: bool = False) -> re.Pattern[str]:
    """A regex for wildcard parts. In ARN mode a wildcard stays inside its colon-separated segment,
    except a `*` that ends a segment, which "can expand to match beyond the colon boundaries"
    (reference_policies_elements_resource.html, "Using wildcards in resource ARNs")."""
    pattern: list[str] = []
    for index, part in enumerate(parts):
        if part is _STAR:
            following = parts[index + 1] if index + 1 < len(parts) else None
            ends_segment = following is None or (
                isinstance(following, str) and following.startswith(":")
            )
            pattern.append(".*" if not arn or ends_segment else "[^:]*")
        elif part is _QMARK:
            pattern.append("[^:]" if arn else ".")
        else:
            pattern.append(re.escape(part))
    return re.compile("".join(pattern), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


@lru_cache(maxsize=4096)
def _action_regex(pattern: str) -> re.Pattern[str]:
    return _regex(_wild(pattern), arn=False, ignore_case=True)


# ------------------------------------------------------------------------------- conditions
def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _date(value: str) -> datetime | None:
    try:
        if re.fullmatch(r"\d+(\.\d+)?", value):
            return datetime.fromtimestamp(float(value), UTC)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _ip(actual: str, expected: str) -> bool:
    try:
        return ipaddress.ip_address(actual) in ipaddress.ip_network(expected, strict=False)
    except ValueError:
        return False


_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "Equals": operator.eq,
    "LessThan": operator.lt,
    "LessThanEquals": operator.le,
    "GreaterThan": operator.gt,
    "GreaterThanEquals": operator.ge,
}


def _ordered(parse: Callable[[str], Any], relation: str) -> Callable[[str, Any], bool]:
    def compare(actual: str, expected: Any) -> bool:
        a, b = parse(actual), parse(str(expected))
        return a is not None and b is not None and _ORDER[relation](a, b)

    return compare


# name -> (takes policy variables and wildcards, compare(request value, policy value), negated).
# Templated operators get the policy value as wildcard parts (see _render).
_Compare = Callable[[str, Any], bool]
_OPERATORS: dict[str, tuple[bool, _Compare, bool]] = {
    "StringEquals": (True, lambda a, e: a == _text(e), False),
    "StringNotEquals": (True, lambda a, e: a == _text(e), True),
    "StringEqualsIgnoreCase": (True, lambda a, e: a.casefold() == _text(e).casefold(), False),
    "StringNotEqualsIgnoreCase": (True, lambda a, e: a.casefold() == _text(e).casefold(), True),
    "StringLike": (True, lambda a, e: _regex(e, arn=False).fullmatch(a) is not None, False),
    "StringNotLike": (True, lambda a, e: _regex(e, arn=False).fullmatch(a) is not None, True),
    # "ArnEquals and ArnLike behave identically": segment-wise, with wildcards.
    "ArnEquals": (True, lambda a, e: _regex(e, arn=True).fullmatch(a) is not None, False),
    "ArnLike": (True, lambda a, e: _regex(e, arn=True).fullmatch(a) is not None, False),
    "ArnNotEquals": (True, lambda a, e: _regex(e, arn=True).fullmatch(a) is not None, True),
    "ArnNotLike": (True, lambda a, e: _regex(e, arn=True).fullmatch(a) is not None, True),
    "Bool": (False, lambda a, e: a.lower() == str(e).lower(), False),
    "BinaryEquals": (False, lambda a, e: a == str(e), False),
    "IpAddress": (False, lambda a, e: _ip(a, str(e)), False),
    "NotIpAddress": (False, lambda a, e: _ip(a, str(e)), True),
    "NumericNotEquals": (False, _ordered(_number, "Equals"), True),
    "DateNotEquals": (False, _ordered(_date, "Equals"), True),
}
for _relation in _ORDER:
    _OPERATORS[f"Numeric{_relation}"] = (False, _ordered(_number, _relation), False)
    _OPERATORS[f"Date{_relation}"] = (False, _ordered(_date, _relation), False)


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _policy_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _key_holds(
    qualifier: str,
    name: str,
    if_exists: bool,
    key: str,
    expected: list[str],
    request: Request,
    variables: bool,
) -> bool:
    templated, compare, negated = _OPERATORS[name]
    actual = request.values(key)
    if actual is None:
        # A missing key: "the condition is false", except that a negated operator is true, and
        # ForAllValues is true (and ForAnyValue false) on an empty set; ...IfExists is true.
        if if_exists or qualifier == "ForAllValues":
            return True
        if qualifier == "ForAnyValue":
            return False
        return negated
    values: list[Any] = (
        [_render(e, request, variables) for e in expected] if templated else list(expected)
    )

    def matches(value: str) -> bool:
        return any(compare(value, e) for e in values)

    if qualifier == "ForAllValues":
        return all(matches(v) != negated for v in actual)
    if qualifier == "ForAnyValue":
        return any(matches(v) != negated for v in actual)
    # Several values of one key: OR; a negated operator is their NOR.
    return not any(matches(v) for v in actual) if negated else any(matches(v) for v in actual)


def _conditions_hold(block: Mapping[str, Any], request: Request, variables: bool) -> bool:
    # Operators AND, keys within an operator AND, values of one key OR.
    for operator_name, tests in block.items():
        qualifier, _, name = operator_name.rpartition(":")
        if qualifier not in ("", "ForAllValues", "ForAnyValue"):
            raise PolicyError(f"unknown condition set operator in {operator_name!r}")
        if_exists = name.endswith("IfExists")
        name = name.removesuffix("IfExists")
        if not isinstance(tests, Mapping):
            raise PolicyError(f"condition {operator_name!r} must map keys to values")
        for key, raw in tests.items():
            expected = [_policy_string(v) for v in _as_list(raw)]
            if name == "Null":
                absent = request.values(key) is None
                if not any((value.lower() == "true") == absent for value in expected):
                    return False
            elif name in _OPERATORS:
                if not _key_holds(qualifier, name, if_exists, key, expected, request, variables):
                    return False
            else:
                raise PolicyError(f"condition operator {operator_name!r} is not supported")
    return True


# ------------------------------------------------------------------------------- statements
def _statements(policy: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    raw = policy.get("Statement", [])
    statements = [raw] if isinstance(raw, Mapping) else list(raw)
    return [(str(s.get("Sid") or f"#{i}"), s) for i, s in enumerate(statements)]


def _variables(policy: Mapping[str, Any]) -> bool:
    # Variables exist from policy language version 2012-10-17; before it they are literal text.
    return policy.get("Version") == "2012-10-17"


def _element(statement: Mapping[str, Any], name: str) -> tuple[list[str], bool] | None:
    """The statement's `name` or `Not<name>` element as (patterns, negated); None if neither."""
    if name in statement and f"Not{name}" in statement:
        raise PolicyError(f"a statement has both {name} and Not{name}")
    if name in statement:
        return [str(v) for v in _as_list(statement[name])], False
    if f"Not{name}" in statement:
        return [str(v) for v in _as_list(statement[f"Not{name}"])], True
    return None


def _action_matches(statement: Mapping[str, Any], request: Request) -> bool:
    element = _element(statement, "Action")
    if element is None:
        raise PolicyError("a statement needs Action or NotAction")
    patterns, negated = element
    found = any(_action_regex(p).fullmatch(request.action) for p in patterns)
    return found != negated


def _resource_matches(statement: Mapping[str, Any], request: Request, variables: bool) -> bool:
    element = _element(statement, "Resource")
    if element is None:
        return True  # resource policies may leave it out: the resource they are attached to
    patterns, negated = element
    found = False
    for pattern in patterns:
        if pattern == "*":
            found = True
        else:
            parts = _render(pattern, request, variables)
            found = _regex(parts, arn=True).fullmatch(request.resource) is not None
        if found:
            break
    return found != negated


def _applies(statement: Mapping[str, Any], request: Request, variables: bool) -> bool:
    try:
        return (
            _action_matches(statement, request)
            and _resource_matches(statement, request, variables)
            and _conditions_hold(statement.get("Condition") or {}, request, variables)
        )
    except _Unresolved:
        # "any attempt to match it fails and causes the statement to be invalid"
        return False


def _effect(statement: Mapping[str, Any]) -> str:
    effect = statement.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise PolicyError(f"Effect must be Allow or Deny, not {effect!r}")
    return str(effect)


# ------------------------------------------------------------------------------- principals
def _account(arn: str) -> str:
    parts = arn.split(":")
    return parts[4] if len(parts) > 5 else ""


def _principal_arns(request: Request) -> set[str]:
    """The ARNs a resource policy may name the caller by: its own, its role's (aws:PrincipalArn,
    or derived from an assumed-role session ARN)."""
    arns = {request.principal, *(request.values("aws:PrincipalArn") or ())}
    match = re.fullmatch(r"arn:([^:]+):sts::(\d+):assumed-role/([^/]+)/.+", request.principal)
    if match:
        arns.add(f"arn:{match.group(1)}:iam::{match.group(2)}:role/{match.group(3)}")
    return arns


def _principal_kind(statement: Mapping[str, Any], request: Request) -> str | None:
    """ "direct" when the statement names the caller (or everyone), "account" when it names the
    caller's account (which delegates to the account's IAM policies), None otherwise."""
    if "Principal" in statement:
        principal, negated = statement["Principal"], False
    elif "NotPrincipal" in statement:
        principal, negated = statement["NotPrincipal"], True
    else:
        raise PolicyError("a resource policy statement needs Principal or NotPrincipal")
    kind: str | None = None
    if principal == "*":
        kind = "direct"
    elif isinstance(principal, Mapping):
        account = _account(request.principal)
        partition = request.principal.split(":")[1] if request.principal.count(":") > 1 else "aws"
        names = _principal_arns(request)
        for entry in _as_list(principal.get("AWS", [])):
            if entry == "*" or entry in names:
                kind = "direct"
                break
            if entry in (account, f"arn:{partition}:iam::{account}:root"):
                kind = "account"
    else:
        raise PolicyError(f"Principal must be '*' or a mapping, not {principal!r}")
    if negated:
        return None if kind else "direct"
    return kind


# ------------------------------------------------------------------------------- evaluation
def evaluate(
    identity_policies: Sequence[Mapping[str, Any]],
    request: Request,
    *,
    resource_policy: Mapping[str, Any] | None = None,
    resource_policy_mode: ResourcePolicyMode = "standard",
) -> Result:
    """Decide one request of a principal in the resource's own account.

    standard: allowed when no statement denies and the identity policies OR the resource policy
    allow. kms: the key policy must allow the caller itself, or name the account (delegating to
    IAM) while an identity policy allows too; no deny anywhere.
    """
    if resource_policy_mode not in ("standard", "kms"):
        raise PolicyError(f"unknown resource policy mode {resource_policy_mode!r}")
    if resource_policy_mode == "kms" and resource_policy is None:
        raise PolicyError("a KMS request needs the key policy: every key has one")
    identity_allow: list[str] = []
    identity_deny: list[str] = []
    for policy in identity_policies:
        variables = _variables(policy)
        for sid, statement in _statements(policy):
            if "Principal" in statement or "NotPrincipal" in statement:
                raise PolicyError(f"identity policy statement {sid} names a Principal")
            effect = _effect(statement)
            if _applies(statement, request, variables):
                (identity_deny if effect == "Deny" else identity_allow).append(sid)
    direct: list[str] = []
    delegated: list[str] = []
    resource_deny: list[str] = []
    if resource_policy is not None:
        variables = _variables(resource_policy)
        for sid, statement in _statements(resource_policy):
            effect = _effect(statement)
            kind = _principal_kind(statement, request)
            if kind is None or not _applies(statement, request, variables):
                continue
            if effect == "Deny":
                resource_deny.append(sid)
            else:
                (direct if kind == "direct" else delegated).append(sid)
    if identity_deny:
        return Result(Decision.EXPLICIT_DENY, tuple(identity_deny), "identity")
    if resource_deny:
        return Result(Decision.EXPLICIT_DENY, tuple(resource_deny), "resource")
    if resource_policy_mode == "kms":
        if direct:
            return Result(Decision.ALLOW, tuple(direct))
        if delegated and identity_allow:
            return Result(Decision.ALLOW, tuple(delegated + identity_allow))
        # The key policy delegates to IAM and no identity policy allows; or it does not delegate.
        return Result(Decision.IMPLICIT_DENY, (), "identity" if delegated else "resource")
    if identity_allow or direct:
        return Result(Decision.ALLOW, tuple(identity_allow + direct))
    return Result(Decision.IMPLICIT_DENY, (), "identity")
