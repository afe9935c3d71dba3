"""GitHub credentials: App JWTs and cached installation tokens, or a plain token."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

# GitHub rejects App JWTs that live longer than 10 minutes; iat is back-dated for clock skew.
JWT_BACKDATE_S = 60
JWT_LIFETIME_S = 540
# Re-mint an installation token this long before it expires, so no call races its expiry.
TOKEN_REFRESH_MARGIN_S = 300


@dataclass(slots=True)
class _CachedToken:
    token: str = field(repr=False)
    expires_at: float


class AppAuth:
    """GitHub App credentials; installation tokens are cached per installation for the process."""

    mode = "app"

    def __init__(
        self, app_id: str, private_key: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.app_id = str(app_id)
        self._key = private_key
        self._clock = clock
        self._tokens: dict[int, _CachedToken] = {}

    def __repr__(self) -> str:  # the key never reaches a log line through repr
        return f"AppAuth(app_id={self.app_id!r})"

    def app_jwt(self) -> str:
        """A fresh RS256 JWT for the /app endpoints (cheap: signing is local)."""
        import jwt

        now = int(self._clock())
        claims = {"iat": now - JWT_BACKDATE_S, "exp": now + JWT_LIFETIME_S, "iss": self.app_id}
        return str(jwt.encode(claims, self._key, algorithm="RS256"))

    def cached_token(self, installation_id: int) -> str | None:
        cached = self._tokens.get(installation_id)
        if cached and cached.expires_at - TOKEN_REFRESH_MARGIN_S > self._clock():
            return cached.token
        return None

    def store_token(self, installation_id: int, token: str, expires_at: float) -> None:
        self._tokens[installation_id] = _CachedToken(token, expires_at)

    def forget_token(self, installation_id: int) -> None:
        self._tokens.pop(installation_id, None)


class TokenAuth:
    """A classic or fine-grained personal access token (no installations, no /app endpoints)."""

    mode = "token"

    def __init__(self, token: str) -> None:
        self._token = token

    def __repr__(self) -> str:
        return "TokenAuth(token=***)"

    @property
    def token(self) -> str:
        return self._token


Auth = AppAuth | TokenAuth
