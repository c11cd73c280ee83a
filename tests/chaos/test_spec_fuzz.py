"""Generated ScheduledTask specs: every one is accepted and schedulable, or rejected naming a field.

No cluster. Specs come from three sources, mixed by Hypothesis:

* the CRD's own openAPIV3Schema (``nightshift.crd.crd_manifest()``) turned into a strategy, field by
  field (types, enums, bounds, patterns, date-time formats, required keys);
* a generator of plausible specs (one of schedule/interval/at, real cron syntax and zones);
* mutations of those: a random field replaced by a random JSON value, deleted, or an unknown key
  added.

Each spec goes through what the operator does with it: ``parse_spec`` (the webhook and the sync),
then ``plan_for``, ``next_slot``, ``decide`` with a fresh status, ``settle`` with the Jobs created,
the status through its JSON round trip (it is written to and read back from the API) and a second
``decide`` with those Jobs failed. The property:

* no exception other than ``SpecError`` escapes, ever;
* a rejected spec names the field: ``SpecError.field`` starts with ``spec``;
* an accepted cron spec fires at some point (a schedule that provably never fires, such as
  ``0 0 31 2 *``, must be a SpecError naming ``spec.schedule``);
* the status a sync produces can be read back (what the API stores is what the next sync reads).

Examples: ``NIGHTSHIFT_CHAOS_EXAMPLES`` (default 10,000; ``make chaos-short`` uses 1,000).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nightshift.crd import crd_manifest
from nightshift.cron import NeverFiresError, next_cron_fire
from nightshift.models import SpecError, TaskSpec, TaskStatus, parse_spec
from nightshift.reconcile import JobView, Outcome, TaskView, decide, settle
from nightshift.schedule import next_slot, plan_for

EXAMPLES = int(os.environ.get("NIGHTSHIFT_CHAOS_EXAMPLES", "10000"))
NS, NAME, UID = "fuzz", "generated-task", "00000000-0000-4000-8000-00000000f022"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

SPEC_SCHEMA: dict[str, Any] = crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"][
    "properties"
]["spec"]

# --- leaves --------------------------------------------------------------------------------------

ZONES = [
    "UTC", "Europe/Zurich", "America/New_York", "Australia/Lord_Howe", "Pacific/Chatham",
    "Asia/Kathmandu", "America/Sao_Paulo", "Africa/Casablanca", "Antarctica/Troll",
    "Pacific/Apia", "Pacific/Kiritimati", "America/St_Johns", "Etc/GMT+12", "Etc/GMT-14",
    "Asia/Tehran", "Europe/Dublin", "America/Santiago",
    # invalid ones
    "Local", "", "Nowhere/City", "../etc/passwd", "America", "Europe/Zurich ", "utc",
]  # fmt: skip

DURATION_SAMPLES = [
    "1ms", "0.5s", "1s", "2s", "10s", "90s", "1m", "1h30m", "6h", "1d", "400d", "3650d", "3651d",
    "0s", "0", "-5s", "5", "1m1m", "1.5h", "", " 5s", "1e3s", "5S",
]  # fmt: skip
durations = st.one_of(
    st.sampled_from(DURATION_SAMPLES),
    st.from_regex(r"\A([0-9]{1,6}(\.[0-9]{1,3})?(ms|s|m|h|d)){1,3}\Z"),
)


def _offsets() -> st.SearchStrategy[timezone]:
    return st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))


NOW_RANGE = (datetime(2025, 1, 1), datetime(2028, 12, 31))  # naive bounds for st.datetimes
ANY_RANGE = (datetime(1, 1, 1), datetime(9999, 12, 31))
ODD_TIMESTAMPS = [
    "2026-12-01T03:00:00", "2026-13-01T00:00:00Z", "yesterday", "", "2026-12-01 03:00:00Z",
    "2026-12-01T03:00:00.123456789Z", "2026-12-01", "0000-01-01T00:00:00Z",
    "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59", "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z", "2026-12-01t03:00:00z",
]  # fmt: skip


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    """RFC 3339 text: near now, anywhere in years 1-9999, odd spellings and non-timestamps."""
    kind = draw(st.sampled_from(["near"] * 6 + ["any", "any", "odd", "odd"]))
    if kind == "odd":
        return draw(st.sampled_from(ODD_TIMESTAMPS))
    low, high = NOW_RANGE if kind == "near" else ANY_RANGE
    moment = draw(st.datetimes(min_value=low, max_value=high, timezones=_offsets()))
    text = moment.isoformat(timespec=draw(st.sampled_from(["seconds", "milliseconds"])))
    if moment.utcoffset() == timedelta(0) and draw(st.booleans()):
        text = text.replace("+00:00", "Z")
    return text


CRON_FIELDS = (  # valid spellings per field: minute, hour, day of month, month, day of week
    ["*", "*/5", "*/7", "0", "5", "30", "59", "0-5", "10-20/3", "H", "H/15", "H(0-29)", "1,31,59",
     "5-5"],
    ["*", "*/2", "0", "3", "23", "1-5", "H", "H(1-5)", "2,14", "9-17/4", "*/5"],
    ["*", "1", "15", "29", "30", "31", "*/2", "1-7", "H", "28-31", "31/2"],
    ["*", "1", "2", "FEB", "JAN-MAR", "*/3", "4,6,9,11", "12", "H", "2-2"],
    ["*", "0", "7", "MON", "MON-FRI", "SUN,SAT", "1-5", "*/2", "H", "5-5", "*/7"],
)  # fmt: skip
CRON_SPECIAL = [
    "@daily", "@hourly", "@weekly", "@monthly", "@yearly", "@annually", "@midnight", "@reboot",
    "@every 5m", "@DAILY", "0 0 31 2 *", "0 0 30 2 *", "0 0 29 2 *", "0 0 31 4,6,9,11 *",
    "0 0 29 2 */7", "* * * * * *", "* * * *", "  0  3 * * * ", "0 0 30 2 */2", "0 0 31 2 MON-FRI",
    "0 0 29 2 1-5",
]  # fmt: skip
CRON_JUNK = ["60", "24", "32", "13", "-1", "*/0", "a", "1,,2", "L", "?", "1-0", "", "MON", "JAN"]


@st.composite
def crons(draw: st.DrawFn) -> str:
    """Cron text: mostly valid per field, some junk, macros and known never-firing ones."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.sampled_from(CRON_SPECIAL))
    fields = []
    for atoms in CRON_FIELDS:
        junk = draw(st.integers(0, 19)) == 0
        fields.append(draw(st.sampled_from(CRON_JUNK if junk else atoms)))
    return " ".join(fields)


