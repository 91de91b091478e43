"""The version index on Redis: the bot's tags of the repository, newest version first, read
without listing the tags (the `VersionIndex` port).

git stays the truth of which tags exist: the index is rebuilt from the clone's whole tag list
in the background (bot.runtime.scheduler) and after a push finds a tag it did not know, and a
creator adds each tag it pushes. What a creator reads from it costs the same with 20,000 tags
as with 20 (one ZRANGE … BYLEX REV LIMIT), where listing them costs git ~0.15 s.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Mapping

from redis.asyncio import Redis

from bot.adapters.redis.keys import Keys
from bot.domain.versions import index_member, index_prefix, read_index_member

# Members written per command while rebuilding: a year of tags is tens of thousands, and one
# ZADD of all of them would hold Redis for every other client meanwhile.
_REBUILD_BATCH = 2000


def _between(start: str) -> tuple[bytes, bytes]:
    """The lexical range of every member that begins with `start` (0xFF sorts after any byte
    of UTF-8 text)."""
    raw = start.encode()
    return b"[" + raw, b"(" + raw + b"\xff"


def _text(member: object) -> str:
    return member.decode() if isinstance(member, bytes) else str(member)


class RedisVersionIndex:
    def __init__(self, redis: Redis, keys: Keys, tag_prefix: str) -> None:
        self.redis = redis
        self.keys = keys
        self.tag_prefix = tag_prefix

    async def is_built(self) -> bool:
        """Whether the index was rebuilt from the whole tag list, for this tag prefix (a
        changed `repository.tag_prefix` makes every member stale)."""
        synced = _synced(await self.redis.get(self.keys.versions_synced))
        return synced.get("prefix") == self.tag_prefix

    async def newest(self, skip: int, count: int) -> list[tuple[str, str]]:
        """(tag, commit) of the newest versions, newest first, after skipping `skip`."""
        members = await self.redis.zrange(
            self.keys.versions, "+", "-", desc=True, bylex=True, offset=skip, num=count
        )
        return [read_index_member(_text(m)) for m in members]

    async def commit_of(self, tag: str) -> str | None:
        """The commit `tag` points at, if the index has it."""
        start = index_prefix(tag, self.tag_prefix)
        if start is None:
            return None
        found = await self.redis.zrange(
            self.keys.versions, *_between(start), bylex=True, offset=0, num=1
        )
        return read_index_member(_text(found[0]))[1] if found else None

    async def add(self, tag: str, sha: str) -> None:
        """Record a tag just pushed (one not of the bot's form is not indexed)."""
        start, member = index_prefix(tag, self.tag_prefix), index_member(tag, sha, self.tag_prefix)
        if start is None or member is None:
            return
        async with self.redis.pipeline(transaction=True) as pipe:
            for key in (self.keys.versions, self.keys.versions_added):
                pipe.zremrangebylex(key, *_between(start))
                pipe.zadd(key, {member: 0})
            await pipe.execute()

    async def remove(self, tag: str) -> None:
        start = index_prefix(tag, self.tag_prefix)
        if start is not None:
            async with self.redis.pipeline(transaction=True) as pipe:
                for key in (self.keys.versions, self.keys.versions_added):
                    pipe.zremrangebylex(key, *_between(start))
                await pipe.execute()

    async def begin_rebuild(self) -> None:
        """Called before git's list is read: what is added from now on is kept through the
        rebuild (tags pushed meanwhile may be missing from that list)."""
        await self.redis.delete(self.keys.versions_added)

    async def rebuild(self, tags: Mapping[str, str], now: float) -> int:
        """Replace the index with `tags` (tag -> commit, the clone's whole list, read after
        `begin_rebuild`; others than the bot's form are skipped), and the tags added since.
        Written aside and swapped in with one transaction, so a reader sees the old index or
        the new one, never half of it (ZUNIONSTORE replaces its destination; members all
        score 0, so the union keeps them in lexical order). A list the same as at the last
        rebuild writes nothing: the index is that list and what was added and removed since.
        Returns how many git listed."""
        # 20,000 tags take 0.1 s of Python to turn into members: off the event loop.
        members, digest = await asyncio.to_thread(_members_of, tags, self.tag_prefix)
        last = _synced(await self.redis.get(self.keys.versions_synced))
        if last.get("prefix") == self.tag_prefix and last.get("digest") == digest:
            return len(members)
        aside = f"{self.keys.versions}:rebuild:{uuid.uuid4().hex}"
        synced = json.dumps(
            {"prefix": self.tag_prefix, "at": now, "tags": len(members), "digest": digest}
        )
        try:
            for start in range(0, len(members), _REBUILD_BATCH):
                batch = members[start : start + _REBUILD_BATCH]
                await self.redis.zadd(aside, dict.fromkeys(batch, 0))
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.zunionstore(self.keys.versions, [aside, self.keys.versions_added])
                pipe.delete(self.keys.versions_added)
                pipe.set(self.keys.versions_synced, synced)
                await pipe.execute()
        finally:
            await self.redis.delete(aside)
        return len(members)


def _members_of(tags: Mapping[str, str], prefix: str) -> tuple[list[str], str]:
    """The index's members for `tags`, and a digest of them that tells one list from another."""
    members = sorted(m for tag, sha in tags.items() if (m := index_member(tag, sha, prefix)))
    return members, hashlib.sha256("\n".join(members).encode()).hexdigest()


def _synced(raw: bytes | str | None) -> dict[str, object]:
    try:
        found = json.loads(raw) if raw is not None else {}
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}
