"""Who may take and release an environment lock: the rule on its own, without Redis."""

from __future__ import annotations

import pytest

from bot.domain.locks import LockInfo, LockRefused, check_release, check_take


def lock(holder: str, kind: str = "manual") -> LockInfo:
    return LockInfo(holder=holder, reason="why", since=0.0, token="t", kind=kind)  # type: ignore[arg-type]


def test_who_may_take_and_release_a_lock():
    check_take(None, "U1", force=False)
    check_take(lock("U1"), "U1", force=False)  # re-locking your own lock updates the reason
    with pytest.raises(LockRefused, match="--force"):
        check_take(lock("U2"), "U1", force=False)
    check_take(lock("U2"), "U1", force=True)
    with pytest.raises(LockRefused, match="deploy is running"):
        check_take(lock("U2", "deploy"), "U1", force=True)
    check_take(lock("releasebot", "rollback"), "U1", force=True)
    with pytest.raises(LockRefused, match="--force"):
        check_take(lock("releasebot", "rollback"), "U1", force=False)

    with pytest.raises(LockRefused, match="not locked"):
        check_release(None, "U1", force=False)
    check_release(lock("U1"), "U1", force=False)
    with pytest.raises(LockRefused, match="--force"):
        check_release(lock("U2"), "U1", force=False)
    check_release(lock("U2"), "U1", force=True)
    check_release(lock("releasebot", "rollback"), "U1", force=False)  # anyone, after a rollback
    with pytest.raises(LockRefused, match="deploy is running"):
        check_release(lock("U2", "deploy"), "U1", force=True)