# Any JSON value: what a mutation puts into a field.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=8,
)

# --- from the CRD schema -------------------------------------------------------------------------

VALID_POD = {"spec": {"containers": [{"name": "main", "image": "registry.invalid/job:1"}]}}
POD_TEMPLATES = st.one_of(
    st.just(VALID_POD),
    st.just({"metadata": {"annotations": {"a": "b"}}, "spec": {"containers": [{"name": "c"}]}}),
    st.just({"spec": {"containers": []}}),
    st.just({"metadata": {"namespace": "elsewhere"}, "spec": {"containers": [{"name": "c"}]}}),
    st.dictionaries(st.text(max_size=8), json_values, max_size=3),
)


def from_schema(node: dict[str, Any], path: str = "spec") -> st.SearchStrategy[Any]:
    """A strategy for values of one structural-schema node (bounds honoured most of the time)."""
    field = path.rsplit(".", 1)[-1]
    if "enum" in node:
        return st.sampled_from(node["enum"])
    kind = node.get("type")
    if kind == "object":
        props: dict[str, Any] = node.get("properties", {})
        if node.get("x-kubernetes-preserve-unknown-fields") and not props:
            return POD_TEMPLATES
        if not props and "additionalProperties" in node:
            return st.dictionaries(
                st.text(min_size=1, max_size=20),
                from_schema(node["additionalProperties"], path + ".*"),
                max_size=min(node.get("maxProperties", 5), 5),
            )
        required = set(node.get("required", []))
        return st.fixed_dictionaries(
            {k: from_schema(v, f"{path}.{k}") for k, v in props.items() if k in required},
            optional={
                k: from_schema(v, f"{path}.{k}") for k, v in props.items() if k not in required
            },
        )
    if kind == "array":
        return st.lists(from_schema(node["items"], path + "[]"), max_size=min(node["maxItems"], 6))
    if kind == "integer":
        low = node.get("minimum", -(2**63))
        high = node.get("maximum", 2**63 - 1)
        return st.integers(low, high) | st.sampled_from([low, high])
    if kind == "number":
        return st.floats(node.get("minimum"), node.get("maximum"), allow_nan=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "string":
        if node.get("format") == "date-time":
            return timestamps()
        if "pattern" in node:
            return durations
        if field == "schedule":
            return crons()
        if field == "timeZone":
            return st.sampled_from(ZONES)
        return st.text(max_size=min(node.get("maxLength", 64), 64))
    raise AssertionError(f"{path}: no strategy for schema node {node}")


schema_specs = from_schema(SPEC_SCHEMA)

# --- plausible specs -----------------------------------------------------------------------------


@st.composite
def plausible_specs(draw: st.DrawFn) -> dict[str, Any]:
    """Specs a person might write: exactly one schedule kind, mostly valid values."""
    template = draw(st.sampled_from([VALID_POD] * 9 + [None])) or draw(POD_TEMPLATES)
    spec: dict[str, Any] = {"jobTemplate": {"spec": {"template": template}}}
    kind = draw(st.sampled_from(["schedule", "interval", "at"]))
    if kind == "schedule":
        spec["schedule"] = draw(crons())
    elif kind == "interval":
        spec["interval"] = draw(durations)
        if draw(st.booleans()):
            spec["anchor"] = draw(timestamps())
    else:
        spec["at"] = draw(timestamps())
    optional: dict[str, st.SearchStrategy[Any]] = {
        "timeZone": st.sampled_from(ZONES),
        "startAt": timestamps(),
        "endAt": timestamps(),
        "jitter": durations,
        "timeout": durations,
        "concurrencyPolicy": st.sampled_from(["Allow", "Forbid", "Replace"]),
        "catchUp": st.sampled_from(["Skip", "Latest", "All"]),
        "startingDeadlineSeconds": st.integers(1, 3 * 86400) | st.just(31 * 86400),
        "maxCatchUp": st.integers(1, 100),
        "maxRuns": st.integers(0, 5) | st.just(1_000_000_000),
        "suspend": st.booleans(),
        "retry": from_schema(SPEC_SCHEMA["properties"]["retry"], "spec.retry"),
        "history": from_schema(SPEC_SCHEMA["properties"]["history"], "spec.history"),
    }
    for key in draw(st.sets(st.sampled_from(sorted(optional)), max_size=6)):
        spec[key] = draw(optional[key])
    return spec


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, sub in value.items():
            found += _paths(sub, (*prefix, key))
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            found += _paths(sub, (*prefix, i))
    return found


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[dict[str, Any]]) -> dict[str, Any]:
    """A spec with one to three random edits: a field replaced, deleted, or an unknown key added."""
    spec = json.loads(json.dumps(draw(base)))
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(spec)
        action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if not paths or action == "add":
            containers = [()] + [p for p in paths if isinstance(_at(spec, p), dict)]
            where = draw(st.sampled_from(containers))
            _at(spec, where)[draw(st.text(min_size=1, max_size=12))] = draw(json_values)
            continue
        where = draw(st.sampled_from(paths))
        parent, key = _at(spec, where[:-1]), where[-1]
        if action == "delete":
            del parent[key]
        else:
            parent[key] = draw(json_values | st.text(max_size=300) | timestamps() | durations)
    return spec


