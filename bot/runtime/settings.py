"""Secrets and endpoints from the environment, under Bolt's names."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bot.adapters.github_config import DEFAULT_API_URL as DEFAULT_GITHUB_API_URL
from bot.adapters.github_config import GitHubConfig
from bot.adapters.redis.connect import RedisSettingError, RedisTarget, target_from_env

DEFAULT_SLACK_API_URL = "https://slack.com/api/"
DEFAULT_CONFIG_PATH = "releasebot.toml"


# The roles that answer Slack's requests, and so verify their signatures.
SLACK_ROLES = ("all", "web")


def unneeded(env: Mapping[str, str], role: str) -> list[str]:
    """Secrets set in the environment of a role that does not use them: every process a role
    runs could leak what it holds, so a role should hold only what it uses."""
    return (
        ["SLACK_SIGNING_SECRET"]
        if role not in SLACK_ROLES and env.get("SLACK_SIGNING_SECRET")
        else []
    )


class SettingsError(Exception):
    """A required environment variable is missing or wrong; the message names it."""


@dataclass(frozen=True)
class Settings:
    bot_token: str
    signing_secret: str
    # None: no REDIS_URL was given; `serve` and `shell` then start an embedded Redis. Under
    # Sentinel it may be None too, or carry only the scheme, password and database.
    redis_url: str | None
    app_token: str | None = None
    slack_api_url: str = DEFAULT_SLACK_API_URL
    state_dir: Path = Path(".releasebot")
    redis_prefix: str = "releasebot:"
    # How long the release message waits to gather a burst of changes into one chat.update.
    update_delay: float = 1.0
    # The least time between two messages the bot posts in one channel (Slack allows about
    # one a second per channel; bursts beyond it are refused with 429s).
    post_interval: float = 1.0
    # How often the version index is rebuilt from the repository's whole tag list: how soon
    # a tag pushed by hand counts for the next candidate (one rebuilt after a push meets it).
    tag_sync_interval: float = 60.0
    # The Redis at redis_url is the embedded fakeredis (no blocking pops; polled instead).
    embedded_redis: bool = False
    # How old a `/release status` served from the last read may be (bot.runtime.container).
    status_max_age: float = 0.2
    # How to reach GitHub, for CI gates (GITHUB_TOKEN or a GitHub App); None without.
    github: GitHubConfig | None = None
    # REDIS_SENTINELS and REDIS_SENTINEL_MASTER: the primary is whichever server these
    # sentinels name (REDIS_URL's host is then not used).
    redis_sentinels: tuple[tuple[str, int], ...] = ()
    redis_sentinel_master: str = ""
    redis_sentinel_tls: bool = False
    redis_tls_ca_file: str | None = None

    @property
    def redis_target(self) -> RedisTarget | None:
        """Where the bot's Redis is (every client of it is made from this), or None for the
        embedded one to be started."""
        if self.redis_url is None and not self.redis_sentinels:
            return None
        return RedisTarget(
            url=self.redis_url or "",
            sentinels=self.redis_sentinels,
            master=self.redis_sentinel_master,
            sentinel_tls=self.redis_sentinel_tls,
            ca_file=self.redis_tls_ca_file,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, role: str = "all") -> Settings:
        """The settings of a role. Only the roles that answer Slack (all, web) verify
        requests, so only they need SLACK_SIGNING_SECRET: a worker or a scheduler starts
        without it, and is better off without (see `unneeded`)."""
        env = os.environ if env is None else env
        # Socket Mode's requests come over a connection the app token opened: nothing to
        # verify a signature of.
        socket_mode = bool(env.get("SLACK_APP_TOKEN"))
        needed = (
            ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET")
            if role in SLACK_ROLES and not socket_mode
            else ("SLACK_BOT_TOKEN",)
        )
        missing = [name for name in needed if not env.get(name)]
        if missing:
            raise SettingsError(
                f"set {', '.join(missing)} in the environment (see README: Environment, "
                "and Create the Slack app for where to find them)"
            )
        # A blank secret would pass the check above and then fail every request.
        blank = [name for name in needed if not env[name].strip()]
        if blank:
            raise SettingsError(
                f"{', '.join(blank)} is blank (only spaces); set it to the "
                "value from your Slack app's settings"
            )
        api_url = env.get("SLACK_API_URL") or DEFAULT_SLACK_API_URL
        if not api_url.startswith(("http://", "https://")):
            raise SettingsError(f"SLACK_API_URL must be an http(s) URL, got {api_url!r}")
        try:
            delay = float(env.get("RELEASEBOT_UPDATE_DELAY", "1.0"))
        except ValueError:
            raise SettingsError("RELEASEBOT_UPDATE_DELAY must be a number of seconds") from None
        interval = _seconds(env, "RELEASEBOT_POST_INTERVAL", 1.0, 0, 60)
        tag_sync = _seconds(env, "RELEASEBOT_TAG_SYNC_INTERVAL", 60.0, 1, 3600)
        secret = env.get("SLACK_SIGNING_SECRET", "") if role in SLACK_ROLES else ""
        try:
            target = target_from_env(env)
        except RedisSettingError as exc:
            raise SettingsError(str(exc)) from None
        return cls(
            bot_token=env["SLACK_BOT_TOKEN"],
            signing_secret=secret,
            redis_url=env.get("REDIS_URL") or None,
            redis_sentinels=target.sentinels if target else (),
            redis_sentinel_master=target.master if target else "",
            redis_sentinel_tls=target.sentinel_tls if target else False,
            redis_tls_ca_file=target.ca_file if target else None,
            app_token=env.get("SLACK_APP_TOKEN") or None,
            slack_api_url=api_url if api_url.endswith("/") else api_url + "/",
            state_dir=Path(env.get("RELEASEBOT_STATE_DIR") or ".releasebot"),
            redis_prefix=env.get("RELEASEBOT_REDIS_PREFIX") or "releasebot:",
            update_delay=delay,
            post_interval=interval,
            tag_sync_interval=tag_sync,
            github=github_config(env),
        )


def _seconds(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    try:
        value = float(env.get(name, str(default)))
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds") from None
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low:g} and {high:g} seconds, got {value:g}")
    return value


def config_path(cli_value: str | None, env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return cli_value or env.get("RELEASEBOT_CONFIG") or DEFAULT_CONFIG_PATH


def github_config(env: Mapping[str, str] | None = None) -> GitHubConfig | None:
    """How to reach GitHub, from GITHUB_TOKEN, or GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY (the
    app's PEM key, its text), and GITHUB_API_URL (GitHub Enterprise Server's API, or a
    stand-in). None when none of them is set: the bot then has no GitHub gates or deploys."""
    env = os.environ if env is None else env
    token = (env.get("GITHUB_TOKEN") or "").strip()
    app_id = (env.get("GITHUB_APP_ID") or "").strip()
    key = (env.get("GITHUB_APP_PRIVATE_KEY") or "").strip()
    api_url = (env.get("GITHUB_API_URL") or "").strip() or DEFAULT_GITHUB_API_URL
    if not (token or app_id or key or env.get("GITHUB_API_URL")):
        return None
    if not api_url.startswith(("http://", "https://")):
        raise SettingsError(f"GITHUB_API_URL must be an http(s) URL, got {api_url!r}")
    if token and (app_id or key):
        raise SettingsError(
            "set GITHUB_TOKEN or GITHUB_APP_ID with GITHUB_APP_PRIVATE_KEY, not both"
        )
    if token:
        return GitHubConfig(api_url=api_url, token=token)
    if not app_id and not key:
        raise SettingsError(
            "GITHUB_API_URL is set: set GITHUB_TOKEN, or GITHUB_APP_ID and "
            "GITHUB_APP_PRIVATE_KEY, for the bot to authenticate"
        )
    if not app_id:
        raise SettingsError("GITHUB_APP_PRIVATE_KEY is set: set GITHUB_APP_ID too")
    if not app_id.isdigit():
        # Never echo the value back: a misplaced secret would land in the log.
        raise SettingsError("GITHUB_APP_ID must be the app's number (its settings page shows it)")
    if not key:
        raise SettingsError("GITHUB_APP_ID is set: set GITHUB_APP_PRIVATE_KEY too")
    if not key.startswith("-----BEGIN") or "PRIVATE KEY-----" not in key:
        raise SettingsError(
            "GITHUB_APP_PRIVATE_KEY must hold the app's private key in PEM "
            "(-----BEGIN RSA PRIVATE KEY----- ...), the text of the .pem file"
        )
    return GitHubConfig(api_url=api_url, app_id=app_id, app_private_key=key + "\n")
