"""The ScheduledTask API (``nightshift.dev/v1alpha1``) as pydantic models: the source of truth.

Validation, the generated CRD schema and the operator's reading of objects all come from here.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    PlainSerializer,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from nightshift.cron import parse_cron
from nightshift.durations import format_duration, parse_duration
from nightshift.timezones import load_zone

__all__ = [
    "API_VERSION",
    "BACKFILL_KIND",
    "BACKFILL_PLURAL",
    "CALENDAR_KIND",
    "CALENDAR_PLURAL",
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "ActiveRun",
    "BackfillSlot",
    "BackfillSpec",
    "BackfillStatus",
    "Backoff",
    "CalendarRef",
    "CalendarSpec",
    "CatchUp",
    "Change",
    "CloudEventsMode",
    "ConcurrencyPolicy",
    "Condition",
    "CronSchedule",
    "Exclusion",
    "FailurePolicy",
    "History",
    "JobTemplate",
    "NotifySink",
    "OverlapPolicy",
    "PendingNotification",
    "PendingRetry",
    "PolicySuspension",
    "QueuedRun",
    "Reprocess",
    "Resume",
    "Retry",
    "RunRecord",
    "RunResult",
    "SecretRef",
    "SinkType",
    "SlotState",
    "SpecError",
    "TaskRef",
    "TaskSpec",
    "TaskStatus",
    "format_time",
    "parse_backfill",
    "parse_calendar",
    "parse_spec",
    "parse_time",
    "read_time",
]

GROUP = "nightshift.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ScheduledTask"
PLURAL = "scheduledtasks"
CALENDAR_KIND = "Calendar"
CALENDAR_PLURAL = "calendars"
BACKFILL_KIND = "Backfill"
BACKFILL_PLURAL = "backfills"

# Go-style durations with an optional day unit; the same grammar as nightshift.durations.
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h|d))+$"
DATE_PATTERN = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


def _from_iso(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise ValueError(
            f"invalid time {text!r}; write RFC 3339 with an offset, e.g. 2026-12-01T03:00:00Z"
        ) from None


def _in_range(value: datetime, text: str) -> datetime:
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"time {text!r} is outside the years 1 to 9999 in UTC") from None
    return value


def parse_time(text: str) -> datetime:
    """Parse an RFC 3339 timestamp that carries a UTC offset (``Z`` or ``+02:00``)."""
    value = _from_iso(text)
    if value.tzinfo is None:
        raise ValueError(f"time {text!r} needs a UTC offset, e.g. 2026-12-01T03:00:00+01:00")
    return _in_range(value, text)


def read_time(value: object) -> datetime | None:
    """A timestamp read back from the API (status, annotations, Job conditions): an aware
    datetime, or None when it is absent or unreadable.

    Where :func:`parse_time` judges what a user wrote, this one reads what a server (or the
    operator itself) stored, so it never raises: Kubernetes writes UTC, so a time without an
    offset is taken as UTC, and anything else that does not parse is treated as missing.
    """
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = _from_iso(value)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return _in_range(parsed, value)
    except ValueError:
        return None


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with a ``Z`` suffix, to the second (Kubernetes' metav1.Time format)."""
    # Not strftime: glibc writes the year 999 as "999", which RFC 3339 (and parse_time) reject.
    v = value.astimezone(UTC)
    return f"{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:{v.minute:02d}:{v.second:02d}Z"


def _parse_duration(value: Any) -> Any:
    return parse_duration(value) if isinstance(value, str) else value


def _parse_time(value: Any) -> Any:
    return parse_time(value) if isinstance(value, str) else value


Duration = Annotated[
    timedelta,
    BeforeValidator(_parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "maxLength": 32, "pattern": DURATION_PATTERN}),
]
Timestamp = Annotated[
    datetime,
    BeforeValidator(_parse_time),
    PlainSerializer(format_time, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time", "maxLength": 64}),
]
ExitCode = Annotated[int, Field(ge=0, le=255)]
Name = Annotated[str, Field(max_length=253)]


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        use_attribute_docstrings=True,
        frozen=True,
    )


class ConcurrencyPolicy(StrEnum):
    """What to do when a run is due while an earlier run of the same task is still active."""

    ALLOW = "Allow"
    FORBID = "Forbid"
    REPLACE = "Replace"
    QUEUE = "Queue"


class CatchUp(StrEnum):
    """What to do with slots that passed while the operator could not act (down, API down)."""

    SKIP = "Skip"
    LATEST = "Latest"
    ALL = "All"


class RunResult(StrEnum):
    """How a run (one attempt) ended."""

    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    TIMED_OUT = "TimedOut"
    SKIPPED = "Skipped"
    MISSED = "Missed"
    REPLACED = "Replaced"
    CANCELLED = "Cancelled"
    EXCLUDED = "Excluded"


