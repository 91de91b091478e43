"""Rollback requests as the store keeps them, for tests that need one without asking in
Slack: production from v0.9.0 back to v0.8.0, asked by alice because of errors."""

from __future__ import annotations

from typing import Any

from bot.domain.rollbacks import RollbackRequest


def rollback_request(request_id: str = "r1", **changed: Any) -> RollbackRequest:
    """One waiting for its approvals; `changed` sets any other field."""
    fields: dict[str, Any] = {
        "id": request_id,
        "environment": "production",
        "to_version": "0.8.0",
        "to_tag": "v0.8.0",
        "to_sha": "a" * 40,
        "from_version": "0.9.0",
        "from_release": "0.9.0-rc.1",
        "reason": "errors",
        "requester": "U0ALICE",
        "requester_name": "alice",
        "requested_at": 1.0,
    }
    return RollbackRequest(**{**fields, **changed})
