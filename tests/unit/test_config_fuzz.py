"""The config checker never crashes: hundreds of mutated configs (values of another type,
keys dropped or unknown, numbers out of range, nan and inf) each parse or raise a ConfigError
whose problems name keys, with lines found in the file's text. Seeded: the same configs each
run, so a failure is one to replay (the seed and the mutations are in its message)."""

from __future__ import annotations

import copy
import math
import random
import tomllib
from pathlib import Path
from typing import Any

import tomlkit

from bot.domain.config import TABLES, ConfigError, key_line
from bot.domain.fleet import parse_services
from tests.helpers.config import automatic_gate, config_text, environment, manual_gate

README = (Path(__file__).parents[2] / "README.md").read_text()
AROUND = '[repository]\nurl = "/tmp/r"\n[slack]\nchannel = "#r"\n'


def readme_configs() -> list[str]:
    """The README's examples of releasebot's config (not the flags file), each made whole."""
    blocks = [b[: b.index("```")] for b in README.split("```toml\n")[1:]]
    texts = [blocks[0]]
    for block in blocks[1:]:
        if block.lstrip().startswith("# Feature flags") or "[flags." in block:
            continue
        env = '[[environments]]\nname = "production"\ndeploy_command = "true"\n'
        texts.append(AROUND + ("" if "[[environments]]" in block else env) + block)
    return texts


def helper_config() -> str:
    """A config of the tests' builder with a value in every table."""
    return config_text(
        repository={"branch": "main", "tag_prefix": "v"},
        worker={"concurrency": 2, "lock_ttl_seconds": 3.0, "shutdown_grace_seconds": 0},
        environments=[
            environment(
                "staging",
                url="https://s.example.com",
                env={"DEPLOY_TARGET": "blue"},
                pass_env=["NPM_TOKEN"],
                checks=[{"name": "health", "path": "/health", "json": {"db.ok": True}}],
            ),
            environment("production", timeout_seconds=20),
        ],
        gates=[automatic_gate("e2e", "Automated tests"), manual_gate("qa", "Manual QA")],
        approvals={"production": {"required": 1, "approvers": ["U0ALICE", "S0RELMGR"]}},
        rollback={"required": 1},
        waivers={"required": 1, "approvers": []},
        hotfix={"branches": ["hotfix/*"], "gates": ["e2e", "qa"], "required": 1},
        monitoring={"oncall": ["S0ONCALL"], "history": 150, "error_rate_percent": 1.0},
        flags={"path": "data/flags.toml", "environment": "production", "required": 0},
    )


# Values of every TOML type, the edges of each, and the ones a checker forgets.
ODD_VALUES: list[Any] = [
    "",
    "   ",
    "x",
    "Not Lowercase",
    "U012ABCDEF",
    "hotfix/*",
    "/health",
    "https://example.com",
    "not a url",
    [],
    ["x"],
    [1, 2],
    [{}],
    [["a"]],
    {},
    {"a": 1},
    {"name": "x"},
    0,
    -1,
    1,
    10**20,
    10**400,
    -(10**400),
    0.0,
    -0.5,
    1e-300,
    float("nan"),
    float("inf"),
    float("-inf"),
    True,
    False,
]


def places(document: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The path of every value in `document` (keys of tables, indexes of lists)."""
    found = [path] if path else []
    if isinstance(document, dict):
        for name, value in document.items():
            found += places(value, (*path, name))
    elif isinstance(document, list):
        for i, value in enumerate(document):
            found += places(value, (*path, i))
    return found


def mutate(document: dict[str, Any], rng: random.Random) -> str:
    """One change to `document`, in place; what it was, for a failure's message."""
    path = rng.choice(places(document))
    *parent_path, last = path
    parent: Any = document
    for step in parent_path:
        parent = parent[step]
    value = parent[last]
    move = rng.choice(("swap", "swap", "drop", "unknown", "number", "empty"))
    if move == "drop" and isinstance(parent, dict):
        del parent[last]
    elif move == "unknown" and isinstance(value, dict):
        value[rng.choice(("colour", "timeout", "Name", "x.y"))] = rng.choice(ODD_VALUES)
    elif move == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        parent[last] = rng.choice((0, -value, value * 10**6, math.nan, math.inf, 10**400))
    elif move == "empty" and isinstance(value, list | dict | str):
        parent[last] = type(value)()
    else:
        parent[last] = copy.deepcopy(rng.choice(ODD_VALUES))
    now = parent.get(last, "(dropped)") if isinstance(parent, dict) else parent[last]
    return f"{move} {'.'.join(map(str, path))} -> {now!r}"


def test_mutated_configs_parse_or_name_the_keys_at_fault():
    bases = [tomllib.loads(text) for text in (*readme_configs(), helper_config())]
    for base in bases:
        parse_services(copy.deepcopy(base))  # each is valid as it is
    known = set(TABLES[""]) | {"services"}
    rng = random.Random(15)
    outcomes = {"parsed": 0, "refused": 0}
    for case in range(1500):
        document = copy.deepcopy(rng.choice(bases))
        changes = [mutate(document, rng) for _ in range(rng.randint(1, 4))]
        where = f"case {case}: {changes}"
        try:
            parse_services(document)  # one service, or many (bot.domain.fleet)
        except ConfigError as error:
            outcomes["refused"] += 1
            assert error.problems, where
            assert (error.key, error.problem) == error.problems[0][:2], where
            for problem in error.problems:
                assert problem.key and problem.problem, (where, problem)
                top = problem.key.split(".")[0].split("[")[0]
                assert top in known or top in document, (where, problem)
            check_lines(document, error, where)
        else:
            outcomes["parsed"] += 1
    # Both happen often: the mutations are neither all harmless nor all fatal.
    assert min(outcomes.values()) > 40, outcomes


def check_lines(document: dict[str, Any], error: ConfigError, where: str) -> None:
    """The lines of the problems in the file as TOML writes it: within the file, and found
    for every key set in it."""
    try:
        text = tomlkit.dumps(document)
    except Exception:  # a document TOML cannot hold (a list of tables and values mixed)
        return
    count = len(text.splitlines())
    for problem in error.problems:
        line = key_line(text, problem.key)
        assert line is None or 1 <= line <= count, (where, problem, line)
