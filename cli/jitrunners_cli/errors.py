"""Expected failures: printed as one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

from typing import Final

# Exit codes (README "The jitrunners CLI"): 2 is argparse's for a bad command line.
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2
EXIT_NOT_FOUND: Final = 3  # no deployment with that prefix, no such template or job
EXIT_NO_ACCESS: Final = 4  # no credentials, credentials refused, access denied

# AWS error codes that mean "you may not" (IAM, resource policies, KMS key policies).
ACCESS_DENIED: Final = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "UnauthorizedAccess",
        "AuthorizationError",
        "KMS.AccessDeniedException",
    }
)
# ... and "who are you?": credentials AWS does not accept.
BAD_CREDENTIALS: Final = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AuthFailure",
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
    }
)


class CliError(Exception):
    """A failure the operator can act on (missing credentials, unknown prefix, access denied)."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _first_line(text: str, limit: int = 240) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def translate(exc: BaseException) -> CliError | None:
    """The one-line CliError an AWS or GitHub failure becomes; None for a bug (a traceback)."""
    from botocore import exceptions as boto

    if isinstance(exc, boto.NoCredentialsError | boto.PartialCredentialsError):
        return CliError(
            "no AWS credentials found: configure them as for the AWS CLI (AWS_PROFILE, "
            "`aws configure`, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
            EXIT_NO_ACCESS,
        )
    if isinstance(exc, boto.NoRegionError):
        return CliError("no AWS Region: pass --region or set AWS_REGION", EXIT_USAGE)
    if isinstance(exc, boto.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        operation = getattr(exc, "operation_name", "") or "the call"
        message = _first_line(error.get("Message", ""))
        if code in ACCESS_DENIED:
            return CliError(f"access denied: {operation} ({code}): {message}", EXIT_NO_ACCESS)
        if code in BAD_CREDENTIALS:
            return CliError(
                f"AWS refused the credentials ({code} on {operation}): {message}", EXIT_NO_ACCESS
            )
        return CliError(f"AWS {operation} failed: {code}: {message}")
    if isinstance(exc, boto.EndpointConnectionError | boto.ConnectTimeoutError):
        return CliError(f"cannot reach AWS: {_first_line(str(exc))}")
    if isinstance(exc, boto.BotoCoreError):
        return CliError(f"AWS: {_first_line(str(exc))}")
    try:
        from jitrunners.github.client import GitHubAuthError, GitHubError
    except ImportError:  # pragma: no cover - the package ships both
        return None
    if isinstance(exc, GitHubAuthError):
        return CliError(f"GitHub refused the credentials: {exc}", EXIT_NO_ACCESS)
    if isinstance(exc, GitHubError):
        return CliError(f"GitHub: {exc}")
    return None
