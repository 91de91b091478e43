"""The services of one bot (bot.domain.fleet), each with its own container, and which of them
a Slack request is for.

A bot of one service is a fleet of one, as it always was: its container owns its clients and
keeps the one-service keys. With several, they share the Redis and Slack clients, and each has
its own keys, queue and clone under its name (bot.runtime.container). A request is for:

- the service a command names, after its sub-command (`/release rc web`, `/flag list web`):
  its name, or a prefix of only its name (not an environment's name, a version or an option);
- else the service whose channel it comes from (each service posts in a channel of its own,
  so its messages' buttons are clicked there too);
- else, with one service, that one; with several, none: the command is answered with the
  list of services and the syntax (`/release status` shows them all)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.domain.config import Config
from bot.runtime.container import Clients, Services
from bot.runtime.settings import Settings

log = logging.getLogger(__name__)

_NOT_A_SERVICE = re.compile(r"^(?:-|v?\d)")  # an option, a version


@dataclass
class Fleet:
    services: tuple[Services, ...]
    clients: Clients | None = None  # None: the one service owns its clients

    @classmethod
    def create(cls, settings: Settings, configs: Sequence[Config]) -> Fleet:
        if len(configs) == 1:
            return cls((Services.create(settings, configs[0]),))
        clients = Clients.connect(settings)
        return cls(tuple(Services.create(settings, c, clients) for c in configs), clients)

    @classmethod
    def of(cls, services: Services) -> Fleet:
        return cls((services,))

    @property
    def first(self) -> Services:
        return self.services[0]

    @property
    def names(self) -> list[str]:
        return [s.config.service for s in self.services]

    def named(self, word: str) -> Services | None:
        """The service `word` names: its name, or a prefix of only its name (never a word
        that is an environment of a service, a version or an option)."""
        word = word.lower()
        for services in self.services:
            if services.config.service == word:
                return services
        if not word or _NOT_A_SERVICE.match(word):
            return None
        if any(word == e.name for s in self.services for e in s.config.environments):
            return None
        found = [s for s in self.services if s.config.service.startswith(word)]
        return found[0] if len(found) == 1 else None

    def for_channel(self, channel_id: str, channel_name: str) -> Services | None:
        """The service that posts in this channel (its config names it by ID or by name)."""
        wanted = {channel_id, channel_name.lower(), f"#{channel_name.lower()}"} - {"", "#"}
        for services in self.services:
            if (
                services.config.slack.channel.lower() in wanted
                or services.config.slack.channel in wanted
            ):
                return services
        return None

    def route(self, body: dict[str, Any]) -> Services | None:
        """The service a Slack request is for (see the module docstring); None when a fleet of
        several cannot tell. A command's service word is taken out of its text."""
        if len(self.services) == 1:
            return self.first
        if "command" in body:
            words = str(body.get("text") or "").split()
            if len(words) >= 2 and (named := self.named(words[1])) is not None:
                body["text"] = " ".join([words[0], *words[2:]])
                return named
            return self.for_channel(
                str(body.get("channel_id") or ""), str(body.get("channel_name") or "")
            )
        if body.get("type") == "view_submission" or body.get("type") == "view_closed":
            view = body.get("view") or {}
            try:
                meta = json.loads(view.get("private_metadata") or "{}")
            except ValueError:
                return None
            name = meta.get("s") if isinstance(meta, dict) else None
            return self.named(str(name)) if name else None
        channel = body.get("channel") or {}
        container = body.get("container") or {}
        return self.for_channel(
            str(channel.get("id") or container.get("channel_id") or ""),
            str(channel.get("name") or ""),
        )

    async def close(self) -> None:
        for services in self.services:
            try:
                await services.close()
            except Exception:
                log.warning("closing %s failed", services.config.service, exc_info=True)
        if self.clients is not None:
            await asyncio.shield(self.clients.close())
