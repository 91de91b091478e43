"""The shell's terminal: a prompt with line editing, history and completion, under which the
bot's messages appear as they arrive, as in a chat window.

prompt_toolkit draws the prompt; `patch_stdout` makes everything printed meanwhile (the
shell's lines, the bot's messages found by the watcher) appear above it, and redraws it.
Without a terminal (a pipe, `--script`), the shell reads lines without any of this.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.patch_stdout import patch_stdout

from bot.devtools.shell import CI_STATES, OUTSIDE, Shell

WATCH_SECONDS = 0.2  # how often the prompt looks for new messages: soon enough to feel live

# What the shell understands, for completion: its own words and the bot's commands.
SHELL_WORDS = (
    "help",
    "click",
    "submit",
    "cancel",
    "/as",
    "channel",
    "wait",
    "site",
    "ci",
    "quit",
)
COMMANDS = {
    "/release": (
        "rc",
        "final",
        "hotfix",
        "rollback",
        "adopt",
        "lock",
        "unlock",
        "status",
        "health",
        "cancel",
        "audit",
        "help",
    ),
    "/flag": ("list", "set", "enable", "disable", "ramp", "help"),
}
SITE_FAULTS = ("down", "slow", "failing", "up")
CI_VERBS = tuple(CI_STATES)


def history_path(environ: dict[str, str] | None = None) -> Path:
    """Where the shell keeps the lines typed at its prompt across runs: the XDG state
    folder, as other command-line tools do (the demo's state folder is temporary)."""
    environ = dict(os.environ) if environ is None else environ
    base = environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "releasebot" / "shell_history"


def open_history(path: Path) -> History:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600, exist_ok=True)  # what was typed may name people and issues
    except OSError:
        return InMemoryHistory()  # a read-only home: history for this run only
    return FileHistory(str(path))


class ShellCompleter(Completer):
    """Completes the first word, a command's subcommand, `click`'s live button numbers (with
    their labels), `/as` with the people met so far, `channel` with the services' channels,
    `site`'s environments and faults, and `ci`'s verbs and the contexts the CI gates name
    (those of the service of the channel typed in)."""

    def __init__(self, shell: Shell) -> None:
        self.shell = shell

    def get_completions(self, document: Document, event: CompleteEvent) -> Iterable[Completion]:
        text = document.text_before_cursor
        words = text.split()
        current = "" if not words or text.endswith(" ") else words[-1]
        done = words if not current else words[:-1]
        for candidate, meta in self._candidates(done):
            if candidate.startswith(current):
                yield Completion(candidate, start_position=-len(current), display_meta=meta)

    def _candidates(self, done: list[str]) -> list[tuple[str, str]]:
        if not done:
            return [(w, "") for w in (*SHELL_WORDS, *COMMANDS)]
        first = done[0]
        if len(done) == 1 and first in COMMANDS:
            return [(w, "") for w in COMMANDS[first]]
        if len(done) == 1 and first == "click":
            return [(str(b.number), b.label) for b in self.shell.live_buttons()]
        if len(done) == 1 and first == "/as":
            met = {str(info.get("name", "")) for info in self.shell.slack.users.values()}
            return [(name, "") for name in sorted(met) if name and name != self.shell.user]
        if len(done) == 1 and first == "channel":
            fleet = self.shell.fleet.services
            return [(s.config.slack.channel, s.config.service) for s in fleet] + [
                (OUTSIDE, "no service's")
            ]
        if first == "site" and len(done) in (1, 2):
            if len(done) == 1:
                return [(e.name, "") for e in self.shell.services.config.environments]
            return [(f, "") for f in SITE_FAULTS]
        if first == "ci" and len(done) == 1:
            return [(v, "") for v in CI_VERBS]
        if first == "ci" and len(done) == 2 and done[1] in CI_VERBS:
            return [(c, "") for c in self.shell.ci_contexts()]
        return []


async def watch(shell: Shell) -> None:
    """Print what the bot posts while the prompt waits, without the person pressing Enter."""
    while True:
        await asyncio.sleep(WATCH_SECONDS)
        shell.flush()


async def run_prompt(shell: Shell, history: History) -> None:
    """Read and run lines at a prompt until quit, Ctrl-D or Ctrl-C."""
    session: PromptSession[str] = PromptSession(
        history=history, completer=ShellCompleter(shell), complete_while_typing=False
    )
    # raw: the shell's own ANSI styles (bold, code) reach the terminal instead of being
    # shown as escaped text.
    with patch_stdout(raw=True):
        shell.out = sys.stdout  # the proxy that prints above the prompt
        watcher = asyncio.create_task(watch(shell))
        try:
            while True:
                try:
                    line = await session.prompt_async(lambda: f"{shell.user}> ")
                except (KeyboardInterrupt, EOFError):  # Ctrl-C, Ctrl-D: leave now
                    break
                if not await run_interruptible(shell, line):
                    break
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            shell.flush()


async def run_interruptible(shell: Shell, line: str) -> bool:
    """Run one line; Ctrl-C while it waits stops the waiting (the bot goes on) and gives the
    prompt back, as it does in a chat shell. False when the person wants to leave."""
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(shell.execute(line))
    interrupted = False

    def interrupt() -> None:
        nonlocal interrupted
        interrupted = True
        task.cancel()

    try:
        loop.add_signal_handler(signal.SIGINT, interrupt)
    except (NotImplementedError, RuntimeError):  # not the main thread, or no signals here
        return await task
    try:
        return await task
    except asyncio.CancelledError:
        if not interrupted:
            raise  # the shell itself is being stopped
        shell.say("  (stopped waiting; the bot carries on, and its messages still show)")
        return True
    finally:
        loop.remove_signal_handler(signal.SIGINT)


async def read_lines() -> AsyncIterator[str]:
    """Lines typed on a terminal whose output is not one (`releasebot shell > log`): no
    prompt to draw, so plain lines, read when the terminal has one (a canonical-mode
    terminal hands over whole lines, so the read never blocks the event loop)."""
    loop = asyncio.get_running_loop()
    ready = asyncio.Event()
    loop.add_reader(sys.stdin.fileno(), ready.set)
    try:
        while True:
            await ready.wait()
            ready.clear()
            line = sys.stdin.readline()
            if not line:
                return  # Ctrl-D
            yield line
    finally:
        loop.remove_reader(sys.stdin.fileno())
