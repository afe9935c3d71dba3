"""The module's IAM in the local stack: what documents.tf renders for this world, one principal
per Lambda function with the policies the module attaches to its role, and the enforcer on the
Lambdas' clients.

The documents are the world's (devstack/aws_world.py renders them once it exists: every policy
names the real queue, key, launch template, role and subnet ARNs moto gave out), so each request
is judged against exactly what `terraform apply` would attach, with this world's ARNs filled in.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from devstack import tfrender
from devstack.iam.enforce import (
    Enforcer,
    InstanceProfileInfo,
    KeyInfo,
    LaunchTemplateInfo,
    Lookup,
    MotoLookup,
    Principal,
    QueueInfo,
)
from devstack.iam.principals import Principals, attach_lambda_clients, lambda_enforcer

FUNCTIONS = ("webhook", "scale-up", "scale-down", "redrive", "housekeeper")


def function_role_arn(account: str, prefix: str, key: str) -> str:
    """As iam.tf names it: `<prefix>-<function>-lambda`."""
    return f"arn:aws:iam::{account}:role/{prefix}-{key}-lambda"


def without_statements(
    policies: Sequence[Mapping[str, Any]], sids: Sequence[str]
) -> list[dict[str, Any]]:
    """The policies minus the statements with these Sids (to show what then fails)."""
    out = []
    for policy in policies:
        statements = policy["Statement"]
        statements = statements if isinstance(statements, list) else [statements]
        kept = [st for st in statements if st.get("Sid") not in set(sids)]
        out.append({**policy, "Statement": kept})
    return out


def function_principals(
    documents: tfrender.Documents,
    *,
    account: str,
    prefix: str,
    without: Mapping[str, Sequence[str]] | None = None,
) -> Principals:
    principals = Principals()
    for key in FUNCTIONS:
        policies = without_statements(
            documents.function_identity_policies(key), (without or {}).get(key, ())
        )
        principals.register(
            key,
            Principal.role(
                function_role_arn(account, prefix, key),
                lambda policies=policies: policies,
                session=f"{prefix}-{key}",
            ),
        )
    return principals


def runner_principal(
    documents: tfrender.Documents, *, account: str, instance_arn: str
) -> Principal:
    """An instance's credentials from the runner instance profile."""
    role = f"arn:aws:iam::{account}:role/{documents.runner_role_name}"
    policies = documents.runner_identity_policies()
    return Principal.instance(role, lambda: policies, instance_arn)


class CachedLookup:
    """MotoLookup with what does not change during a run read once (keys and their policies,
    queues, launch templates, instance profiles); instances and parameters are read each time."""

    def __init__(self, inner: Lookup) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, ...], Any] = {}

    def _cached(self, key: tuple[str, ...], read: Any) -> Any:
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        value = read()
        if value is not None:
            with self._lock:
                self._cache[key] = value
        return value

    def instance(self, instance_id: str) -> Any:
        return self._inner.instance(instance_id)

    def parameter(self, name: str) -> Any:
        return self._inner.parameter(name)

    def ec2_tags(self, resource_id: str) -> Mapping[str, str]:
        return self._inner.ec2_tags(resource_id)

    def launch_template(
        self, *, id: str | None, name: str | None, version: str | None
    ) -> LaunchTemplateInfo | None:
        key = ("lt", id or "", name or "", version or "")
        return self._cached(
            key, lambda: self._inner.launch_template(id=id, name=name, version=version)
        )

    def key(self, key_id: str) -> KeyInfo | None:
        return self._cached(("key", key_id), lambda: self._inner.key(key_id))

    def queue(self, url: str) -> QueueInfo | None:
        return self._cached(("queue", url), lambda: self._inner.queue(url))

    def instance_profile(self, name_or_arn: str) -> InstanceProfileInfo | None:
        return self._cached(
            ("profile", name_or_arn), lambda: self._inner.instance_profile(name_or_arn)
        )


def enforce_lambdas(
    client: Any,
    documents: tfrender.Documents,
    *,
    account: str,
    region: str,
    prefix: str,
    without: Mapping[str, Sequence[str]] | None = None,
) -> tuple[Principals, Enforcer]:
    """Hook the Lambdas' shared clients: every call they make is authorized as the function that
    makes it (the invocation shim binds the principal, devstack/shims.py Function.invoke)."""
    principals = function_principals(documents, account=account, prefix=prefix, without=without)
    enforcer = lambda_enforcer(CachedLookup(MotoLookup(client, region, account)), region)
    attach_lambda_clients(enforcer)
    return principals, enforcer
