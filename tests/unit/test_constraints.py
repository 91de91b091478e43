"""constraints.txt pins every package the bot and its tools need: the image and scripts/dev.sh
(so CI) install with it, and a package left out of it would be whatever version pip found that
day, a different one in the image than in the tested venv."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).parents[2]


def pins() -> dict[str, str]:
    found = {}
    for raw in (ROOT / "constraints.txt").read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, exact, version = line.partition("==")
            assert exact and version, f"constraints.txt: not an exact version: {raw}"
            found[canonicalize_name(name)] = version
    return found


def needed(package: str = "releasebot", extras: tuple[str, ...] = ("dev", "test")) -> set[str]:
    """Every distribution `package` with `extras` requires on this interpreter, all the way
    down, as installed here."""
    todo = [(canonicalize_name(package), frozenset(extras))]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, wanted = todo.pop()
        if (name, wanted) in seen:
            continue
        seen.add((name, wanted))
        for text in metadata.requires(name) or []:
            req = Requirement(text)
            if req.marker is None or any(
                req.marker.evaluate({"extra": extra}) for extra in wanted | {""}
            ):
                todo.append((canonicalize_name(req.name), frozenset(req.extras)))
    return {name for name, _ in seen} - {canonicalize_name(package)}


def test_every_package_the_bot_and_its_tools_need_is_pinned():
    assert sorted(needed() - pins().keys()) == []


def test_the_runtime_requirements_are_among_them():
    """The check above follows the installed metadata; it must see the runtime's too."""
    assert {"slack-bolt", "redis", "gitpython", "hiredis", "gitdb"} <= needed(extras=())


def test_this_venv_runs_the_pinned_versions():
    pinned = pins()
    differ = {name: (metadata.version(name), pinned[name]) for name in needed() if name in pinned}
    assert {name: v for name, v in differ.items() if v[0] != v[1]} == {}