class Backoff(_Model):
    """Delay between a failed attempt and the next one: initial * factor^(attempt-1), capped."""

    initial: Duration = timedelta(seconds=10)
    """Delay before the first retry (e.g. 10s)."""
    factor: float = Field(default=2.0, ge=1.0, le=10.0)
    """Multiplier applied to the delay after each failed retry (1 = constant delay)."""
    max: Duration = timedelta(minutes=10)
    """Upper bound of the delay (e.g. 10m)."""
    jitter: bool = True
    """Add up to 20% random (deterministic per run and attempt) delay so retries do not align."""


class Retry(_Model):
    """Retry policy: the operator creates one Job per attempt and retries failed attempts."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!(has(self.onExitCodes) && has(self.notOnExitCodes))",
                    "message": "set at most one of onExitCodes and notOnExitCodes",
                }
            ]
        }
    )

    maxRetries: int = Field(default=0, ge=0, le=100)
    """Attempts after the first one (0 = never retry)."""
    backoff: Backoff = Backoff()
    """Delay between attempts."""
    onExitCodes: list[ExitCode] | None = Field(default=None, max_length=64)
    """Retry only when the container exited with one of these codes."""
    notOnExitCodes: list[ExitCode] | None = Field(default=None, max_length=64)
    """Retry on any failure except these exit codes."""

    @model_validator(mode="after")
    def _one_filter(self) -> Retry:
        if self.onExitCodes is not None and self.notOnExitCodes is not None:
            raise ValueError("set at most one of onExitCodes and notOnExitCodes")
        return self


class History(_Model):
    """How many finished runs to keep, in status.runs and as Jobs in the cluster."""

    succeeded: int = Field(default=3, ge=0, le=100)
    """Successful runs to keep."""
    failed: int = Field(default=5, ge=0, le=100)
    """Runs that did not succeed (failed, timed out, missed, skipped, replaced) to keep."""
    excluded: int = Field(default=3, ge=0, le=100)
    """Slots excluded by the calendar or spec.exclude to keep (counted apart from failures)."""


class TemplateMetadata(_Model):
    """Labels and annotations copied onto every Job (and nothing else: the namespace is fixed)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.namespace)",
                    "message": "must not set a namespace: Jobs are created in the task's namespace",
                }
            ]
        },
    )

    labels: dict[str, Annotated[str, Field(max_length=63)]] | None = Field(
        default=None, max_length=64
    )
    """Labels added to each Job (pod labels belong in spec.template.metadata)."""
    annotations: dict[str, Annotated[str, Field(max_length=4096)]] | None = Field(
        default=None, max_length=64
    )
    """Annotations added to each Job."""
    namespace: str | None = Field(default=None, max_length=63)
    """Not allowed: present only so that setting it is rejected with a clear message."""

    @field_validator("namespace")
    @classmethod
    def _no_namespace(cls, value: str | None) -> str | None:
        if value is not None:
            raise ValueError("must not set a namespace: Jobs are created in the task's namespace")
        return value


class JobSpecTemplate(BaseModel):
    """A batch/v1 JobSpec. The fields Nightshift reads are typed; the rest is passed through."""

    model_config = ConfigDict(
        extra="allow",
        use_attribute_docstrings=True,
        frozen=True,
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )

    template: dict[str, Any] = Field(
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )
    """The pod template (batch/v1 PodTemplateSpec); restartPolicy defaults to Never."""
    backoffLimit: int | None = Field(default=None, ge=0, le=100)
    """Pod retries inside one attempt; Nightshift sets 0 unless given (it retries itself)."""
    activeDeadlineSeconds: int | None = Field(default=None, ge=1)
    """Per-attempt deadline; spec.timeout takes precedence when both are set."""
    ttlSecondsAfterFinished: int | None = Field(default=None, ge=0)
    """Left to Kubernetes; Nightshift prunes finished Jobs itself by spec.history."""


class JobTemplate(_Model):
    """The Job to create for each attempt (a batch/v1 JobTemplateSpec)."""

    metadata: TemplateMetadata = TemplateMetadata()
    """Labels and annotations for the Jobs."""
    spec: JobSpecTemplate
    """The Job spec."""

    @field_validator("spec")
    @classmethod
    def _has_pod_spec(cls, value: JobSpecTemplate) -> JobSpecTemplate:
        # The pod template is passed through unchecked by the CRD schema; the parts Nightshift
        # merges into are checked here, so that a bad one is a message, not a failed sync.
        pod_spec = value.template.get("spec")
        containers = pod_spec.get("containers") if isinstance(pod_spec, dict) else None
        if not isinstance(containers, list) or not containers:
            raise ValueError("template.spec.containers must list at least one container")
        if not all(isinstance(c, dict) for c in containers):
            raise ValueError("template.spec.containers must be a list of objects")
        metadata = value.template.get("metadata")
        if metadata is None:
            return value
        if not isinstance(metadata, dict):
            raise ValueError("template.metadata must be an object")
        if metadata.get("namespace"):
            raise ValueError(
                "template.metadata.namespace must not be set: pods run in the task's namespace"
            )
        for field in ("labels", "annotations"):
            mapping = metadata.get(field)
            if mapping is not None and not (
                isinstance(mapping, dict)
                and all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items())
            ):
                raise ValueError(f"template.metadata.{field} must map strings to strings")
        return value


