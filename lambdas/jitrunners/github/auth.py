"""GitHub credentials: App JWTs and cached installation tokens, or a plain token."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# GitHub rejects App JWTs that live longer than 10 minutes; iat is back-dated for clock skew.
JWT_BACKDATE_S = 60
JWT_LIFETIME_S = 540
# A JWT is reused while it has at least this long to live (so for its first 5 minutes): each
# signature costs milliseconds of RSA, and the housekeeper's /app calls come in pages.
JWT_REUSE_MARGIN_S = 240
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
        self._signing_key: Any = None  # the PEM parsed, once
        self._jwt: tuple[str, float] | None = None  # the last JWT and when it expires
        self._clock = clock
        self._tokens: dict[int, _CachedToken] = {}
        # This App's installation on an account ("orgs/acme", "repos/acme/app") -> (id, or None
        # when it is not installed there, and until when that answer holds).
        self._installations: dict[str, tuple[int | None, float]] = {}

    def __repr__(self) -> str:  # the key never reaches a log line through repr
        return f"AppAuth(app_id={self.app_id!r})"

    def app_jwt(self) -> str:
        """An RS256 JWT for the /app endpoints: the last one while it has JWT_REUSE_MARGIN_S
        left to live, else a new one (the key parsed once per process)."""
        import jwt

        now = int(self._clock())
        if self._jwt is not None and self._jwt[1] - JWT_REUSE_MARGIN_S > now:
            return self._jwt[0]
        if self._signing_key is None:
            from jwt.algorithms import RSAAlgorithm

            self._signing_key = RSAAlgorithm(RSAAlgorithm.SHA256).prepare_key(self._key)
        expires = now + JWT_LIFETIME_S
        claims = {"iat": now - JWT_BACKDATE_S, "exp": expires, "iss": self.app_id}
        token = str(jwt.encode(claims, self._signing_key, algorithm="RS256"))
        self._jwt = (token, expires)
        return token

    def cached_token(self, installation_id: int) -> str | None:
        cached = self._tokens.get(installation_id)
        if cached and cached.expires_at - TOKEN_REFRESH_MARGIN_S > self._clock():
            return cached.token
        return None

    def store_token(self, installation_id: int, token: str, expires_at: float) -> None:
        self._tokens[installation_id] = _CachedToken(token, expires_at)

    def forget_token(self, installation_id: int) -> None:
        self._tokens.pop(installation_id, None)

    def cached_installation(self, account: str) -> tuple[bool, int | None]:
        """(known, installation id or None when not installed) for an account path."""
        found = self._installations.get(account)
        if found is None or found[1] <= self._clock():
            return False, None
        return True, found[0]

    def store_installation(self, account: str, installation_id: int | None, ttl_s: float) -> None:
        self._installations[account] = (installation_id, self._clock() + ttl_s)

    def forget_installation(self, account: str) -> None:
        self._installations.pop(account, None)


class LazyAppAuth:
    """A further GitHub App whose key is read on first use (README "Scaling", several Apps); an
    unreadable or unusable key is tried again after `retry_s`, never logged."""

    def __init__(
        self,
        app_id: str,
        load_key: Callable[[], str],
        *,
        clock: Callable[[], float] = time.time,
        retry_s: float = 300.0,
    ) -> None:
        self.app_id = str(app_id)
        self._load_key = load_key
        self._clock = clock
        self._retry_s = retry_s
        self._auth: AppAuth | None = None
        self._failed_at: float | None = None
        self.error = ""  # why the key is unusable: an exception's type, never its text

    def __repr__(self) -> str:
        return f"LazyAppAuth(app_id={self.app_id!r})"

    def get(self) -> AppAuth | None:
        if self._auth is not None:
            return self._auth
        if self._failed_at is not None and self._clock() - self._failed_at < self._retry_s:
            return None
        try:
            auth = AppAuth(self.app_id, self._load_key(), clock=self._clock)
            auth.app_jwt()  # a placeholder or malformed key fails here, not on every call
        except Exception as exc:  # noqa: BLE001 - any failure makes the App unusable for now
            self._failed_at, self.error = self._clock(), type(exc).__name__
            from jitrunners.observability import logger

            logger.warning(
                "further GitHub App key unusable: its jobs go to the other Apps for now",
                extra={"app_id": self.app_id, "error": self.error, "retry_in_s": self._retry_s},
            )
            return None
        self._auth, self._failed_at, self.error = auth, None, ""
        return auth


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
