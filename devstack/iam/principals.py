"""Which principal an AWS call is made as: one per Lambda function, bound for each invocation.

The Lambdas share one cached boto3 client per service (jitrunners/aws/clients.py) and, in the
local stack, one process. So the clients carry one Enforcer whose principal is a contextvar: the
invocation shim (devstack/shims.py Function.invoke) binds the function's principal around the
handler call, and every call the handler makes, from any client the Enforcer is attached to, is
authorized as that function's role. A call outside any invocation has no principal and fails.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from devstack.iam.enforce import Enforcer, Lookup, Principal

_CURRENT: ContextVar[Principal | None] = ContextVar("devstack_iam_principal", default=None)
LAMBDA_SERVICES = ("dynamodb", "ec2", "kms", "sqs", "ssm")


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
    if "ssm" in hooked:
        DEFAULT_PROVIDERS["ssm"] = SSMProvider(boto3_client=hooked["ssm"])