class CronSchedule(_Model):
    """One entry of spec.schedules: a cron expression, read in its own time zone."""

    cron: str = Field(min_length=1, max_length=256)
    """Cron expression, as in spec.schedule (5 fields, names, macros, H)."""
    timeZone: str | None = Field(default=None, max_length=64)
    """IANA time zone this entry is read in (default: spec.timeZone)."""

    @field_validator("timeZone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            load_zone(value)
        return value

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        parse_cron(value, seed="validation")
        return value


def _parse_date(value: Any) -> Any:
    if isinstance(value, str) and not DATE_PATTERN.fullmatch(value):
        raise ValueError(f"invalid date {value!r}; write YYYY-MM-DD, e.g. 2026-12-25")
    return value


Day = Annotated[
    date,
    BeforeValidator(_parse_date),
    PlainSerializer(date.isoformat, return_type=str),
    WithJsonSchema({"type": "string", "maxLength": 10, "pattern": DATE_PATTERN.pattern}),
]


class Exclusion(_Model):
    """Slots to skip: a whole day, a range of whole days, or the minutes a cron expression
    matches, in a time zone."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "[has(self.date), has(self.start), has(self.cron)]"
                    ".filter(x, x).size() == 1",
                    "message": "set exactly one of date, start (with end) and cron",
                },
                {
                    "rule": "has(self.start) == has(self.end)",
                    "message": "start and end go together (a range of days, both included)",
                },
                {
                    "rule": "!has(self.start) || !has(self.end) || self.start <= self.end",
                    "message": "start must not be after end",
                },
            ]
        }
    )

    date: Day | None = None
    """A whole local day (YYYY-MM-DD): every slot whose local date it is."""
    start: Day | None = None
    """The first day of a range of whole local days (YYYY-MM-DD, included)."""
    end: Day | None = None
    """The last day of the range (YYYY-MM-DD, included)."""
    cron: str | None = Field(default=None, min_length=1, max_length=256)
    """Every slot whose local wall time, to the minute, matches this cron expression (e.g.
    "* 0-6 * * SAT,SUN": weekend nights; "* * 25 12 *": Christmas Day)."""
    timeZone: str | None = Field(default=None, max_length=64)
    """IANA time zone the rule is read in (default: the calendar's, or the task's for
    spec.exclude)."""
    reason: str | None = Field(default=None, max_length=128)
    """Why (e.g. "Christmas"); shown in the Excluded run record."""

    @field_validator("timeZone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            load_zone(value)
        return value

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None:
            parse_cron(value, seed="validation")
        return value

    @model_validator(mode="after")
    def _one_rule(self) -> Exclusion:
        kinds = [k for k in ("date", "start", "cron") if getattr(self, k) is not None]
        if len(kinds) != 1:
            given = ", ".join(kinds) if kinds else "none"
            raise ValueError(f"set exactly one of date, start (with end) and cron (given: {given})")
        if (self.start is None) != (self.end is None):
            raise ValueError("start and end go together (a range of days, both included)")
        if self.start is not None and self.end is not None and self.start > self.end:
            raise ValueError("start must not be after end")
        return self


class CalendarRef(_Model):
    """A Calendar in the task's namespace."""

    name: str = Field(min_length=1, max_length=253)
    """The Calendar's name."""


class CalendarSpec(_Model):
    """Slots that the tasks referencing this calendar skip (recorded as Excluded)."""

    timeZone: str = Field(default="UTC", max_length=64)
    """IANA time zone of the rules that name none (e.g. Europe/Zurich)."""
    exclude: list[Exclusion] = Field(default_factory=list, max_length=1000)
    """Days, ranges of days and cron expressions whose slots are skipped."""

    @field_validator("timeZone")
    @classmethod
    def _zone(cls, value: str) -> str:
        load_zone(value)
        return value


class FailurePolicy(_Model):
    """What the task does when its runs keep failing."""

    suspendAfter: int | None = Field(default=None, ge=1, le=1000)
    """Suspend the task after this many runs in a row failed (each after its retries); it stays
    suspended until `kubectl nightshift resume`. A success resets the count. Unset: never."""


class Change(StrEnum):
    """A change of a task's state that is worth a notification (never a single ordinary run)."""

    FAILING = "Failing"
    RECOVERED = "Recovered"
    MISSED = "Missed"
    LATE = "Late"
    SUSPENDED = "Suspended"


class SinkType(StrEnum):
    """The payload a sink receives."""

    WEBHOOK = "Webhook"
    CLOUD_EVENTS = "CloudEvents"
    SLACK = "Slack"


class CloudEventsMode(StrEnum):
    """CloudEvents HTTP content mode: attributes in ce- headers (Binary) or in the JSON body."""

    BINARY = "Binary"
    STRUCTURED = "Structured"


class SecretRef(_Model):
    """A Secret in the task's own namespace (never another)."""

    name: str = Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    """The Secret's name. Its key `url` holds the URL (unless `url` is set); each key
    `header.NAME` is sent as the HTTP header NAME (e.g. `header.Authorization`)."""


_SINK_RULES: list[JsonValue] = [
    {
        "rule": "[has(self.url), has(self.secretRef)].filter(x, x).size() <= 1",
        "message": "set at most one of url and secretRef",
    },
    {
        "rule": "has(self.url) || has(self.secretRef)",
        "message": "set url or secretRef (whose key url holds the URL)",
    },
    {
        "rule": "!has(self.mode) || self.type == 'CloudEvents'",
        "message": "mode is only meaningful with type CloudEvents",
    },
]
SINK_TIMEOUT_MAX = timedelta(seconds=60)


class NotifySink(_Model):
    """Where notifications about the task's changes of state are sent (HTTP POST)."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": _SINK_RULES})

    name: str = Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    """A name for the sink, unique in the task (status and Events name it)."""
    type: SinkType = SinkType.WEBHOOK
    """Webhook (Nightshift's JSON), CloudEvents (1.0 over HTTP) or Slack (an incoming-webhook
    JSON payload, also understood by Mattermost and others)."""
    url: str | None = Field(default=None, max_length=2048, pattern=r"^https?://[^\s]+$")
    """The URL to POST to; for a URL that is itself a secret (a Slack webhook) use secretRef."""
    secretRef: SecretRef | None = None
    """A Secret in the task's namespace with the URL (key `url`) and headers (`header.NAME`)."""
    mode: CloudEventsMode | None = None
    """CloudEvents only: Binary (the default) or Structured."""
    changes: list[Change] | None = Field(default=None, max_length=5)
    """Which changes to send (default: all of Failing, Recovered, Missed, Late, Suspended)."""
    timeout: Duration = timedelta(seconds=10)
    """How long one delivery attempt may take (at most 60s); a slower answer is a failure."""

    @field_validator("url", mode="before")
    @classmethod
    def _http(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: timedelta) -> timedelta:
        if not timedelta(seconds=1) <= value <= SINK_TIMEOUT_MAX:
            raise ValueError("must be between 1s and 60s")
        return value

    @model_validator(mode="after")
    def _target(self) -> NotifySink:
        if self.url is not None and self.secretRef is not None:
            raise ValueError("set at most one of url and secretRef")
        if self.url is None and self.secretRef is None:
            raise ValueError("set url or secretRef (whose key url holds the URL)")
        if self.mode is not None and self.type is not SinkType.CLOUD_EVENTS:
            raise ValueError("mode is only meaningful with type CloudEvents")
        return self

    def wants(self, change: Change) -> bool:
        """Whether this sink is sent ``change``."""
        return self.changes is None or change in self.changes


DEADLINE_MAX = timedelta(days=31)


_SPEC_RULES: list[JsonValue] = [
    {
        "rule": "[has(self.schedule), has(self.interval), has(self.at), has(self.schedules)]"
        ".filter(x, x).size() == 1",
        "message": "set exactly one of schedule, interval, at and schedules",
    },
    {
        "rule": "!has(self.anchor) || has(self.interval)",
        "message": "anchor is only meaningful with interval",
    },
    {
        "rule": "!has(self.startAt) || !has(self.endAt) || "
        "timestamp(self.startAt) < timestamp(self.endAt)",
        "message": "startAt must be before endAt",
    },
]


class TaskSpec(_Model):
    """When to run, what to run, and how to treat failures."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": _SPEC_RULES})

    schedule: str | None = Field(default=None, min_length=1, max_length=256)
    """Cron schedule: 5 fields (minute hour day-of-month month day-of-week), names (MON, JAN),
    macros (@hourly @daily @weekly @monthly @yearly) and Jenkins-style H for a stable spread
    value derived from the task's namespace/name (e.g. "H 3 * * *")."""
    interval: Duration | None = None
    """Run every this long (e.g. 6h), aligned to anchor (default: the Unix epoch)."""
    anchor: Timestamp | None = None
    """For interval: a time the interval is aligned to (RFC 3339)."""
    at: Timestamp | None = None
    """One-shot: run once at this time (RFC 3339 with offset)."""
    schedules: list[CronSchedule] | None = Field(default=None, min_length=1, max_length=16)
    """Several cron schedules, each with an optional time zone: the task runs at the union of
    their slots, and a slot two of them share runs once."""
    timeZone: str = Field(default="UTC", max_length=64)
    """IANA time zone the cron schedule is read in (e.g. Europe/Zurich)."""
    startAt: Timestamp | None = None
    """No slot before this time runs (inclusive)."""
    endAt: Timestamp | None = None
    """No slot at or after this time runs."""
    calendarRef: CalendarRef | None = None
    """A Calendar (in the task's namespace) whose excluded days and times are skipped."""
    exclude: list[Exclusion] | None = Field(default=None, max_length=100)
    """Days, ranges of days and cron expressions whose slots are skipped, as in a Calendar
    (rules without a timeZone are read in spec.timeZone)."""
    jitter: Duration | None = None
    """Random delay added to each run, deterministic per task and slot (e.g. 30s)."""
    concurrencyPolicy: ConcurrencyPolicy = ConcurrencyPolicy.FORBID
    """Allow overlapping runs, Forbid them (the new slot is Skipped), Replace the old run, or
    Queue the new one (at most one waits, and starts as soon as the active run ends)."""
    startingDeadlineSeconds: int | None = Field(default=None, ge=1, le=31 * 86400)
    """A slot that cannot start within this many seconds is recorded as Missed instead."""
    catchUp: CatchUp = CatchUp.LATEST
    """After downtime: Skip missed slots, run the Latest one, or run All (up to maxCatchUp)."""
    maxCatchUp: int = Field(default=10, ge=1, le=100)
    """With catchUp All: the most missed slots run at once."""
    suspend: bool = False
    """Stop scheduling new runs; active runs continue."""
    maxRuns: int = Field(default=0, ge=0, le=1_000_000_000)
    """Stop after this many runs (0 = unlimited); then the Completed condition is set."""
    timeout: Duration | None = None
    """Deadline per attempt (sets the Job's activeDeadlineSeconds); a timed-out attempt is
    recorded as TimedOut and retried like a failure."""
    retry: Retry = Retry()
    """How failed attempts are retried."""
    history: History = History()
    """How many finished runs are kept."""
    jobTemplate: JobTemplate
    """The Job to create for each attempt."""
    failurePolicy: FailurePolicy = FailurePolicy()
    """What to do when runs keep failing (suspendAfter)."""
    deadline: Duration | None = None
    """A scheduled run that has not Succeeded this long after its slot is Late (a Missed slot
    too): the Late condition, a Warning Event, a metric and a notification."""
    notify: list[NotifySink] | None = Field(
        default=None,
        max_length=8,
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.all(x, self.exists_one(y, y.name == x.name))",
                    "message": "sink names must be unique",
                }
            ]
        },
    )
    """Where to send notifications of changes of state (failing, recovered, missed, late,
    suspended): at least once, never for an ordinary run."""

    @field_validator("timeZone")
    @classmethod
    def _zone(cls, value: str) -> str:
        load_zone(value)
        return value

    @field_validator("deadline")
    @classmethod
    def _deadline(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and not timedelta(seconds=1) <= value <= DEADLINE_MAX:
            raise ValueError("must be between 1s and 31d")
        return value

    @field_validator("notify")
    @classmethod
    def _unique_sinks(cls, value: list[NotifySink] | None) -> list[NotifySink] | None:
        names = [sink.name for sink in value or []]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"sink names must be unique (repeated: {', '.join(repeated)})")
        return value

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None:
            parse_cron(value, seed="validation")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> TaskSpec:
        kinds = [
            k for k in ("schedule", "interval", "at", "schedules") if getattr(self, k) is not None
        ]
        if len(kinds) != 1:
            given = ", ".join(kinds) if kinds else "none"
            raise ValueError(
                f"set exactly one of schedule, interval, at and schedules (given: {given})"
            )
        if self.anchor is not None and self.interval is None:
            raise ValueError("anchor is only meaningful with interval")
        if self.startAt is not None and self.endAt is not None and self.startAt >= self.endAt:
            raise ValueError("startAt must be before endAt")
        return self

    @property
    def kind(self) -> Literal["schedule", "interval", "at", "schedules"]:
        """Which of the four schedule kinds this spec uses."""
        if self.schedule is not None:
            return "schedule"
        if self.interval is not None:
            return "interval"
        if self.schedules is not None:
            return "schedules"
        return "at"


