"""What running a deploy or gate command came to, as the release logic and the messages see it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CommandResult:
    exit_code: int | None  # None when it was killed at the timeout
    timed_out: bool
    duration: float
    tail: str
    error: str | None = None  # it could not be run at all, and why
    # A deploy GitHub ran: how it ended, in words ("ended failure on GitHub Actions"), and
    # where people read it (the run's or the Deployment's page).
    outcome: str = ""
    link: str = ""
    # Set when the bot gave up following a deploy GitHub may still be running (a run it
    # could not stop, a dispatch whose run never showed, a Deployment's executor): why. The
    # environment then stays locked until someone who checked GitHub unlocks it.
    unsettled: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and self.error is None

    def summary(self) -> str:
        if self.error:
            return self.error
        if self.timed_out:
            return f"timed out after {self.duration:.0f}s"
        if self.outcome and self.exit_code != 0:
            return self.outcome
        if self.exit_code == 0:
            return "succeeded"
        if self.exit_code is not None and self.exit_code < 0:
            return f"killed by signal {-self.exit_code}"
        return f"exited with code {self.exit_code}"
