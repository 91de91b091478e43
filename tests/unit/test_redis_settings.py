"""The Redis part of the settings: a plain URL, TLS, or Sentinel; every mistake names its
variable. And what `connect` builds of each (no server needed: pools connect lazily)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from redis.asyncio.connection import SSLConnection
from redis.asyncio.sentinel import (
    SentinelConnectionPool,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)

from bot.adapters.redis.connect import (
    BlockingSentinelPool,
    FollowingSentinelPool,
    RedisTarget,
    connect,
)
from bot.runtime.settings import Settings, SettingsError

BASE = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s"}


def settings(**env: str) -> Settings:
    return Settings.from_env({**BASE, **env})


def test_without_redis_variables_the_embedded_redis_is_meant():
    assert settings().redis_target is None


def test_sentinels_and_master_make_a_sentinel_target():
    target = settings(
        REDIS_SENTINELS="10.0.0.1:26379, sentinel-b:26380,[::1]:26381",
        REDIS_SENTINEL_MASTER="releasebot",
    ).redis_target
    assert target == RedisTarget(
        sentinels=(("10.0.0.1", 26379), ("sentinel-b", 26380), ("::1", 26381)),
        master="releasebot",
    )
    assert not target.tls


@pytest.mark.parametrize("raw", ["x", "host", "host:", ":26379", "h:1,h", "h:port", "h:70000"])
def test_malformed_sentinels_are_named_with_what_was_given(raw: str):
    with pytest.raises(SettingsError) as caught:
        settings(REDIS_SENTINELS=raw, REDIS_SENTINEL_MASTER="m")
    assert str(caught.value) == f"REDIS_SENTINELS must be host:port[,host:port…], got {raw!r}"


def test_sentinels_need_a_master_name():
    with pytest.raises(SettingsError, match=r"^REDIS_SENTINEL_MASTER must name"):
        settings(REDIS_SENTINELS="h:26379")


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINEL_MASTER"),
        ({"REDIS_SENTINEL_TLS": "1"}, "REDIS_SENTINEL_TLS"),
        ({"REDIS_URL": "http://h:6379"}, "REDIS_URL"),
        (
            {"REDIS_SENTINELS": "h:1", "REDIS_SENTINEL_MASTER": "m", "REDIS_SENTINEL_TLS": "y"},
            "REDIS_SENTINEL_TLS",
        ),
        (
            {"REDIS_URL": "redis://h:6379/0", "REDIS_TLS_CA_FILE": "/etc/ca.pem"},
            "REDIS_TLS_CA_FILE",
        ),
        ({"REDIS_TLS_CA_FILE": "/etc/ca.pem"}, "REDIS_TLS_CA_FILE"),
    ],
)
def test_other_mistakes_name_their_variable(env: dict[str, str], named: str):
    with pytest.raises(SettingsError) as caught:
        settings(**env)
    assert str(caught.value).startswith(named), caught.value


def test_an_unreadable_ca_file_is_refused(tmp_path: Path):
    with pytest.raises(SettingsError, match=r"REDIS_TLS_CA_FILE .* is not a readable file"):
        settings(REDIS_URL="rediss://h:6380/0", REDIS_TLS_CA_FILE=str(tmp_path / "none.pem"))


async def test_a_rediss_url_makes_a_tls_pool_that_trusts_the_ca_file(tmp_path: Path):
    ca = tmp_path / "ca.pem"
    ca.write_text("not read until a connection is made")
    target = settings(REDIS_URL="rediss://h:6380/2", REDIS_TLS_CA_FILE=str(ca)).redis_target
    assert target is not None and target.tls
    client = connect(target, max_connections=4, pool_wait=1)
    pool = client.connection_pool
    assert issubclass(pool.connection_class, SSLConnection)
    connection = pool.make_connection()
    assert isinstance(connection, SSLConnection)
    assert connection.ssl_context.ca_certs == str(ca)
    assert connection.ssl_context.cert_reqs == ssl.CERT_REQUIRED
    await client.aclose()


@pytest.mark.parametrize(
    ("env", "tls"),
    [
        ({}, False),
        ({"REDIS_SENTINEL_TLS": "1"}, True),
        ({"REDIS_URL": "rediss://:secret@/3"}, True),
    ],
)
async def test_a_sentinel_target_makes_a_sentinel_pool_for_every_client(
    env: dict[str, str], tls: bool
):
    target = settings(
        REDIS_SENTINELS="127.0.0.1:1,127.0.0.1:2", REDIS_SENTINEL_MASTER="main", **env
    ).redis_target
    assert target is not None and target.tls is tls
    store = connect(target, max_connections=8, pool_wait=1)
    queue = connect(target)
    assert isinstance(store.connection_pool, BlockingSentinelPool)
    assert type(queue.connection_pool) is FollowingSentinelPool
    for pool in (store.connection_pool, queue.connection_pool):
        assert isinstance(pool, SentinelConnectionPool)
        assert pool.service_name == "main"
        kind = SentinelManagedSSLConnection if tls else SentinelManagedConnection
        assert issubclass(pool.connection_class, kind)
        assert issubclass(pool.connection_class, SSLConnection) is tls
        # The sentinels themselves are asked over TLS too when the servers are.
        sentinel = pool.sentinel_manager.sentinels[0]
        assert issubclass(sentinel.connection_pool.connection_class, SSLConnection) is tls
    if "REDIS_URL" in env:
        assert store.connection_pool.connection_kwargs["password"] == "secret"
        assert store.connection_pool.connection_kwargs["db"] == 3
    await store.aclose()
    await queue.aclose()