# --- status ---------------------------------------------------------------------------------------


class Condition(_Model):
    """A standard Kubernetes condition."""

    type: str = Field(max_length=64)
    """Ready, Suspended, Running, Failing or Completed."""
    status: Literal["True", "False", "Unknown"]
    """True, False or Unknown."""
    reason: str = Field(default="", max_length=128)
    """CamelCase reason for the last transition."""
    message: str = Field(default="", max_length=4096)
    """Human-readable detail."""
    lastTransitionTime: Timestamp | None = None
    """When status last changed."""
    observedGeneration: int | None = None
    """The spec generation this condition was computed from."""


class ActiveRun(_Model):
    """An attempt whose Job exists and has not finished."""

    run: str = Field(max_length=128)
    """The run's identity: the slot time (RFC 3339, UTC) or manual-<token>."""
    attempt: int = Field(ge=1, le=101)
    """1 for the first attempt, 2 for the first retry, and so on."""
    job: Name
    """The Job's name."""
    scheduledAt: Timestamp | None = None
    """The slot the run belongs to."""
    startedAt: Timestamp | None = None
    """When the Job was created."""
    queued: bool | None = None
    """True while a queue (such as Kueue) holds the Job suspended; it still counts as active.
    Not status.queued, which is a slot waiting under concurrencyPolicy Queue with no Job yet."""


