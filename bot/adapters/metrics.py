"""What the bot counts for Prometheus (`GET /metrics` in every role, prometheus-client).

Every label value comes from a bounded set: command and action names the bot knows (anything
else is "other"), Web API methods it calls, services, environments and checks of its config,
outcomes.
Never a user ID, a version or a channel: each distinct label value is a series kept for ever.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

REGISTRY = CollectorRegistry(auto_describe=True)
# Acks must come within 3 s: the buckets are finest below that.
ACK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0)
JOB_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
CHECK_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

REQUESTS = Counter(
    "releasebot_requests",
    "Slack requests answered, by kind (command, action, view, event), name and outcome",
    ["kind", "name", "outcome"],
    registry=REGISTRY,
)
ACK_SECONDS = Histogram(
    "releasebot_ack_seconds",
    "Time from a Slack request's arrival to its answer",
    ["kind", "name"],
    buckets=ACK_BUCKETS,
    registry=REGISTRY,
)
SLACK_CALLS = Counter(
    "releasebot_slack_api_calls",
    "Slack Web API calls by method and HTTP status (429s included, each retry counted)",
    ["method", "status"],
    registry=REGISTRY,
)
JOBS = Counter(
    "releasebot_jobs",
    "Jobs run by workers, by kind and outcome",
    ["service", "kind", "outcome"],
    registry=REGISTRY,
)
JOB_SECONDS = Histogram(
    "releasebot_job_seconds",
    "How long a job ran",
    ["service", "kind"],
    buckets=JOB_BUCKETS,
    registry=REGISTRY,
)
JOB_WAIT_SECONDS = Histogram(
    "releasebot_job_queue_wait_seconds",
    "How long a job waited in the queue before a worker took it",
    ["service", "kind"],
    buckets=JOB_BUCKETS,
    registry=REGISTRY,
)
DEPLOYS = Counter(
    "releasebot_deploys",
    "Deploys finished, by environment and outcome (as audited)",
    ["service", "environment", "outcome"],
    registry=REGISTRY,
)
ROLLBACKS = Counter(
    "releasebot_rollbacks",
    "Rollbacks finished, by environment and outcome (as audited)",
    ["service", "environment", "outcome"],
    registry=REGISTRY,
)
OPEN_INCIDENTS = Gauge(
    "releasebot_open_incidents",
    "Incidents open now, by environment and severity (read from Redis at each scrape)",
    ["service", "environment", "severity"],
    registry=REGISTRY,
)
CHECK_RESULTS = Counter(
    "releasebot_check_results",
    "Health-check results recorded by this replica, by check and outcome",
    ["service", "environment", "check", "outcome"],
    registry=REGISTRY,
)
CHECK_SECONDS = Histogram(
    "releasebot_check_latency_seconds",
    "Health-check response times recorded by this replica",
    ["service", "environment", "check"],
    buckets=CHECK_BUCKETS,
    registry=REGISTRY,
)
LOCK_HOLDS = Counter(
    "releasebot_lock_holds",
    "Locks taken, by lock (environment)",
    ["service", "lock"],
    registry=REGISTRY,
)
LOCK_HELD_SECONDS = Histogram(
    "releasebot_lock_held_seconds",
    "How long a lock was held, by lock (environment)",
    ["service", "lock"],
    buckets=JOB_BUCKETS,
    registry=REGISTRY,
)
REDIS_ERRORS = Counter(
    "releasebot_redis_errors",
    "Errors reaching Redis seen by this process (connection refused, timeouts)",
    registry=REGISTRY,
)

# The delivery figures (DORA) over the last 30 days, worked out again at most every few
# minutes (bot.services.delivery_report): what a team reviews, for its dashboards.
DEPLOYS_PER_DAY = Gauge(
    "releasebot_deployment_frequency_per_day",
    "Successful deploys a day over the last 30 days",
    ["service", "environment"],
    registry=REGISTRY,
)
LEAD_TIME = Gauge(
    "releasebot_lead_time_seconds",
    "Lead time for changes (commit to production deploy) over the last 30 days",
    ["service", "quantile"],
    registry=REGISTRY,
)
CHANGE_FAILURE_RATE = Gauge(
    "releasebot_change_failure_rate",
    "Production deploys followed by a rollback, a hotfix or a critical incident within the "
    "monitoring window, over the last 30 days (0 to 1)",
    ["service"],
    registry=REGISTRY,
)
TIME_TO_RESTORE = Gauge(
    "releasebot_time_to_restore_seconds",
    "Median time from an incident's opening to its end, or a rollback's asking to its end, "
    "over the last 30 days",
    ["service"],
    registry=REGISTRY,
)

# Audited actions that are counted, and the counter each goes to.
_FINISHED = {"deploy.finish": DEPLOYS, "rollback.finish": ROLLBACKS}


def audited(service: str, action: str, environment: str, outcome: str) -> None:
    """An audit entry was made: a finished deploy or rollback is counted."""
    counter = _FINISHED.get(action)
    if counter is not None:
        counter.labels(service, environment or "none", outcome or "done").inc()


def bounded(name: str, known: Iterable[str]) -> str:
    """`name` if it is one of `known`, else "other" (what a client sends is not a label)."""
    return name if name in set(known) else "other"


def checks_recorded(service: str, results: Iterable[tuple[tuple[str, str], Any]]) -> None:
    """A tick's results (check id, Result): counted, and their latency observed."""
    for (environment, check), result in results:
        CHECK_RESULTS.labels(service, environment, check, "ok" if result.ok else "failed").inc()
        if result.ok:
            CHECK_SECONDS.labels(service, environment, check).observe(result.ms / 1000)


def lock_label(key: str) -> str:
    """An environment lock's key ends with the environment's name (bounded by the config)."""
    return key.rsplit(":", 1)[-1]


class CountingRetryHandler(AsyncRetryHandler):
    """Retries nothing itself: slack_sdk shows the retry handlers every attempt's answer (a
    success, a 429 the rate-limit handler then retries, a connection error), so the first of
    them counts each attempt once."""

    def __init__(self) -> None:
        super().__init__(max_retry_count=2**31)  # asked about every attempt, however many

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        status = str(response.status_code) if response is not None else "error"
        SLACK_CALLS.labels(_method(request.url), status).inc()
        return False


def _method(url: str) -> str:
    """The Web API method of a request URL (…/api/chat.postMessage); "response_url" for an
    answer through a command's response_url (its path is a one-time token, not a label)."""
    path = url.split("?", 1)[0]
    if "/api/" not in path:
        return "response_url"
    method = path.rstrip("/").rsplit("/", 1)[-1]
    return method if method.replace(".", "").isalnum() and len(method) <= 40 else "other"


class Timer:
    """Seconds since it was made."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start


def delivery(
    service: str,
    per_day: dict[str, float],
    lead_median: float | None,
    lead_p90: float | None,
    failure_rate: float | None,
    restore_median: float | None,
) -> None:
    """The delivery figures, as gauges (NaN where there is nothing to measure yet)."""
    for environment, rate in per_day.items():
        DEPLOYS_PER_DAY.labels(service, environment).set(rate)
    nan = float("nan")
    LEAD_TIME.labels(service, "0.5").set(nan if lead_median is None else lead_median)
    LEAD_TIME.labels(service, "0.9").set(nan if lead_p90 is None else lead_p90)
    CHANGE_FAILURE_RATE.labels(service).set(nan if failure_rate is None else failure_rate)
    TIME_TO_RESTORE.labels(service).set(nan if restore_median is None else restore_median)