def _at(value: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        value = value[key]
    return value


all_specs = st.one_of(
    schema_specs,
    plausible_specs(),
    plausible_specs(),
    mutated(plausible_specs()),
    mutated(schema_specs),
    json_values,  # not even an object
)

# --- the property --------------------------------------------------------------------------------

STATS: dict[str, int] = {}


def _count(what: str) -> None:
    STATS[what] = STATS.get(what, 0) + 1


def exercise(raw: Any, now: datetime, age: timedelta, later: timedelta) -> None:
    """What the operator does with a stored spec, asserting the property (see the module doc)."""
    try:
        spec = parse_spec(raw)
    except SpecError as error:
        rejected: SpecError | None = error
    else:
        rejected = None
    if rejected is not None:
        assert rejected.field.startswith("spec"), f"SpecError names {rejected.field!r}: {rejected}"
        _count("rejected")
        return
    _count("accepted")
    plan = plan_for(spec, NS, NAME)
    next_slot(plan, now)
    if spec.schedule is not None:
        assert plan.cron is not None
        try:
            next_cron_fire(plan.cron, plan.tz, now)
        except NeverFiresError as error:
            raise AssertionError(
                f"schedule {spec.schedule!r} was accepted but never fires ({error}); it must be "
                "a SpecError naming spec.schedule"
            ) from None
    view = fresh_view(spec, created=now - age)
    decision = decide(view, now)
    for create in decision.create:
        assert len(create.name) <= 63, create.name
        assert DNS_LABEL.match(create.name), create.name
    decision = settle(view, decision, [Outcome(c.name, "created") for c in decision.create], now)
    if decision.create:
        _count("created Jobs")
    stored = _round_trip(decision.status)
    # The Jobs ran and failed; the next sync records them, retries and fires later slots.
    failed = tuple(
        JobView(
            name=c.name,
            run=c.run,
            attempt=c.attempt,
            created=now,
            finished="Failed",
            reason="BackoffLimitExceeded",
            finished_at=now + timedelta(seconds=1),
            exit_code=1,
            message="x" * 2000,
        )
        for c in decision.create
    )
    second = decide(replace(view, status=stored, jobs=failed), now + later)
    _round_trip(second.status)


def fresh_view(spec: TaskSpec, *, created: datetime) -> TaskView:
    """The task as the operator first sees it: no status, no Jobs."""
    return TaskView(
        namespace=NS,
        name=NAME,
        uid=UID,
        generation=1,
        created=created,
        spec=spec,
        spec_error=None,
        status=TaskStatus(),
    )


def _round_trip(status: TaskStatus) -> TaskStatus:
    text = json.dumps(status.model_dump(mode="json"))
    try:
        return TaskStatus.model_validate(json.loads(text))
    except ValueError as error:
        raise AssertionError(f"the status cannot be read back: {error}\n{text}") from None


@pytest.mark.timeout(max(600, EXAMPLES))
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    raw=all_specs,
    now=st.datetimes(*NOW_RANGE, timezones=st.just(UTC)),
    age=st.timedeltas(timedelta(0), timedelta(days=400)),
    later=st.timedeltas(timedelta(seconds=1), timedelta(days=2)),
)
def test_generated_specs_are_scheduled_or_rejected_naming_the_field(
    raw: Any, now: datetime, age: timedelta, later: timedelta
) -> None:
    exercise(raw, now, age, later)