class QueuedRun(_Model):
    """With concurrencyPolicy Queue: the run that starts as soon as the active one ends."""

    run: str = Field(max_length=128)
    """The run's identity: the slot time (RFC 3339, UTC) or manual-<token>."""
    scheduledAt: Timestamp | None = None
    """The slot the run belongs to (none for a run-now request)."""
    queuedAt: Timestamp
    """When it came due and was queued."""
    runNowToken: str | None = Field(default=None, max_length=4096)
    """The nightshift.dev/run-now token of a queued run-now request (its Job carries it)."""


class PendingRetry(_Model):
    """A retry that is waiting for its back-off to pass."""

    run: str = Field(max_length=128)
    """The run being retried."""
    attempt: int = Field(ge=2, le=101)
    """The attempt number the retry will have."""
    notBefore: Timestamp
    """The earliest time the retry's Job may be created."""
    scheduledAt: Timestamp | None = None
    """The slot the run belongs to."""


class RunRecord(_Model):
    """One finished attempt (or a slot that did not run: Skipped, Missed)."""

    run: str = Field(max_length=128)
    """The run's identity: the slot time (RFC 3339, UTC) or manual-<token>."""
    attempt: int = Field(default=1, ge=1, le=101)
    """Attempt number within the run."""
    job: str | None = Field(default=None, max_length=253)
    """The Job's name, if one was created."""
    scheduledAt: Timestamp | None = None
    """The slot time."""
    startedAt: Timestamp | None = None
    """When the Job was created."""
    finishedAt: Timestamp | None = None
    """When the Job finished."""
    result: RunResult
    """Succeeded, Failed, TimedOut, Skipped, Missed, Replaced or Cancelled."""
    exitCode: int | None = Field(default=None, ge=0, le=255)
    """The container's exit code, if it ran."""
    reason: str | None = Field(default=None, max_length=128)
    """The Job condition's reason (e.g. DeadlineExceeded, BackoffLimitExceeded)."""
    message: str | None = Field(default=None, max_length=1024)
    """The container's termination message (first 1 KiB)."""


