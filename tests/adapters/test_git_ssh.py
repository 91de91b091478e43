"""The bot's own git (its clone's fetches, ls-remote and pushes) reaches an ssh remote through
GIT_SSH_COMMAND set in the bot's environment, as the README's Docker section sets it with a
deploy key and a known_hosts file; deploy and gate commands do not get it.

A stand-in `ssh` shows what git was given, on every machine; a real sshd, started here on a
free port with throwaway keys, shows that the README's command works, where sshd is installed."""

from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.adapters.git_clone import GitClone
from bot.adapters.process.runner import command_environment
from bot.domain.config import CommandEnv
from bot.services.ports import GitError
from tests.helpers.repos import GitRemote

# Runs the remote command (git-upload-pack '/path', git-receive-pack …) here instead of on a
# host, after writing down the arguments it was given. Named `ssh` so that git passes it
# OpenSSH's options, as it would the real one.
STAND_IN = r"""#!/bin/sh
printf '%s\n' "$*" >> "$(dirname "$0")/calls"
while [ $# -gt 0 ]; do
  case "$1" in
    -o|-p|-i|-l|-F) shift 2 ;;
    -*) shift ;;
    *) break ;;
  esac
done
shift
exec sh -c "$*"
"""


def deploy_ssh_command(ssh: str, key: Path, known_hosts: Path) -> str:
    """The README's GIT_SSH_COMMAND, for a key and a known_hosts file."""
    return shlex.join(
        [ssh, "-i", str(key), "-o", f"UserKnownHostsFile={known_hosts}", "-o", "IdentitiesOnly=yes"]
    )


async def release_over(url: str, clone: Path, remote: GitRemote) -> None:
    """What creating a candidate does with the repository: fetch it, read the release branch,
    push a tag; then check out that tag as a deploy does (ls-remote first)."""
    repo = GitClone(url=url, path=clone, remote="origin", tag_prefix="v")
    snapshot = await repo.sync("main")
    assert snapshot.head_sha == remote.head()
    await repo.create_and_push_tag("v0.15.0-rc.1", snapshot.head_sha, "candidate")
    assert remote.remote_tags()["v0.15.0-rc.1"] == snapshot.head_sha
    tree = await repo.checkout("v0.15.0-rc.1", snapshot.head_sha)
    try:
        assert (tree / "app.txt").exists()
    finally:
        await repo.remove_tree(tree)


