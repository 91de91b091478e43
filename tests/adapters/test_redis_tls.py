"""A rediss:// REDIS_URL against a real redis-server listening only on TLS: the bot's client
trusts the CA in REDIS_TLS_CA_FILE, and refuses the server without it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from bot.adapters.redis.connect import connect, target_from_env
from tests.helpers.redis_server import RedisServer

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA of the test's own and a certificate it signed for 127.0.0.1."""
    folder.mkdir(parents=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
            "ca.pem", "-days", "1", "-subj", "/CN=test-ca")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out",
            "server.csr", "-subj", "/CN=127.0.0.1")  # fmt: skip
    (folder / "ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "1", "-extfile", "ext")  # fmt: skip
    return folder / "ca.pem", folder / "server.pem", folder / "server.key"


@pytest.fixture
def tls_redis(tmp_path: Path):
    ca, cert, key = certificates(tmp_path / "tls")
    server = RedisServer(tmp_path / "redis")
    # Plain TCP off (port 0), TLS on the free port, no client certificates asked for.
    server.extra = ("--port", "0", "--tls-port", str(server.port), "--tls-cert-file", str(cert),
                    "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca),
                    "--tls-auth-clients", "no")  # fmt: skip
    server.start()
    yield server, ca
    server.stop()


async def test_a_rediss_url_talks_tls_and_trusts_the_ca_file(tls_redis):
    server, ca = tls_redis
    env = {"REDIS_URL": f"rediss://127.0.0.1:{server.port}/0", "REDIS_TLS_CA_FILE": str(ca)}
    target = target_from_env(env)
    assert target is not None and target.tls
    client = connect(target, max_connections=2, pool_wait=1)
    try:
        await client.set("tls-check", "ok")
        assert await client.get("tls-check") == b"ok"
    finally:
        await client.aclose()

    # Without the CA the server's certificate is not trusted: nothing is sent in the clear.
    untrusting = connect(target_from_env({"REDIS_URL": env["REDIS_URL"]}), socket_timeout=2)
    try:
        with pytest.raises(RedisConnectionError, match="certificate verify failed"):
            await untrusting.ping()
    finally:
        await untrusting.aclose()
