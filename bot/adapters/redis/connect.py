"""The one place the bot's Redis clients are made: one Redis at a URL (plain or TLS), or the
primary a group of Sentinels names. The store, the locks, the job queue, the audit export and
the shell all get theirs from `connect`, so a failover or a TLS setting reaches every one of
them alike."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import hiredis
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import (
    Connection,
    ConnectionPool,
    SSLConnection,
    UnixDomainSocketConnection,
    parse_url,
)
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import (
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)
from redis.backoff import ExponentialBackoff
from redis.connection import HiredisRespSerializer
from redis.exceptions import ConnectionError as RedisConnectionError

# Every client of the bot's Redis. After a Redis restart (or a failover) the pooled
# connections are dead: a command on one is retried once on a fresh connection (only for a
# connection error, which means the command was not executed; a timeout is not retried, it may
# have been), and an idle connection is checked before it is used again. Under Sentinel the
# fresh connection asks the sentinels where the primary is now.
REDIS_OPTIONS: dict[str, Any] = {
    "socket_connect_timeout": 2,
    "socket_timeout": 10,
    "health_check_interval": 30,
    "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), 1),
    "retry_on_error": [RedisConnectionError],
}

# How long a question to one sentinel may take: a sentinel that does not answer must not hold
# up asking the next one.
SENTINEL_TIMEOUT = 1.0

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


class RedisSettingError(ValueError):
    """A Redis variable of the environment is wrong; the message names it."""


@dataclass(frozen=True)
class RedisTarget:
    """Where the bot's Redis is. `url` gives the scheme (rediss: TLS), password and database;
    with `sentinels` its host is not used: the sentinels say which server is the primary."""

    url: str = ""
    sentinels: tuple[tuple[str, int], ...] = ()
    master: str = ""
    # TLS to the sentinels and to the servers they name (REDIS_SENTINEL_TLS, or rediss://).
    sentinel_tls: bool = False
    ca_file: str | None = None

    @property
    def tls(self) -> bool:
        return self.sentinel_tls if self.sentinels else self.url.startswith("rediss://")


def target_from_env(env: Mapping[str, str]) -> RedisTarget | None:
    """The Redis the environment names, or None when it names none (REDIS_URL and
    REDIS_SENTINELS unset). Raises RedisSettingError naming the variable at fault."""
    url = env.get("REDIS_URL") or ""
    raw_sentinels = env.get("REDIS_SENTINELS") or ""
    master = (env.get("REDIS_SENTINEL_MASTER") or "").strip()
    tls_flag = (env.get("REDIS_SENTINEL_TLS") or "").strip().lower()
    ca_file = env.get("REDIS_TLS_CA_FILE") or None
    if url and urlsplit(url).scheme not in ("redis", "rediss", "unix"):
        raise RedisSettingError(
            f"REDIS_URL must start with redis://, rediss:// or unix://, got {url!r}"
        )
    if tls_flag not in _TRUE + _FALSE:
        raise RedisSettingError(f"REDIS_SENTINEL_TLS must be 1 or 0, got {tls_flag!r}")
    sentinels = _sentinels(raw_sentinels) if raw_sentinels.strip() else ()
    if sentinels and not master:
        raise RedisSettingError(
            "REDIS_SENTINEL_MASTER must name the primary the sentinels watch "
            "(their `sentinel monitor NAME …`) when REDIS_SENTINELS is set"
        )
    if not sentinels and (master or tls_flag in _TRUE):
        named = "REDIS_SENTINEL_MASTER" if master else "REDIS_SENTINEL_TLS"
        raise RedisSettingError(f"{named} is set, but REDIS_SENTINELS is not")
    if sentinels and url.startswith("unix://"):
        raise RedisSettingError("REDIS_URL cannot be a unix:// socket when REDIS_SENTINELS is set")
    if not url and not sentinels:
        if ca_file:
            raise RedisSettingError("REDIS_TLS_CA_FILE is set, but REDIS_URL is not")
        return None
    target = RedisTarget(
        url=url,
        sentinels=sentinels,
        master=master,
        sentinel_tls=bool(sentinels) and (tls_flag in _TRUE or url.startswith("rediss://")),
        ca_file=ca_file,
    )
    if ca_file:
        if not target.tls:
            raise RedisSettingError(
                "REDIS_TLS_CA_FILE is set, but the connection is not TLS (use a rediss:// "
                "REDIS_URL, or REDIS_SENTINEL_TLS=1 with REDIS_SENTINELS)"
            )
        if not os.access(ca_file, os.R_OK):
            raise RedisSettingError(f"REDIS_TLS_CA_FILE {ca_file!r} is not a readable file")
    return target


def _sentinels(raw: str) -> tuple[tuple[str, int], ...]:
    found = []
    for part in raw.split(","):
        host, sep, port = part.strip().rpartition(":")
        host = host.strip("[]")  # [::1]:26379
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise RedisSettingError(f"REDIS_SENTINELS must be host:port[,host:port…], got {raw!r}")
        found.append((host, int(port)))
    return tuple(found)


class _PackedInC:
    """redis-py packs each command in Python on its asyncio connections (its sync ones use
    hiredis, a dependency of ours): about 30 µs for the XADD of an audit entry, which every
    command and click writes. The same bytes, packed by hiredis in C in a sixth of that."""

    _packer = HiredisRespSerializer()

    def pack_command(self, *args: Any) -> list[bytes]:
        name = args[0].encode() if isinstance(args[0], str) else args[0]
        if isinstance(name, bytes) and b" " not in name:
            try:
                return [hiredis.pack_command((name, *args[1:]))]
            except TypeError:
                pass  # a bytearray, or what cannot be sent: redis-py's packer says which
        # A name of two words ("CLIENT SETNAME") is sent as two arguments.
        packed: list[bytes] = self._packer.pack(*args)
        return packed


class PackedConnection(_PackedInC, Connection):
    pass


class _PackedSSLConnection(_PackedInC, SSLConnection):
    pass


class _PackedUnixConnection(_PackedInC, UnixDomainSocketConnection):
    pass


class _PackedSentinelConnection(_PackedInC, SentinelManagedConnection):
    pass


class _PackedSentinelSSLConnection(_PackedInC, SentinelManagedSSLConnection):
    pass


_PACKED: dict[type[Any], type[Any]] = {
    Connection: PackedConnection,
    SSLConnection: _PackedSSLConnection,
    UnixDomainSocketConnection: _PackedUnixConnection,
    SentinelManagedConnection: _PackedSentinelConnection,
    SentinelManagedSSLConnection: _PackedSentinelSSLConnection,
}


def pack_in_c(pool: ConnectionPool) -> ConnectionPool:
    """`pool` (before its first connection) with connections that pack in C, for each of
    redis-py's own connection classes (the URL's scheme, or Sentinel, picks one)."""
    pool.connection_class = _PACKED.get(pool.connection_class, pool.connection_class)
    return pool


class FollowingSentinelPool(SentinelConnectionPool):
    """Sentinel's pool, which also notices a failover while its connections stay open.

    redis-py's pool asks the sentinels where the primary is only when it opens a connection.
    A pooled connection to a primary that was handed over (SENTINEL FAILOVER, or one that
    comes back after a partition) stays open, and that server goes on accepting writes until
    the sentinels turn it into a replica, seconds later; those writes are then lost (a test
    saw a gate's "running" vanish that way). So at most every FOLLOW_SECONDS, taking a
    connection asks the sentinels again: on a new address the idle connections are closed
    at once, and those in use are closed when they come back (`owns_connection`)."""

    FOLLOW_SECONDS = 0.25

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self._asked_at = 0.0

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        now = time.monotonic()
        if self.master_address is not None and now - self._asked_at >= self.FOLLOW_SECONDS:
            self._asked_at = now  # before the await: concurrent callers do not ask too
            # When no sentinel answers, the primary we know may still: the command will say.
            with contextlib.suppress(RedisConnectionError):
                await self.get_master_address()  # type: ignore[no-untyped-call]
        return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]


class BlockingSentinelPool(FollowingSentinelPool, BlockingConnectionPool):
    """The same, waiting for a free connection like BlockingConnectionPool instead of
    failing a burst."""


class _SentinelClient(Redis):
    """The primary's client, which also closes its connections to the sentinels: they belong
    to it alone, and nothing else would close them."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        manager = getattr(self.connection_pool, "sentinel_manager", None)
        if isinstance(manager, Sentinel):
            await manager.aclose()


def connect(
    target: RedisTarget,
    *,
    max_connections: int | None = None,
    pool_wait: float | None = None,
    **options: Any,
) -> Redis:
    """A client of `target`. With `max_connections`, a call waits up to `pool_wait` seconds
    for one of them; without, the pool grows as needed (the job queue's). `options` override
    REDIS_OPTIONS (the audit export's longer timeouts)."""
    kwargs = {**REDIS_OPTIONS, **options}
    if target.ca_file:
        kwargs["ssl_ca_certs"] = target.ca_file
    if max_connections is not None:
        kwargs["max_connections"] = max_connections
    pool: ConnectionPool
    if not target.sentinels:
        pool_class = ConnectionPool if max_connections is None else BlockingConnectionPool
        if max_connections is not None:
            kwargs["timeout"] = pool_wait
        pool = pool_class.from_url(target.url, **kwargs)
        return Redis.from_pool(pack_in_c(pool))
    # The URL's password, user and database go to the primary; where it is comes from the
    # sentinels (its host and port are not used).
    from_url = parse_url(target.url) if target.url else {}
    for name in ("username", "password", "db"):
        if name in from_url:
            kwargs[name] = from_url[name]
    tls = {"ssl": True, **({"ssl_ca_certs": target.ca_file} if target.ca_file else {})}
    sentinel = Sentinel(
        target.sentinels,
        sentinel_kwargs={
            "socket_connect_timeout": SENTINEL_TIMEOUT,
            "socket_timeout": SENTINEL_TIMEOUT,
            **(tls if target.tls else {}),
        },
    )
    if target.tls:
        kwargs["ssl"] = True
    sentinel_pool: type[SentinelConnectionPool] = FollowingSentinelPool
    if max_connections is not None:
        sentinel_pool = BlockingSentinelPool
        kwargs["timeout"] = pool_wait
    client: Redis = sentinel.master_for(
        target.master, redis_class=_SentinelClient, connection_pool_class=sentinel_pool, **kwargs
    )
    pack_in_c(client.connection_pool)
    return client
