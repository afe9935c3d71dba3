"""Configuration and secrets from SSM Parameter Store, through Powertools Parameters (cached)."""

from __future__ import annotations

import os

# Powertools Parameters pulls in boto3 and its own providers: import it where first used, not at
# module import, so a cold start that never reads a parameter does not pay for it.
DEFAULT_MAX_AGE_S = int(os.environ.get("POWERTOOLS_PARAMETERS_MAX_AGE", "300"))


class ParameterError(RuntimeError):
    """A parameter could not be read (missing, access denied, SSM unavailable)."""


def get_text(name: str, *, decrypt: bool = False, max_age: int = DEFAULT_MAX_AGE_S) -> str:
    """The value of one SSM parameter, cached for `max_age` seconds across warm invocations."""
    from aws_lambda_powertools.utilities import parameters

    try:
        value = parameters.get_parameter(name, decrypt=decrypt, max_age=max_age)
    except parameters.exceptions.GetParameterError as exc:
        # The message names the parameter and the AWS error code, never a value.
        raise ParameterError(f"cannot read SSM parameter {name}: {_reason(exc)}") from None
    return str(value)


def get_secret(name: str, *, max_age: int = DEFAULT_MAX_AGE_S) -> str:
    """A SecureString parameter, decrypted. Never log what this returns."""
    return get_text(name, decrypt=True, max_age=max_age)


def _reason(exc: Exception) -> str:
    cause = exc.__cause__ or exc.__context__
    response = getattr(cause, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", type(cause).__name__))
    return type(cause or exc).__name__
