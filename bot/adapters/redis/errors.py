"""Which Redis errors mean what, for the layers that must not know Redis: the composition root
hands these tuples on (bot.runtime.container)."""

from __future__ import annotations

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

# The state store cannot be reached right now (down, hung past a deadline, connection lost):
# what callers catch to say so instead of failing.
UNREACHABLE: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)

# Not reachable right now, so a write may be tried again (as opposed to an answer that refuses
# the write, or a timeout after which it may have been done).
TRANSIENT: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    TimeoutError,
)
