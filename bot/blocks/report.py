"""Block Kit for `/release report`: the four delivery figures of a period."""

from __future__ import annotations

from collections.abc import Sequence

from bot.blocks.release import Block, context, fields, header, problem, section
from bot.domain.delivery import Report, duration

__all__ = ["delivery_report", "problem"]


def delivery_report(report: Report, environments: Sequence[str]) -> list[Block]:
    frequency = ", ".join(
        f"*{env}* {report.deploys.get(env, 0)} ({report.per_day(env):.2f}/day)"
        for env in environments
    )
    rate = report.change_failure_rate
    return [
        header(f"Delivery over {report.days:.0f} days"),
        section(f"*Deployment frequency*: {frequency}"),
        fields(
            [
                (
                    "Lead time for changes",
                    f"median {duration(report.lead_time_median)}, "
                    f"p90 {duration(report.lead_time_p90)} ({len(report.lead_times)} changes)",
                ),
                (
                    "Change failure rate",
                    f"{'—' if rate is None else f'{100 * rate:.0f}%'} ({report.failed_changes} "
                    f"of {report.production_deploys} {report.production} deploys)",
                ),
                (
                    "Time to restore",
                    f"median {duration(report.restore_median)} "
                    f"({len(report.restores)} incidents and rollbacks)",
                ),
            ]
        ),
        context(
            "Failed: a production deploy followed, within the monitoring window, by a "
            "rollback, a hotfix or a critical incident. `releasebot report --format json` "
            "gives the same figures to a script."
        ),
    ]