class PolicySuspension(_Model):
    """The task suspended itself under spec.failurePolicy."""

    reason: str = Field(default="FailureThreshold", max_length=64)
    """Why: FailureThreshold."""
    since: Timestamp
    """When it was suspended."""
    failures: int = Field(ge=0)
    """Runs that had failed in a row."""
    run: str = Field(max_length=128)
    """The last failed run."""
    message: str = Field(default="", max_length=1024)
    """What the last failure was."""


class Resume(_Model):
    """The last resume request (`kubectl nightshift resume`, annotation nightshift.dev/resume)."""

    token: str = Field(max_length=128)
    """The request's token: each distinct token is acted on once."""
    at: Timestamp
    """When the operator acted on it."""
    by: str | None = Field(default=None, max_length=256)
    """Who asked, as the requester reported it (the plugin asks the API server who you are)."""
    note: str | None = Field(default=None, max_length=1024)
    """Why, in the requester's words."""


class PendingNotification(_Model):
    """A notification not yet delivered to every sink that should have it."""

    id: str = Field(max_length=300)
    """The idempotency key (the CloudEvents id): task uid, run, attempt and change."""
    change: Change
    """Failing, Recovered, Missed, Late or Suspended."""
    run: str = Field(max_length=128)
    """The run the change is about."""
    attempt: int = Field(default=1, ge=1, le=101)
    """The attempt the change is about."""
    at: Timestamp
    """When the change happened."""
    message: str = Field(default="", max_length=1024)
    """What happened, in one line."""
    sinks: list[Annotated[str, Field(max_length=63)]] = Field(default_factory=list, max_length=8)
    """The sinks still to deliver to."""
    failures: int = Field(default=0, ge=0)
    """Failed delivery attempts so far."""
    notBefore: Timestamp | None = None
    """The next attempt waits until then (back-off)."""
    lastError: str | None = Field(default=None, max_length=1024)
    """Why the last attempt failed."""


