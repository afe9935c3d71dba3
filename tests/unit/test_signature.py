"""Webhook signature checking: HMAC-SHA256 over the raw bytes, fail closed."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from jitrunners.signature import sign, verify

BODY = b'{"action":"queued"}'


def test_sign_matches_githubs_documented_algorithm() -> None:
    expected = (
        "sha256="
        + hmac.new(b"It's a Secret to Everybody", b"Hello, World!", hashlib.sha256).hexdigest()
    )
    # GitHub's documentation example value for this secret and payload.
    assert expected == ("sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
    assert sign("It's a Secret to Everybody", b"Hello, World!") == expected


def test_valid_signature_is_accepted() -> None:
    assert verify(["k"], BODY, sign("k", BODY))


def test_uppercase_hex_digest_is_accepted() -> None:
    header = sign("k", BODY)
    assert verify(["k"], BODY, "sha256=" + header[7:].upper())


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "sha256=",
        "sha1=" + "0" * 40,
        "sha256=" + "0" * 64,
        "SHA256=" + sign("k", BODY)[7:],
        sign("k", BODY)[:-1],
        sign("k", BODY) + "0",
        sign("other", BODY),
        "sha256=" + "é" * 64,
    ],
)
def test_invalid_signatures_are_refused(header: str | None) -> None:
    assert not verify(["k"], BODY, header)


def test_signature_over_other_bytes_is_refused() -> None:
    assert not verify(["k"], BODY + b" ", sign("k", BODY))


def test_no_secret_fails_closed() -> None:
    assert not verify([], BODY, sign("", BODY))
    assert not verify([""], BODY, sign("", BODY))


def test_any_of_several_secrets_is_accepted_during_rotation() -> None:
    assert verify(["old", "new"], BODY, sign("new", BODY))
    assert verify(["old", "new"], BODY, sign("old", BODY))
    assert not verify(["old", "new"], BODY, sign("neither", BODY))
