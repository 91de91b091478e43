"""Signing requests as Slack does, with the tests' signing secret."""

from __future__ import annotations

import hashlib
import hmac

from slack_sdk.signature import SignatureVerifier

from bot.devtools import payloads

SIGNING_SECRET = "test-signing-secret"


def sign(
    body: str | bytes, timestamp: int | None = None, secret: str = SIGNING_SECRET
) -> dict[str, str]:
    """Headers of a form request signed as Slack signs it (`timestamp` defaults to now)."""
    return payloads.signed_headers(body, secret, timestamp=timestamp)


def signature(body: bytes, timestamp: str, secret: str = SIGNING_SECRET) -> str:
    """The `X-Slack-Signature` of raw bytes at any timestamp text, for requests that are
    malformed on purpose (a float or non-ASCII timestamp, a body that is not UTF-8)."""
    try:
        text = body.decode()
    except UnicodeDecodeError:
        # slack_sdk decodes the body as UTF-8 before it signs, so it cannot sign bytes that
        # are not UTF-8; the bot checks the signature over the bytes as sent, so sign those.
        digest = hmac.new(
            secret.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256
        )
        return f"v0={digest.hexdigest()}"
    signed = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=text)
    assert signed is not None  # slack_sdk gives None only without a timestamp
    return signed