class TaskStatus(_Model):
    """What happened, written by the operator."""

    observedGeneration: int | None = None
    """The spec generation the status reflects."""
    conditions: list[Condition] = Field(default_factory=list, max_length=16)
    """Ready, Suspended, Running, Failing, Completed."""
    schedule: str | None = Field(default=None, max_length=300)
    """A one-line summary of when the task runs (shown by kubectl get)."""
    lastScheduleTime: Timestamp | None = None
    """The most recent slot that was started."""
    lastSlotTime: Timestamp | None = None
    """The most recent slot that was handled (run, skipped or missed); later slots are due."""
    nextScheduleTime: Timestamp | None = None
    """When the next run is due (including jitter and pending retries)."""
    lastSuccessfulTime: Timestamp | None = None
    """When a run last succeeded."""
    lastFailureTime: Timestamp | None = None
    """When a run last failed."""
    lastResult: RunResult | None = None
    """The result of the most recent finished attempt."""
    consecutiveFailures: int = Field(default=0, ge=0)
    """Runs that failed in a row (reset by a success)."""
    runCount: int = Field(default=0, ge=0)
    """Runs started so far (counted against maxRuns)."""
    activeCount: int = Field(default=0, ge=0)
    """Number of active runs (shown by kubectl get)."""
    active: list[ActiveRun] = Field(default_factory=list, max_length=100)
    """Attempts whose Jobs are running."""
    pendingRetries: list[PendingRetry] = Field(default_factory=list, max_length=100)
    """Retries waiting for their back-off (one per run; several only with Allow)."""
    queued: QueuedRun | None = None
    """With concurrencyPolicy Queue: the run waiting for the active one to end (it has no Job
    yet). A Job that Kueue holds suspended is an active run instead (status.active[].queued)."""
    runNowToken: str | None = Field(default=None, max_length=128)
    """The last nightshift.dev/run-now token that was acted on."""
    runs: list[RunRecord] = Field(default_factory=list, max_length=250)
    """Finished attempts, newest first, trimmed to spec.history."""
    nextScheduleTimes: list[Timestamp] = Field(default_factory=list, max_length=3)
    """The next fire times (up to 3; none while suspended or completed), as `nightshift
    preview` and `kubectl nightshift next` compute them."""
    failuresSinceResume: int = Field(default=0, ge=0)
    """Runs that failed in a row since the last success or resume: what
    spec.failurePolicy.suspendAfter counts."""
    suspendedByPolicy: PolicySuspension | None = None
    """Set while spec.failurePolicy keeps the task suspended; `kubectl nightshift resume` clears
    it. spec.suspend is the user's own switch and is never changed by the operator."""
    lastResume: Resume | None = None
    """The last resume request acted on: when, by whom, and the note."""
    deadlineCheckedUntil: Timestamp | None = None
    """Runs whose slot is at or before this were judged against spec.deadline already."""
    notifications: list[PendingNotification] = Field(default_factory=list, max_length=20)
    """Notifications still being delivered (kept here, so an operator restart never loses
    one); delivered ones are removed."""


# --- Backfill -------------------------------------------------------------------------------------


class Reprocess(StrEnum):
    """Which slots of the range a Backfill runs, judged from the Jobs and the task's history."""

    MISSING = "Missing"
    FAILED = "Failed"
    ALL = "All"


class OverlapPolicy(StrEnum):
    """Whether a Backfill's runs may start while the task's own runs are active."""

    WAIT = "Wait"
    ALLOW = "Allow"


class TaskRef(_Model):
    """A ScheduledTask in the Backfill's namespace."""

    name: str = Field(min_length=1, max_length=253)
    """The ScheduledTask's name."""


class BackfillSpec(_Model):
    """Run a task's slots in [from, to) that the schedule did not run (or run again)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "timestamp(self.from) < timestamp(self.to)",
                    "message": "from must be before to",
                },
                {
                    "rule": "self == oldSelf",
                    "message": "a Backfill's spec cannot change: delete it and create another",
                },
            ]
        }
    )

    taskRef: TaskRef
    """The ScheduledTask whose slots to run."""
    from_: Timestamp = Field(alias="from")
    """The start of the range (RFC 3339 with offset, included)."""
    to: Timestamp
    """The end of the range (RFC 3339 with offset, excluded)."""
    reprocess: Reprocess = Reprocess.MISSING
    """Which slots run: Missing (no run known), Failed (missing, or the last attempt did not
    succeed) or All."""
    parallelism: int = Field(default=1, ge=1, le=100)
    """The most runs of this Backfill active (or waiting for a retry) at once."""
    overlapPolicy: OverlapPolicy = OverlapPolicy.WAIT
    """Wait: start a run only while the task has none of its own active or waiting for a retry;
    Allow: start regardless."""
    dryRun: bool = False
    """List the slots and what would happen to each in status, and run none."""

    @model_validator(mode="after")
    def _range(self) -> BackfillSpec:
        if self.from_ >= self.to:
            raise ValueError("from must be before to")
        return self


class SlotState(StrEnum):
    """Where one slot of a Backfill stands."""

    PENDING = "Pending"
    RUNNING = "Running"
    RETRY_PENDING = "RetryPending"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SKIPPED = "Skipped"


class BackfillSlot(_Model):
    """One slot of the range: whether it runs, and how it went."""

    run: str = Field(max_length=128)
    """The slot's run identity (its time in RFC 3339, UTC), as in the task's history."""
    state: SlotState
    """Pending, Running, RetryPending, Succeeded, Failed or Skipped (not run)."""
    firstAttempt: int = Field(default=1, ge=1, le=100_000)
    """The attempt number of this Backfill's first Job for the slot: one more than any attempt
    known when the Backfill was planned, so its Job names are new (1 when the slot never ran:
    the very Job the schedule would have created)."""
    attempt: int = Field(default=1, ge=1, le=100_000)
    """The current (or last) attempt."""
    job: str | None = Field(default=None, max_length=253)
    """The current (or last) attempt's Job."""
    notBefore: Timestamp | None = None
    """RetryPending: the earliest time of the next attempt."""
    startedAt: Timestamp | None = None
    """When the current (or last) attempt's Job was created."""
    finishedAt: Timestamp | None = None
    """When the last attempt finished."""
    result: RunResult | None = None
    """The last attempt's result."""
    exitCode: int | None = Field(default=None, ge=0, le=255)
    """The last attempt's exit code."""
    reason: str | None = Field(default=None, max_length=256)
    """Why a slot is Skipped, or the Job condition's reason."""
    message: str | None = Field(default=None, max_length=256)
    """The container's termination message (first 256 bytes)."""