def test_report_generated_spec_numbers() -> None:
    """Prints how many generated specs were accepted (runs after the property above; the counts
    include the examples Hypothesis replays and shrinks)."""
    print(f"\nchaos fuzz: {EXAMPLES} examples asked for; outcomes of every example run: {STATS}")
    if STATS:
        assert STATS.get("accepted", 0) > 0, "no generated spec was accepted: the generator is off"


def test_a_one_shot_in_year_one_is_decided_without_overflow() -> None:
    """Found by the property above: the bounded slot search stepped below datetime.min."""
    pod = {"spec": {"template": VALID_POD}}
    spec = parse_spec({"at": "0001-01-01T00:30:00Z", "jobTemplate": pod})
    moment = datetime(2026, 11, 23, tzinfo=UTC)
    decision = decide(fresh_view(spec, created=moment - timedelta(hours=1)), moment)
    assert len(decision.create) == 1  # a one-shot whose time passed runs late, without a deadline


def test_a_one_shot_at_the_end_of_the_calendar_with_jitter_is_decided() -> None:
    """Found by the property above: slot + jitter overflowed past datetime.max."""
    pod = {"spec": {"template": VALID_POD}}
    spec = parse_spec({"at": "9999-12-31T23:59:59Z", "jitter": "10s", "jobTemplate": pod})
    moment = datetime(2026, 11, 23, tzinfo=UTC)
    decision = decide(fresh_view(spec, created=moment), moment)
    assert decision.wake_at == datetime.max.replace(tzinfo=UTC)
    assert _round_trip(decision.status).nextScheduleTime is not None


@pytest.mark.parametrize(
    "kind",
    [
        {"schedule": "* * * * *"},
        {"schedule": "0 3 * * *", "timeZone": "Europe/Zurich"},
        {"interval": "1d"},
    ],
    ids=["cron", "cron-fixed-hour-zone", "interval"],
)
def test_a_window_starting_at_the_end_of_the_calendar_has_no_slot(kind: dict[str, str]) -> None:
    """Found by the property above: the next slot after 9999-12-31T23:59:59Z overflowed instead
    of being "none left", so every sync failed."""
    pod = {"spec": {"template": VALID_POD}}
    spec = parse_spec({**kind, "startAt": "9999-12-31T23:59:59Z", "jobTemplate": pod})
    moment = datetime(2026, 11, 23, tzinfo=UTC)
    decision = decide(fresh_view(spec, created=moment), moment)
    assert decision.wake_at is None
    assert not decision.create
