"""Which scheduler replica runs which check: rendezvous (highest random weight) hashing.

Every replica knows the same live members (from Redis) and so computes the same owner for
each check without asking anyone: the member whose hash with the check is highest. When a
member joins or leaves, only the checks it gains or loses change hands (about 1/n of them),
so the other replicas keep their checks' states in memory. Plain functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from hashlib import blake2b

from bot.domain.health.checks import CheckId


def weight(member: str, check: CheckId) -> int:
    """The member's weight for the check: the same on every replica and every run (Python's
    own hash() is salted per process, so it would not be)."""
    key = f"{member}\0{check[0]}\0{check[1]}".encode()
    return int.from_bytes(blake2b(key, digest_size=8).digest(), "big")


def owner(check: CheckId, members: Sequence[str]) -> str:
    """The member that runs `check` (members must not be empty)."""
    return max(members, key=lambda member: (weight(member, check), member))


def share(checks: Sequence[CheckId], members: Sequence[str], me: str) -> list[CheckId]:
    """The checks `me` runs, in their configured order. A member that is not (yet) among
    `members` runs none: it ticks again once it has joined."""
    if me not in members:
        return []
    if len(members) == 1:
        return list(checks)
    return [check for check in checks if owner(check, members) == me]
