"""Which principal an AWS call is made as: one per Lambda function, bound for each invocation,
with the policies the module attaches to its role. (An instance's credentials are authorized in
its own `aws` CLI: devstack/fake_aws.py.)

The Lambdas share one cached boto3 client per service (jitrunners/aws/clients.py) and, in the
local stack, one process. So the clients carry one Enforcer whose principal is a contextvar: the
invocation shim (devstack/shims.py Function.invoke) binds the function's principal around the
handler call, and every call the handler makes, from any client the Enforcer is attached to, is
authorized as that function's role. A call outside any invocation has no principal and fails.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from devstack import tfrender
from devstack.iam.enforce import (
    BackendLookup,
    Enforcer,
    InstanceProfileInfo,
    KeyInfo,
    LaunchTemplateInfo,
    Lookup,
    Principal,
    QueueInfo,
)

_CURRENT: ContextVar[Principal | None] = ContextVar("devstack_iam_principal", default=None)
LAMBDA_SERVICES = ("dynamodb", "ec2", "kms", "lambda", "sqs", "ssm")


def current() -> Principal | None:
    """The principal bound for the running invocation, if any."""
    return _CURRENT.get()


@contextmanager
def acting_as(principal: Principal) -> Iterator[Principal]:
    token = _CURRENT.set(principal)
    try:
        yield principal
    finally:
        _CURRENT.reset(token)


class Principals:
    """Function key ("scale-up") -> its principal (role ARN and identity policies)."""

    def __init__(self) -> None:
        self._by_key: dict[str, Principal] = {}

    def register(self, key: str, principal: Principal) -> None:
        self._by_key[key] = principal

    def __contains__(self, key: str) -> bool:
        return key in self._by_key

    def get(self, key: str) -> Principal:
        try:
            return self._by_key[key]
        except KeyError:
            raise KeyError(f"no IAM principal registered for function {key!r}") from None

    @contextmanager
    def bind(self, key: str) -> Iterator[Principal]:
        """Make the function's principal current for the duration of one invocation."""
        with acting_as(self.get(key)) as principal:
            yield principal


def lambda_enforcer(lookup: Lookup, region: str) -> Enforcer:
    """One Enforcer for the Lambdas' shared clients, acting as whichever function is running."""
    return Enforcer(current, lookup, region=region)


def attach_lambda_clients(enforcer: Enforcer, services: Iterable[str] = LAMBDA_SERVICES) -> None:
    """Hook the Lambdas' cached clients, and make Powertools Parameters read through the hooked
    SSM client (it otherwise builds its own, unhooked, in a new boto3 session). Call again after
    the clients' caches are reset (clients.reset(), parameters.clear_caches())."""
    from aws_lambda_powertools.utilities.parameters import SSMProvider
    from aws_lambda_powertools.utilities.parameters.base import DEFAULT_PROVIDERS

    from jitrunners.aws.clients import client

    hooked: dict[str, Any] = {service: enforcer.attach(client(service)) for service in services}
    from jitrunners.aws.clients import PRICING_REGION

    enforcer.attach(client("pricing", PRICING_REGION))  # scale-down's job cost
    if "ssm" in hooked:
        DEFAULT_PROVIDERS["ssm"] = SSMProvider(boto3_client=hooked["ssm"])


# ------------------------------------------------------------------ the module's principals
FUNCTIONS = ("webhook", "scale-up", "scale-down", "redrive", "housekeeper", "budget-guard")


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

    def lambda_tags(self, arn: str) -> Mapping[str, str]:
        return self._inner.lambda_tags(arn)

    def table_hash_key(self, table_arn: str) -> str | None:
        return self._cached(("table", table_arn), lambda: self._inner.table_hash_key(table_arn))


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
    enforcer = lambda_enforcer(CachedLookup(BackendLookup(client, region, account)), region)
    attach_lambda_clients(enforcer)
    return principals, enforcer
