"""Tables for ``nightshift.jobs``: deterministic Job names and the Job built for each attempt.

The short names are written out by hand. The 8-hex hashes of truncated names were recorded once and
are pinned on purpose: a Job name is the last line of defence against running a slot twice, so a
change that renames the Jobs of existing tasks (e.g. across an operator upgrade) must fail here.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nightshift.jobs import (
    ANNOTATION_ATTEMPT,
    ANNOTATION_RUN,
    ANNOTATION_RUN_NOW,
    ANNOTATION_SLOT,
    CRONJOB_SCHEDULED_TIMESTAMP,
    LABEL_BUCKET,
    LABEL_MANAGED,
    LABEL_TASK,
    build_job,
    job_identity,
    job_name,
    manual_run_id,
    new_token,
    run_id_for_slot,
    task_label_value,
    token_key,
)
from nightshift.models import SpecError, TaskSpec, TaskStatus, parse_spec
from nightshift.reconcile import TaskView, decide
from nightshift.timezones import load_zone

UID = "6f1c2a9e-0000-4000-8000-000000000001"
RUN = "2026-11-23T03:00:00Z"
CONTAINERS = [{"name": "main", "image": "busybox"}]

# DNS-1123: a label (63 characters at most), and a subdomain (dot-separated labels).
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def spec(template_spec: dict[str, Any] | None = None, **fields: Any) -> TaskSpec:
    job_spec = {"template": {"spec": {"containers": CONTAINERS}}}
    job_spec.update(template_spec or {})
    template = {"spec": job_spec, **fields.pop("template_fields", {})}
    return parse_spec({"schedule": "0 3 * * *", "jobTemplate": template, **fields})


def build(
    task_spec: TaskSpec | None = None,
    *,
    task: str = "nightly",
    run: str = RUN,
    attempt: int = 1,
    zone: str | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    slot = None if run.startswith("manual-") else datetime.fromisoformat(run)
    return build_job(
        task_name=task,
        task_uid=UID,
        spec=task_spec or spec(),
        run=run,
        attempt=attempt,
        slot=slot,
        tz_offset_slot=slot.astimezone(load_zone(zone)) if slot and zone else None,
        run_now_token=token,
    )


# --- run ids and names ----------------------------------------------------------------------------


def test_run_ids() -> None:
    slot = datetime(2026, 11, 23, 4, 0, tzinfo=load_zone("Europe/Zurich"))
    assert run_id_for_slot(slot) == "2026-11-23T03:00:00Z"  # always UTC
    assert manual_run_id("abc") == "manual-ba7816bf8f"
    assert manual_run_id("abc") == manual_run_id("abc")
    assert manual_run_id("abd") != manual_run_id("abc")


A100 = "a" * 100
X36 = "x" * 36

NAMES = [
    pytest.param("nightly", RUN, 1, "nightly-20261123030000-1", id="slot, attempt 1"),
    pytest.param("nightly", RUN, 2, "nightly-20261123030000-2", id="attempt 2"),
    pytest.param("nightly", RUN, 101, "nightly-20261123030000-101", id="attempt 101"),
    pytest.param("nightly", "manual-ba7816bf8f", 1, "nightly-mba7816bf8f-1", id="manual run"),
    pytest.param("team.sync", RUN, 1, "team.sync-20261123030000-1", id="dotted task name"),
    pytest.param(
        "x" * 46, RUN, 1, "x" * 46 + "-20261123030000-1", id="exactly 63 characters: not cut"
    ),
    pytest.param(
        "x" * 47, RUN, 1, "x" * 37 + "-cbfaf6df-20261123030000-1", id="64 characters: cut, hashed"
    ),
    pytest.param(A100, RUN, 1, "a" * 37 + "-9e825882-20261123030000-1", id="100 characters"),
    pytest.param(A100, RUN, 2, "a" * 37 + "-11ea93f2-20261123030000-2", id="long, attempt 2"),
    pytest.param(A100, RUN, 101, "a" * 35 + "-14bbeff1-20261123030000-101", id="long, attempt 101"),
    pytest.param(
        A100, "manual-ba7816bf8f", 1, "a" * 40 + "-1e78e972-mba7816bf8f-1", id="long, manual"
    ),
    pytest.param(
        X36 + "-" + "y" * 30,
        RUN,
        1,
        X36 + "-bb7c3b1e-20261123030000-1",
        id="cut right after a dash: no double dash",
    ),
    pytest.param(
        X36 + "." + "y" * 30,
        RUN,
        1,
        X36 + "-ba3319bf-20261123030000-1",
        id="cut right after a dot: no dot before the hash",
    ),
]


@pytest.mark.parametrize(("task", "run", "attempt", "expected"), NAMES)
def test_job_name(task: str, run: str, attempt: int, expected: str) -> None:
    name = job_name(task, run, attempt)
    assert name == expected
    assert len(name) <= 63
    assert DNS_SUBDOMAIN.match(name)
    if "." not in task:
        assert DNS_LABEL.match(name)
    assert job_name(task, run, attempt) == name  # deterministic


def test_long_names_differing_only_at_the_end_stay_unique() -> None:
    prod = job_name("nightly-" + "x" * 60 + "-prod", RUN, 1)
    test = job_name("nightly-" + "x" * 60 + "-test", RUN, 1)
    assert prod == "nightly-" + "x" * 29 + "-3751b4eb-20261123030000-1"
    assert test == "nightly-" + "x" * 29 + "-6925147d-20261123030000-1"
    assert len(prod) == len(test) == 63


LABEL_PART = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?", fullmatch=True)
TASK_NAMES = (
    st.lists(LABEL_PART, min_size=1, max_size=12).map(".".join).filter(lambda n: len(n) <= 253)
)
RUNS = st.one_of(
    st.datetimes(
        min_value=datetime(1970, 1, 1),
        max_value=datetime(2999, 12, 31),
        timezones=st.just(UTC),
    ).map(run_id_for_slot),
    st.text(min_size=1, max_size=40).map(manual_run_id),
)


@given(task=TASK_NAMES, run=RUNS, attempt=st.integers(min_value=1, max_value=101))
def test_every_name_is_a_valid_short_dns_name(task: str, run: str, attempt: int) -> None:
    name = job_name(task, run, attempt)
    assert len(name) <= 63
    assert DNS_SUBDOMAIN.match(name), name
    assert LABEL_VALUE.match(name)  # the Job controller puts it in the pods' job-name label
    assert job_name(task, run, attempt) == name


@given(
    task=TASK_NAMES,
    runs=st.lists(RUNS, min_size=2, max_size=2, unique=True),
    attempt=st.integers(min_value=1, max_value=101),
)
def test_names_are_unique_per_run_attempt_and_task(
    task: str, runs: list[str], attempt: int
) -> None:
    first, second = runs
    assert job_name(task, first, attempt) != job_name(task, second, attempt)
    assert job_name(task, first, attempt) != job_name(task, first, attempt % 101 + 1)
    longer = task + "-z"  # shares every character of ``task``: only a hash can tell them apart
    if len(longer) <= 253:
        assert job_name(task, first, attempt) != job_name(longer, first, attempt)


# --- the manifest ---------------------------------------------------------------------------------


def test_manifest_owner_labels_annotations() -> None:
    job = build(attempt=2, zone="Europe/Zurich")
    meta = job["metadata"]
    assert job["apiVersion"] == "batch/v1"
    assert job["kind"] == "Job"
    assert meta["name"] == "nightly-20261123030000-2"
    assert "namespace" not in meta  # created in the task's namespace by the caller, only there
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "nightshift.dev/v1alpha1",
            "kind": "ScheduledTask",
            "name": "nightly",
            "uid": UID,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    # The bucket of the task's uid (FNV-1a, top 8 bits): the shard that owns the task selects
    # its Jobs by it.
    assert meta["labels"] == {LABEL_TASK: "nightly", LABEL_MANAGED: "true", LABEL_BUCKET: "188"}
    assert meta["annotations"][ANNOTATION_SLOT] == "2026-11-23T04:00:00+01:00"
    assert meta["annotations"][ANNOTATION_ATTEMPT] == "2"
    assert meta["annotations"][ANNOTATION_RUN] == RUN
    assert ANNOTATION_RUN_NOW not in meta["annotations"]
    assert job_identity(job) == (RUN, 2)


@pytest.mark.parametrize(
    ("run", "zone", "shown"),
    [
        pytest.param(RUN, None, "2026-11-23T03:00:00+00:00", id="UTC"),
        pytest.param(RUN, "Europe/Zurich", "2026-11-23T04:00:00+01:00", id="Zurich winter"),
        pytest.param(
            "2026-07-01T01:00:00Z", "Europe/Zurich", "2026-07-01T03:00:00+02:00", id="Zurich summer"
        ),
        pytest.param(
            RUN, "America/New_York", "2026-11-22T22:00:00-05:00", id="New York, the day before"
        ),
        pytest.param(RUN, "Asia/Kolkata", "2026-11-23T08:30:00+05:30", id="half-hour offset"),
    ],
)
def test_slot_annotation_is_rfc3339_with_the_zone_offset(
    run: str, zone: str | None, shown: str
) -> None:
    text = build(run=run, zone=zone)["metadata"]["annotations"][ANNOTATION_SLOT]
    assert text == shown
    assert datetime.fromisoformat(text) == datetime.fromisoformat(run)  # the same instant


def test_decide_writes_the_task_zone_offset_on_the_job() -> None:
    task_spec = parse_spec(
        {
            "schedule": "0 4 * * *",
            "timeZone": "Europe/Zurich",
            "jobTemplate": {"spec": {"template": {"spec": {"containers": CONTAINERS}}}},
        }
    )
    view = TaskView(
        namespace="school",
        name="nightly",
        uid=UID,
        generation=1,
        created=datetime(2026, 11, 1, tzinfo=UTC),
        spec=task_spec,
        spec_error=None,
        status=TaskStatus(),
        jobs=(),
    )
    decision = decide(view, datetime(2026, 11, 23, 3, 0, 5, tzinfo=UTC))
    [create] = decision.create
    assert create.name == "nightly-20261123030000-1"
    assert create.manifest["metadata"]["annotations"][ANNOTATION_SLOT] == (
        "2026-11-23T04:00:00+01:00"
    )
    assert "namespace" not in create.manifest["metadata"]


def test_token_is_utc_time_plus_suffix_and_names_a_valid_job() -> None:
    now = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)
    zurich = now.astimezone(load_zone("Europe/Zurich"))
    token = new_token(zurich, "1a2b3c")
    assert token == "20261123T100000Z-1a2b3c"
    assert new_token(now) != new_token(now)  # random suffix
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{6}", new_token(now))
    name = job_name("x" * 80, manual_run_id(token), 1)
    assert len(name) <= 63
    assert name.endswith(f"-m{manual_run_id(token).removeprefix('manual-')}-1")


@pytest.mark.parametrize("token", ["short", "x" * 128, "y" * 129, "z" * 5000])
def test_token_key_fits_status_and_keeps_short_tokens_readable(token: str) -> None:
    key = token_key(token)
    if len(token) <= 128:
        assert key == token
    else:
        assert key.startswith("sha256:")
    assert token_key(token + "!") != key  # distinct tokens stay distinct
    assert TaskStatus.model_validate({"runNowToken": key}).runNowToken == key


def test_manual_run_manifest() -> None:
    job = build(run="manual-ba7816bf8f", token="abc")
    annotations = job["metadata"]["annotations"]
    assert job["metadata"]["name"] == "nightly-mba7816bf8f-1"
    assert annotations[ANNOTATION_RUN_NOW] == "abc"
    assert ANNOTATION_SLOT not in annotations
    assert job_identity(job) == ("manual-ba7816bf8f", 1)


SPECS = [
    pytest.param({}, {}, {"backoffLimit": 0}, "Never", id="defaults: backoffLimit 0, Never"),
    pytest.param(
        {"backoffLimit": 3}, {}, {"backoffLimit": 3}, "Never", id="template backoffLimit kept"
    ),
    pytest.param(
        {},
        {"timeout": "1h"},
        {"backoffLimit": 0, "activeDeadlineSeconds": 3600},
        "Never",
        id="timeout sets activeDeadlineSeconds",
    ),
    pytest.param(
        {},
        {"timeout": "1.5s"},
        {"activeDeadlineSeconds": 2},
        "Never",
        id="fractional timeout rounds up",
    ),
    pytest.param(
        {"activeDeadlineSeconds": 100},
        {"timeout": "10m"},
        {"activeDeadlineSeconds": 600},
        "Never",
        id="timeout wins over the template's deadline",
    ),
    pytest.param(
        {"activeDeadlineSeconds": 100},
        {},
        {"activeDeadlineSeconds": 100},
        "Never",
        id="template deadline kept without timeout",
    ),
    pytest.param(
        {"template": {"spec": {"containers": CONTAINERS, "restartPolicy": "OnFailure"}}},
        {},
        {},
        "OnFailure",
        id="template restartPolicy kept",
    ),
    pytest.param(
        {"parallelism": 2, "completions": 4, "ttlSecondsAfterFinished": 60},
        {},
        {"parallelism": 2, "completions": 4, "ttlSecondsAfterFinished": 60},
        "Never",
        id="other JobSpec fields pass through",
    ),
]


@pytest.mark.parametrize(("template_spec", "fields", "expected", "restart"), SPECS)
def test_job_spec(
    template_spec: dict[str, Any], fields: dict[str, Any], expected: dict[str, Any], restart: str
) -> None:
    job_spec = build(spec(template_spec, **fields))["spec"]
    for key, value in expected.items():
        assert job_spec[key] == value, key
    if "activeDeadlineSeconds" not in expected:
        assert "activeDeadlineSeconds" not in job_spec
    assert job_spec["template"]["spec"]["restartPolicy"] == restart
    assert job_spec["template"]["spec"]["containers"] == CONTAINERS


def test_template_metadata_is_kept_but_cannot_override_ours() -> None:
    task_spec = spec(
        {
            "template": {
                "metadata": {"labels": {"app": "sync", LABEL_TASK: "other"}},
                "spec": {"containers": CONTAINERS},
            }
        },
        template_fields={
            "metadata": {
                "labels": {
                    "team": "data",
                    LABEL_TASK: "other",
                    LABEL_MANAGED: "false",
                    LABEL_BUCKET: "7",
                },
                "annotations": {"owner": "ops", ANNOTATION_ATTEMPT: "9", ANNOTATION_RUN: "x"},
            }
        },
    )
    job = build(task_spec)
    meta = job["metadata"]
    assert meta["labels"] == {
        "team": "data",
        LABEL_TASK: "nightly",
        LABEL_MANAGED: "true",
        LABEL_BUCKET: "188",
    }
    assert meta["annotations"]["owner"] == "ops"
    assert meta["annotations"][ANNOTATION_ATTEMPT] == "1"
    assert meta["annotations"][ANNOTATION_RUN] == RUN
    pod_labels = job["spec"]["template"]["metadata"]["labels"]
    assert pod_labels == {"app": "sync", LABEL_TASK: "nightly"}


def test_building_does_not_touch_the_spec() -> None:
    task_spec = spec({"backoffLimit": None}, timeout="5m")
    before = task_spec.model_dump()
    first = build(task_spec)
    first["spec"]["template"]["spec"]["containers"].append({"name": "x"})
    second = build(task_spec)
    assert task_spec.model_dump() == before
    assert second["spec"]["template"]["spec"]["containers"] == CONTAINERS


def test_long_task_name_label_is_a_valid_label_value() -> None:
    long_name = "a" * 100
    job = build(task=long_name)
    value = job["metadata"]["labels"][LABEL_TASK]
    assert value == task_label_value(long_name) == "a" * 54 + "-28165978"
    assert len(value) <= 63
    assert LABEL_VALUE.match(value)
    assert job["spec"]["template"]["metadata"]["labels"][LABEL_TASK] == value
    assert job["metadata"]["ownerReferences"][0]["name"] == long_name


@pytest.mark.parametrize(
    ("template", "field"),
    [
        pytest.param(
            {"metadata": {"namespace": "kube-system"}, "spec": {"template": {"spec": {}}}},
            "spec.jobTemplate.metadata.namespace",
            id="Job namespace",
        ),
        pytest.param(
            {
                "spec": {
                    "template": {
                        "metadata": {"namespace": "kube-system"},
                        "spec": {"containers": CONTAINERS},
                    }
                }
            },
            "spec.jobTemplate.spec",
            id="pod namespace",
        ),
    ],
)
def test_a_template_cannot_name_another_namespace(template: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec({"schedule": "@daily", "jobTemplate": template})
    assert caught.value.field == field
    assert "namespace" in caught.value.problem


@pytest.mark.parametrize(
    "job",
    [
        pytest.param({"metadata": {"name": "x"}}, id="no annotations"),
        pytest.param({"metadata": {"annotations": {ANNOTATION_RUN: RUN}}}, id="no attempt"),
        pytest.param(
            {"metadata": {"annotations": {ANNOTATION_RUN: RUN, ANNOTATION_ATTEMPT: "two"}}},
            id="attempt not a number",
        ),
        pytest.param({}, id="no metadata"),
    ],
)
def test_job_identity_of_foreign_jobs(job: dict[str, Any]) -> None:
    assert job_identity(job) is None


@pytest.mark.parametrize(
    ("slot", "run"),
    [
        (datetime(2026, 11, 23, 3, 0, tzinfo=UTC), "2026-11-23T03:00:00Z"),
        # glibc's strftime writes years below 1000 without padding ("999-12-31"), which is not
        # RFC 3339: the run id and every status time must still read back.
        (datetime(999, 12, 31, 23, 59, tzinfo=UTC), "0999-12-31T23:59:00Z"),
        (datetime(1, 1, 1, tzinfo=UTC), "0001-01-01T00:00:00Z"),
    ],
)
def test_run_ids_are_rfc3339_for_every_year(slot: datetime, run: str) -> None:
    from nightshift.models import parse_time

    assert run_id_for_slot(slot) == run
    assert parse_time(run) == slot


@pytest.mark.parametrize("text", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+00:01"])
def test_a_time_outside_the_utc_calendar_is_rejected_with_a_message(text: str) -> None:
    from nightshift.models import parse_time

    with pytest.raises(ValueError, match="outside the years 1 to 9999 in UTC"):
        parse_time(text)


# --- ecosystem markers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("run", "zone", "stamp"),
    [
        pytest.param(RUN, None, "2026-11-23T03:00:00Z", id="UTC is written Z, as Go does"),
        pytest.param(RUN, "Europe/Zurich", "2026-11-23T04:00:00+01:00", id="the task's zone"),
        pytest.param(RUN, "Europe/London", "2026-11-23T03:00:00Z", id="a zone at offset 0: Z"),
        pytest.param(RUN, "Asia/Kolkata", "2026-11-23T08:30:00+05:30", id="half-hour offset"),
    ],
)
def test_jobs_carry_the_cronjob_scheduled_timestamp(run: str, zone: str | None, stamp: str) -> None:
    # KEP-4026: what the CronJob controller writes (scheduledTime.In(zone).Format(time.RFC3339)).
    annotations = build(run=run, zone=zone)["metadata"]["annotations"]
    assert annotations[CRONJOB_SCHEDULED_TIMESTAMP] == stamp
    assert datetime.fromisoformat(stamp) == datetime.fromisoformat(run)


def test_retries_carry_the_slot_and_manual_runs_no_cronjob_timestamp() -> None:
    assert build(attempt=3)["metadata"]["annotations"][CRONJOB_SCHEDULED_TIMESTAMP] == (
        "2026-11-23T03:00:00Z"
    )
    manual = build(run="manual-ba7816bf8f", token="abc")["metadata"]["annotations"]
    assert CRONJOB_SCHEDULED_TIMESTAMP not in manual  # no slot, like `kubectl create job --from`


QUEUE = "kueue.x-k8s.io/queue-name"
PRIORITY = "kueue.x-k8s.io/priority-class"


@pytest.mark.parametrize(
    ("task_labels", "template_labels", "expected"),
    [
        pytest.param(
            {QUEUE: "team-a", PRIORITY: "high", "app": "report"},
            None,
            {QUEUE: "team-a", PRIORITY: "high"},
            id="the task's Kueue labels are passed on, its other labels are not",
        ),
        pytest.param(
            {QUEUE: "team-a"},
            {QUEUE: "team-b", "team": "data"},
            {QUEUE: "team-b", "team": "data"},
            id="the jobTemplate's labels win",
        ),
        pytest.param(None, {QUEUE: "team-b"}, {QUEUE: "team-b"}, id="jobTemplate only"),
        pytest.param({"app": "report"}, None, {}, id="no Kueue labels: none added"),
    ],
)
def test_kueue_labels_pass_through(
    task_labels: dict[str, str] | None,
    template_labels: dict[str, str] | None,
    expected: dict[str, str],
) -> None:
    metadata = {"metadata": {"labels": template_labels}} if template_labels else {}
    fields = {"template_fields": metadata}
    job = build_job(
        task_name="nightly",
        task_uid=UID,
        spec=spec(**fields),
        run=RUN,
        attempt=1,
        slot=datetime.fromisoformat(RUN),
        task_labels=task_labels,
    )
    labels = dict(job["metadata"]["labels"])
    assert labels.pop(LABEL_BUCKET)  # the shard bucket of the task (tested above)
    assert labels == {
        **expected,
        LABEL_TASK: "nightly",
        LABEL_MANAGED: "true",
    }