class BackfillStatus(_Model):
    """Progress, written by the operator: the plan first, then each slot's outcome."""

    observedGeneration: int | None = None
    """The spec generation the status reflects."""
    conditions: list[Condition] = Field(default_factory=list, max_length=16)
    """Ready (the task can be run), Complete."""
    phase: str | None = Field(default=None, max_length=32)
    """Pending, Running, Succeeded, Failed or DryRun (shown by kubectl get)."""
    taskUID: str | None = Field(default=None, max_length=64)
    """The task the plan was made for (a task re-created under its name is another task)."""
    plannedAt: Timestamp | None = None
    """When the slots were planned (before any Job was created)."""
    total: int = Field(default=0, ge=0)
    """Slots in the range that the schedule has passed."""
    pending: int = Field(default=0, ge=0)
    """Slots still to start."""
    running: int = Field(default=0, ge=0)
    """Slots with a Job active or a retry waiting."""
    succeeded: int = Field(default=0, ge=0)
    """Slots whose run succeeded."""
    failed: int = Field(default=0, ge=0)
    """Slots whose run failed (after its retries)."""
    skipped: int = Field(default=0, ge=0)
    """Slots not run (already done under spec.reprocess, or in progress elsewhere)."""
    leftToSchedule: int = Field(default=0, ge=0)
    """Slots in the range the task's schedule has not reached yet: its own, not backfilled."""
    progress: str | None = Field(default=None, max_length=32)
    """Slots finished (run or skipped) of the total, e.g. 12/31 (shown by kubectl get)."""
    slots: list[BackfillSlot] = Field(default_factory=list, max_length=1000)
    """Every slot of the range, oldest first."""


# --- reading objects ------------------------------------------------------------------------------


class SpecError(ValueError):
    """An invalid ScheduledTask spec; ``field`` is the dotted path (``spec.timeZone``)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def _path(loc: tuple[int | str, ...]) -> str:
    parts = ["spec"]
    for item in loc:
        if isinstance(item, int):
            parts[-1] += f"[{item}]"
        elif item.startswith("function-") or item in ("dict", "list"):
            continue  # pydantic's internal validator names are not fields
        else:
            parts.append(item)
    return ".".join(parts)


def parse_backfill(spec: Any) -> BackfillSpec:
    """Validate a Backfill ``spec`` mapping; raise SpecError naming the first bad field."""
    if not isinstance(spec, dict):
        raise SpecError("spec", "must be an object")
    try:
        return BackfillSpec.model_validate(spec)
    except ValidationError as error:
        raise _spec_error(error) from None


def parse_calendar(spec: Any) -> CalendarSpec:
    """Validate a Calendar ``spec`` mapping; raise SpecError naming the first bad field."""
    if not isinstance(spec, dict):
        raise SpecError("spec", "must be an object")
    try:
        return CalendarSpec.model_validate(spec)
    except ValidationError as error:
        raise _spec_error(error) from None


def _spec_error(error: ValidationError) -> SpecError:
    first = error.errors(include_url=False)[0]
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "missing":
        message = "is required"
    elif first["type"] == "extra_forbidden":
        message = "is not a known field"
    return SpecError(_path(tuple(first["loc"])), message)


def parse_spec(spec: Any) -> TaskSpec:
    """Validate a ScheduledTask ``spec`` mapping; raise SpecError naming the first bad field."""
    if not isinstance(spec, dict):
        raise SpecError("spec", "must be an object")
    try:
        return TaskSpec.model_validate(spec)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        message = str(first["msg"]).removeprefix("Value error, ")
        if first["type"] == "missing":
            message = "is required"
        elif first["type"] == "extra_forbidden":
            message = "is not a known field"
        raise SpecError(_path(tuple(first["loc"])), message) from None
