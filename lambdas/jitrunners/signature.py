"""GitHub webhook signatures: HMAC-SHA256 of the raw body, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

PREFIX = "sha256="
_HEX_LEN = 64
# A secret shorter than this is a placeholder, a test value or a truncated paste: a key anyone
# may guess (the Terraform module's own placeholder is public). GitHub suggests 32+ random bytes.
MIN_SECRET_BYTES = 16
PLACEHOLDERS = frozenset({"replace_me", "replace-me", "changeme", "change_me"})


def usable_secrets(secrets: Sequence[str]) -> tuple[str, ...]:
    """The secrets that may act as HMAC keys: each rotation line on its own, placeholders and
    lines shorter than MIN_SECRET_BYTES dropped. Empty means "not configured"."""
    return tuple(
        secret
        for secret in secrets
        if len(secret.encode()) >= MIN_SECRET_BYTES
        and secret.strip().casefold() not in PLACEHOLDERS
    )


def sign(secret: str, body: bytes) -> str:
    """The `X-Hub-Signature-256` value GitHub sends for `body` (used by tests and the simulator)."""
    return PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secrets: Sequence[str], body: bytes, header: str | None) -> bool:
    """True when `header` is a valid signature of `body` under one of `secrets`.

    Fails closed: no secret, no header or a malformed header is never valid. Several secrets are
    accepted so that a webhook secret can be rotated without a window of refused deliveries.
    """
    if not header or not secrets:
        return False
    if not header.startswith(PREFIX) or len(header) != len(PREFIX) + _HEX_LEN:
        return False
    given = header[len(PREFIX) :].lower().encode("ascii", errors="replace")
    valid = False
    for secret in secrets:
        if not secret:
            continue
        expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest().encode()
        # Check every secret, whatever the result, so the time taken says nothing about which one.
        valid |= hmac.compare_digest(expected, given)
    return valid