async def test_the_bots_git_goes_through_git_ssh_command_from_its_environment(
    git_remote: GitRemote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    ssh = bin_dir / "ssh"
    ssh.write_text(STAND_IN)
    ssh.chmod(0o755)
    key, known_hosts = tmp_path / "deploy_key", tmp_path / "known_hosts"
    monkeypatch.setenv("GIT_SSH_COMMAND", deploy_ssh_command(str(ssh), key, known_hosts))
    # scp-like, as the README's example: user@host:path.
    await release_over(f"git@git.example.invalid:{git_remote.bare}", tmp_path / "clone", git_remote)

    calls = (bin_dir / "calls").read_text().splitlines()
    assert any("git-upload-pack" in c for c in calls)  # fetch, ls-remote
    assert any("git-receive-pack" in c for c in calls)  # push
    for call in calls:
        assert f"-i {key} -o UserKnownHostsFile={known_hosts} -o IdentitiesOnly=yes" in call
        assert "git@git.example.invalid" in call


def test_a_deploy_command_does_not_get_the_bots_git_ssh_command():
    """The deploy key is for the bot's pushes; the released code gets only what the config
    passes it."""
    bots = {"PATH": "/usr/bin:/bin", "GIT_SSH_COMMAND": "ssh -i /run/secrets/deploy_key"}
    assert "GIT_SSH_COMMAND" not in command_environment({}, CommandEnv(), source=bots)


# --- a real sshd ------------------------------------------------------------------------------


def _sshd() -> str | None:
    # /usr/sbin is often not on a non-root user's PATH.
    found = shutil.which("sshd") or shutil.which("sshd", path="/usr/sbin:/usr/local/sbin")
    return os.path.abspath(found) if found else None  # sshd re-executes itself by this path


SSHD = _sshd()
CLIENT = {name: shutil.which(name) for name in ("ssh", "ssh-keygen")}
needs_sshd = pytest.mark.skipif(
    SSHD is None or None in CLIENT.values(),
    reason="no OpenSSH server (sshd) or client (ssh, ssh-keygen) on this machine, so the clone "
    "over real ssh is not tried (apt-get install openssh-server openssh-client)",
)


@dataclass(frozen=True)
class SshServer:
    port: int
    user: str
    user_key: Path
    known_hosts: Path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _keygen(path: Path) -> str:
    """A new ed25519 key pair without a passphrase at `path`; its public line."""
    assert CLIENT["ssh-keygen"] is not None
    subprocess.run(
        [CLIENT["ssh-keygen"], "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)],
        check=True,
    )
    return path.with_suffix(".pub").read_text().strip()


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SshServer]:
    """sshd on 127.0.0.1 and a free port, letting in this process's user with a throwaway key
    only; stopped after the test."""
    assert SSHD is not None
    where = tmp_path / "sshd"
    where.mkdir()
    host_key, user_key = where / "host_key", where / "user_key"
    host_public = _keygen(host_key)
    (where / "authorized_keys").write_text(_keygen(user_key) + "\n")
    user = pwd.getpwuid(os.getuid()).pw_name
    port = _free_port()
    config = where / "sshd_config"
    config.write_text(
        f"Port {port}\n"
        "ListenAddress 127.0.0.1\n"
        f"HostKey {host_key}\n"
        f"PidFile {where / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {where / 'authorized_keys'}\n"
        f"AllowUsers {user}\n"
        "PubkeyAuthentication yes\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\n"  # the suite may run as root (CI does)
        "UsePAM no\n"
        "StrictModes no\n"  # pytest's tmp folders are not a home directory's ~/.ssh
    )
    known_hosts = where / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_public}\n")
    log = where / "sshd.log"
    for _ in range(2):
        with log.open("w") as out:
            server = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(config)], stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 10
        while server.poll() is None and not _listening(port) and time.monotonic() < deadline:
            time.sleep(0.05)
        if server.poll() is None and _listening(port):
            break
        server.kill()
        server.wait()
        said = log.read_text().strip()
        # Run as root, sshd wants its privilege separation folder, which its service makes at
        # start (on Debian, /run/sshd): an empty root-owned folder, made the same way here.
        missing = re.search(r"Missing privilege separation directory: (\S+)", said)
        if missing is None or os.geteuid() != 0:
            pytest.skip(f"sshd could not start on this machine: {said[-300:]}")
        Path(missing.group(1)).mkdir(mode=0o755, parents=True, exist_ok=True)
    else:
        pytest.skip(f"sshd could not start on this machine: {log.read_text().strip()[-300:]}")
    try:
        yield SshServer(port=port, user=user, user_key=user_key, known_hosts=known_hosts)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@needs_sshd
async def test_a_clone_over_ssh_works_with_the_readmes_git_ssh_command(
    sshd: SshServer, git_remote: GitRemote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    assert stat.S_IMODE(sshd.user_key.stat().st_mode) == 0o600  # ssh refuses looser keys
    assert CLIENT["ssh"] is not None
    command = deploy_ssh_command(CLIENT["ssh"], sshd.user_key, sshd.known_hosts)
    # BatchMode: a prompt (a passphrase, an unknown host) fails at once instead of waiting;
    # `-F none` keeps this user's own ~/.ssh/config out of the test.
    monkeypatch.setenv("GIT_SSH_COMMAND", f"{command} -o BatchMode=yes -F none")
    url = f"ssh://{sshd.user}@127.0.0.1:{sshd.port}{git_remote.bare}"
    await release_over(url, tmp_path / "clone", git_remote)


@needs_sshd
async def test_a_host_missing_from_known_hosts_is_refused(
    sshd: SshServer, git_remote: GitRemote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The known_hosts file given is what ssh checks the server against: without the server's
    key in it, nothing is fetched (and nothing is added to it)."""
    assert CLIENT["ssh"] is not None
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    command = deploy_ssh_command(CLIENT["ssh"], sshd.user_key, empty)
    monkeypatch.setenv("GIT_SSH_COMMAND", f"{command} -o BatchMode=yes -F none")
    url = f"ssh://{sshd.user}@127.0.0.1:{sshd.port}{git_remote.bare}"
    repo = GitClone(url=url, path=tmp_path / "clone", remote="origin", tag_prefix="v")
    with pytest.raises(GitError, match="Host key verification failed"):
        await repo.sync("main")
    assert empty.read_text() == ""
