"""Prometheus metrics: the one place they are defined (names follow Prometheus conventions)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "ACTIVE_RUNS",
    "API_ERRORS",
    "API_REQUESTS",
    "API_THROTTLED",
    "EVENTS_DROPPED",
    "EVENTS_THROTTLED",
    "FIRE_SKEW",
    "LATE_RUNS",
    "NOTIFICATIONS",
    "NOTIFY_QUEUE",
    "QUEUE_DEPTH",
    "RESTARTS",
    "RETRIES",
    "RUNS",
    "SCHEDULER_LAG",
    "SHARDS_HELD",
    "SHARD_CHANGES",
    "STATUS_CONFLICTS",
    "SYNC_ERRORS",
    "TASKS",
    "track",
]

RUNS = Counter(
    "nightshift_runs_total",
    "Recorded attempts and slots by result (Succeeded, Failed, TimedOut, Skipped, Missed, ...).",
    ["result"],
)
# Buckets start at 10 ms: the point is to show sub-second firing, which the CronJob controller's
# one-second floor cannot.
FIRE_SKEW = Histogram(
    "nightshift_fire_skew_seconds",
    "Time from a slot (plus jitter) to its Job being created.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
RETRIES = Counter("nightshift_retries_total", "Retry attempts started.")
ACTIVE_RUNS = Gauge("nightshift_active_runs", "Active attempts per task.", ["namespace", "task"])
SCHEDULER_LAG = Histogram(
    "nightshift_scheduler_lag_seconds",
    "How late the scheduler handed a due wake-up (next fire or retry) to a sync worker.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
QUEUE_DEPTH = Gauge("nightshift_scheduler_queue_depth", "Wake-ups waiting in the scheduler heap.")
TASKS = Gauge("nightshift_tasks", "ScheduledTasks known to this replica.")
WRITES_PENDING = Gauge(
    "nightshift_writes_pending",
    "Tasks whose decided status, Job deletes or Events are not written yet (the write-behind).",
)
SHARDS_HELD = Gauge("nightshift_shards_held", "Shards this replica holds (with --shards > 1).")
SHARD_CHANGES = Counter(
    "nightshift_shard_changes_total",
    "Shards this replica took (acquired), gave back (released) or lost (could not renew).",
    ["change"],
)
SYNC_ERRORS = Counter("nightshift_sync_errors_total", "Task syncs that raised an error.")
API_REQUESTS = Counter(
    "nightshift_api_requests_total",
    "Kubernetes API requests made by the operator (outside kopf's watches), by call.",
    ["call"],
)
API_ERRORS = Counter(
    "nightshift_api_errors_total",
    "Kubernetes API requests that failed (other than NotFound/AlreadyExists), by call.",
    ["call"],
)
STATUS_CONFLICTS = Counter(
    "nightshift_status_conflicts_total",
    "Status writes refused because the task changed since the decision (then decided again).",
)
EVENTS_DROPPED = Counter(
    "nightshift_events_dropped_total",
    "Events not posted because too many were waiting (the posting queue is bounded), or too many "
    "were kept behind a task's failing status write.",
)
EVENTS_THROTTLED = Counter(
    "nightshift_events_throttled_total",
    "Events not posted because their task posted too many (a token bucket per task: 25 at "
    "once, then one per 10 s).",
)
API_THROTTLED = Counter(
    "nightshift_api_throttled_seconds_total",
    "Seconds writes waited for the client-side rate limit (--api-qps, --api-burst).",
)
LATE_RUNS = Counter(
    "nightshift_late_runs_total",
    "Scheduled runs not Succeeded within spec.deadline of their slot (Missed slots included).",
)
NOTIFICATIONS = Counter(
    "nightshift_notifications_total",
    "Notification delivery attempts, by sink type (Webhook, CloudEvents, Slack) and result.",
    ["sink", "result"],
)
NOTIFY_QUEUE = Gauge(
    "nightshift_notify_queue_depth",
    "Notification delivery attempts waiting for a worker (the queue is bounded).",
)
RESTARTS = Counter(
    "nightshift_internal_restarts_total",
    "Internal tasks (timer, workers, resync, ...) restarted after they crashed.",
    ["task"],
)


def track(
    tasks: Callable[[], float], queued: Callable[[], float], pending: Callable[[], float]
) -> None:
    """Read ``nightshift_tasks``, ``nightshift_scheduler_queue_depth`` and
    ``nightshift_writes_pending`` from these when scraped: with shards, one controller per shard
    held, and the gauges are their sums."""
    TASKS.set_function(tasks)
    QUEUE_DEPTH.set_function(queued)
    WRITES_PENDING.set_function(pending)
