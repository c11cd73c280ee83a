"""Tables for runs that look after themselves (``nightshift.care`` through ``reconcile.decide``).

Pause on failure (``spec.failurePolicy``) and resume, deadlines (``spec.deadline`` and the Late
condition), notifications of changes of state (``spec.notify``: what is queued in status, and
how delivery outcomes are folded back) and ``status.nextScheduleTimes``. The builders and the
invariants are those of ``test_reconcile.py``: the task is ``school/sync-ics``, hourly, every time
on 2026-03-01.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import pytest
from test_reconcile import (
    UID,
    Row,
    active,
    at,
    check,
    job,
    make_spec,
    ran,
    record,
    t,
    task,
    utc,
)

from nightshift import care
from nightshift.models import Change, PendingNotification, SpecError
from nightshift.reconcile import Decision, TaskView, decide

J03 = "sync-ics-20260301030000-1"
J04 = "sync-ics-20260301040000-1"
R03, R04 = at("03:00"), at("04:00")
HOOK = {"name": "ops", "url": "http://127.0.0.1:9/hook"}


@dataclass(frozen=True)
class CareRow(Row):
    """A Row with the inputs only these features read."""

    resume: str | None = None
    deliveries: tuple[care.Delivery, ...] = ()
    late: tuple[str, ...] = ()  # Decision.late
    notified: tuple[tuple[str, str, tuple[str, ...]], ...] | None = None  # (change, run, sinks)


def run_care(row: CareRow) -> Decision:
    view: TaskView = replace(
        task(
            make_spec(**row.spec),
            status=row.status,
            jobs=row.jobs,
            run_now=row.run_now,
            created=row.created,
            generation=row.generation,
        ),
        resume=row.resume,
        deliveries=row.deliveries,
    )
    decision = decide(view, utc(row.now))
    check(row, view, decision)
    assert decision.late == list(row.late)
    if row.notified is not None:
        got = [(n.change.value, n.run, tuple(n.sinks)) for n in decision.status.notifications]
        assert got == list(row.notified)
    for reason in ("FailureThreshold", "RunLate", "NotificationFailed", "Resumed"):
        assert [e.reason for e in decision.events].count(reason) <= 1, reason
    return decision


def failed_03(exit_code: int = 1, message: str | None = "no route to host") -> Any:
    return (
        job(
            "03:00",
            finished="Failed",
            reason="BackoffLimitExceeded",
            finished_at=at("03:05"),
            exit_code=exit_code,
            message=message,
        ),
    )


SUCCEEDED_03 = (job("03:00", finished="Succeeded", finished_at=at("03:05"), exit_code=0),)
RUNNING_03 = ran("03:00", active=[active("03:00", started=at("03:00:01"))])


def failing(count: int, **more: Any) -> dict[str, Any]:
    """Run 03:00 running, ``count`` runs before it failed in a row."""
    return {**RUNNING_03, "consecutiveFailures": count, "failuresSinceResume": count, **more}


PAUSED = {
    "since": at("02:05"),
    "failures": 3,
    "run": at("02:00"),
    "message": "3 runs failed in a row",
}


def rec(slot: str, result: str) -> dict[str, Any]:
    """A status.runs entry of a scheduled run, with its slot (as the operator records it)."""
    return {
        **record(slot, result, job=result not in ("Missed", "Skipped")),
        "scheduledAt": at(slot),
    }


def resume(token: str, by: str | None = "alice", note: str | None = "fixed the creds") -> str:
    return json.dumps({"token": token, "by": by, "note": note})


# --- pause on failure -----------------------------------------------------------------------------

PAUSE = [
    CareRow(
        id="the 3rd failure in a row with suspendAfter 3: suspended by the policy",
        spec={"failurePolicy": {"suspendAfter": 3}},
        status=failing(2),
        jobs=failed_03(),
        now=at("03:06"),
        events=("RunFailed", "FailureThreshold"),
        wake=None,
        fields={"consecutiveFailures": 3, "failuresSinceResume": 3, "nextScheduleTimes": []},
        conditions={"Suspended": ("True", "FailureThreshold"), "Failing": ("True", "RunFailed")},
        says={"FailureThreshold": "3 runs failed in a row (failurePolicy.suspendAfter 3)"},
    ),
    CareRow(
        id="the 2nd failure with suspendAfter 3: not yet",
        spec={"failurePolicy": {"suspendAfter": 3}},
        status=failing(1),
        jobs=failed_03(),
        now=at("03:06"),
        events=("RunFailed",),
        wake=at("04:00"),
        fields={"failuresSinceResume": 2, "suspendedByPolicy": None},
        conditions={"Suspended": ("False", "Active")},
    ),
    CareRow(
        id="no failurePolicy: never suspended, however many failures",
        status=failing(40),
        jobs=failed_03(),
        now=at("03:06"),
        events=("RunFailed",),
        wake=at("04:00"),
        fields={"consecutiveFailures": 41, "suspendedByPolicy": None},
    ),
    CareRow(
        id="a success resets the count",
        spec={"failurePolicy": {"suspendAfter": 3}},
        status=failing(2),
        jobs=SUCCEEDED_03,
        now=at("03:06"),
        events=("RunSucceeded",),
        wake=at("04:00"),
        fields={"consecutiveFailures": 0, "failuresSinceResume": 0},
    ),
    CareRow(
        id="suspended by the policy: a due slot does not run, and is not caught up later",
        spec={"failurePolicy": {"suspendAfter": 3}},
        status=ran("03:00", suspendedByPolicy=PAUSED, consecutiveFailures=3),
        now=at("04:00:05"),
        wake=None,
        runs=(),
        fields={"lastSlotTime": at("04:00:05"), "nextScheduleTime": None},
        conditions={"Suspended": ("True", "FailureThreshold")},
    ),
    CareRow(
        id="suspended by the policy: run-now still runs",
        spec={"failurePolicy": {"suspendAfter": 3}},
        status=ran("03:00", suspendedByPolicy=PAUSED),
        run_now="abc",
        now=at("03:20"),
        creates=("sync-ics-mba7816bf8f-1",),
        events=("RunStarted",),
    ),
    CareRow(
        id="resume: cleared, who and why recorded, the count starts afresh, no catch-up",
        spec={"failurePolicy": {"suspendAfter": 3}},
        status=ran("03:00", suspendedByPolicy=PAUSED, consecutiveFailures=3, failuresSinceResume=3),
        resume=resume("r1"),
        now=at("04:10"),
        events=("Resumed",),
        wake=at("05:00"),
        runs=(),
        fields={
            "suspendedByPolicy": None,
            "lastResume": {
                "token": "r1",
                "at": at("04:10"),
                "by": "alice",
                "note": "fixed the creds",
            },
            "failuresSinceResume": 0,
            "consecutiveFailures": 3,  # still the truth: nothing has succeeded yet
            "lastSlotTime": at("04:10"),
        },
        conditions={"Suspended": ("False", "Active"), "Failing": ("True", "RunFailed")},
        says={"Resumed": "resumed by alice after the failure policy suspended it: fixed the creds"},
    ),
    CareRow(
        id="the same resume token again: nothing",
        spec={"failurePolicy": {"suspendAfter": 3}},
        status=ran(
            "03:00",
            suspendedByPolicy=PAUSED,
            lastResume={"token": "r1", "at": at("02:00"), "by": "alice"},
        ),
        resume=resume("r1"),
        now=at("03:10"),
        wake=None,
        conditions={"Suspended": ("True", "FailureThreshold")},
    ),
    CareRow(
        id="a bare token (kubectl annotate) resumes too",
        spec={"failurePolicy": {"suspendAfter": 3}},
        status=ran("03:00", suspendedByPolicy=PAUSED),
        resume="2",
        now=at("03:10"),
        events=("Resumed",),
        wake=at("04:00"),
        fields={"lastResume": {"token": "2", "at": at("03:10"), "by": None, "note": None}},
    ),
    CareRow(
        id="the user's spec.suspend and the policy: the policy's reason shows, both noted",
        spec={"failurePolicy": {"suspendAfter": 3}, "suspend": True},
        status=ran("03:00", suspendedByPolicy=PAUSED),
        now=at("03:10"),
        wake=None,
        conditions={"Suspended": ("True", "FailureThreshold")},
    ),
    CareRow(
        id="resumed, but spec.suspend is the user's: still suspended",
        spec={"failurePolicy": {"suspendAfter": 3}, "suspend": True},
        status=ran("03:00", suspendedByPolicy=PAUSED),
        resume=resume("r2"),
        now=at("03:10"),
        events=("Resumed",),
        wake=None,
        conditions={"Suspended": ("True", "Suspended")},
    ),
    CareRow(
        id="after a resume, suspendAfter counts failures afresh",
        spec={"failurePolicy": {"suspendAfter": 2}},
        status=failing(5, failuresSinceResume=0, lastResume={"token": "r1", "at": at("02:50")}),
        jobs=failed_03(),
        now=at("03:06"),
        events=("RunFailed",),
        wake=at("04:00"),
        fields={"consecutiveFailures": 6, "failuresSinceResume": 1, "suspendedByPolicy": None},
    ),
]


@pytest.mark.parametrize("row", PAUSE, ids=lambda r: r.id)
def test_pause_on_failure(row: CareRow) -> None:
    decision = run_care(row)
    paused = decision.status.suspendedByPolicy
    if "FailureThreshold" in row.events:
        assert paused is not None
        assert paused.run == R03
        assert paused.since == t("03:06")
        # The message names the last failure: run, attempt, result, exit code and its message.
        assert f"run {R03} attempt 1 Failed (exit code 1): no route to host" in paused.message
        [cond] = [c for c in decision.status.conditions if c.type == "Suspended"]
        assert cond.message == paused.message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            json.dumps({"token": "t", "by": "bob", "note": "ok"}),
            care.ResumeRequest("t", "bob", "ok"),
        ),
        (json.dumps({"token": "t"}), care.ResumeRequest("t")),
        ("plain", care.ResumeRequest("plain")),
        (json.dumps({"by": "bob"}), care.ResumeRequest(json.dumps({"by": "bob"}))),
        ("", None),
        (None, None),
    ],
)
def test_read_resume(value: str | None, expected: care.ResumeRequest | None) -> None:
    assert care.read_resume(value) == expected


def test_a_long_resume_token_fits_the_status() -> None:
    request = care.read_resume(json.dumps({"token": "x" * 500, "note": "n" * 5000}))
    assert request is not None
    assert len(request.token) <= 128
    assert request.note is not None
    assert len(request.note) <= 1024


# --- deadlines ------------------------------------------------------------------------------------

DEADLINE = {"deadline": "10m"}
CHECKED = {"deadlineCheckedUntil": at("02:00")}

LATE = [
    CareRow(
        id="running, deadline ahead: wake at slot + deadline",
        spec=DEADLINE,
        status=failing(0, **CHECKED),
        jobs=(job("03:00", created=at("03:00:01")),),
        now=at("03:05"),
        wake=at("03:10"),
        conditions={"Late": ("False", "OnTime")},
    ),
    CareRow(
        id="still running at slot + deadline: Late, one Event, counted",
        spec=DEADLINE,
        status=failing(0, **CHECKED),
        jobs=(job("03:00", created=at("03:00:01")),),
        now=at("03:10"),
        events=("RunLate",),
        wake=at("04:00"),
        late=(R03,),
        fields={"deadlineCheckedUntil": R03},
        conditions={"Late": ("True", "DeadlineExceeded")},
        says={"RunLate": f"not Succeeded within 10m of the slot: run {R03} (still running)"},
    ),
    CareRow(
        id="already judged: Late stays, no second Event",
        spec=DEADLINE,
        status=failing(
            0,
            deadlineCheckedUntil=R03,
            conditions=[
                {
                    "type": "Late",
                    "status": "True",
                    "reason": "DeadlineExceeded",
                    "lastTransitionTime": at("03:10"),
                }
            ],
        ),
        jobs=(job("03:00", created=at("03:00:01")),),
        now=at("03:20"),
        wake=at("04:00"),
        conditions={"Late": ("True", "DeadlineExceeded")},
    ),
    CareRow(
        id="the next success clears Late",
        spec=DEADLINE,
        status=failing(
            0,
            deadlineCheckedUntil=R03,
            conditions=[{"type": "Late", "status": "True", "reason": "DeadlineExceeded"}],
        ),
        jobs=SUCCEEDED_03,
        now=at("03:20"),
        events=("RunSucceeded",),
        wake=at("04:00"),
        conditions={"Late": ("False", "OnTime")},
    ),
    CareRow(
        id="succeeded within the deadline: never late, the cursor moves past it",
        spec=DEADLINE,
        status=ran("03:00", runs=[rec("03:00", "Succeeded")], **CHECKED),
        now=at("03:30"),
        wake=at("04:00"),
        fields={"deadlineCheckedUntil": R03},
        conditions={"Late": ("False", "OnTime")},
    ),
    CareRow(
        id="failed with no retry left: Late at its deadline, not before",
        spec=DEADLINE,
        status=failing(0, **CHECKED),
        jobs=failed_03(),
        now=at("03:06"),
        events=("RunFailed",),
        wake=at("03:10"),
    ),
    CareRow(
        id="... and at its deadline",
        spec=DEADLINE,
        status=ran("03:00", runs=[rec("03:00", "Failed")], **CHECKED),
        now=at("03:10"),
        events=("RunLate",),
        wake=at("04:00"),
        late=(R03,),
        says={"RunLate": "(Failed)"},
    ),
    CareRow(
        id="missed slots (never started) are late: one Event for the lot",
        spec=DEADLINE | {"startingDeadlineSeconds": 60},
        status=ran("01:00", deadlineCheckedUntil=at("01:00")),
        now=at("03:30"),
        events=("MissedSlots", "RunLate"),
        wake=at("04:00"),
        late=(at("02:00"), R03),
        runs=((R03, 1, "Missed"), (at("02:00"), 1, "Missed")),
        says={"RunLate": f"run {R03} (Missed)"},
    ),
    CareRow(
        id="a slot Skipped by Forbid is excused: another run had it",
        spec=DEADLINE,
        status=ran("03:00", lastSlotTime=R04, runs=[rec("04:00", "Skipped")], **CHECKED),
        now=at("04:30"),
        wake=at("05:00"),
        fields={"deadlineCheckedUntil": R04},
    ),
    CareRow(
        id="a deadline added to a task with failures in its past: the past is not reported",
        spec=DEADLINE,
        status=ran("03:00", runs=[rec("03:00", "Failed")]),
        generation=2,
        now=at("03:30"),
        wake=at("04:00"),
        fields={"deadlineCheckedUntil": at("03:20")},
        conditions={"Late": ("False", "OnTime")},
    ),
    CareRow(
        id="a retry waiting past the deadline is late",
        spec=DEADLINE,
        status=ran(
            "03:00",
            pendingRetries=[
                {"run": R03, "attempt": 2, "notBefore": at("03:15"), "scheduledAt": R03}
            ],
            runs=[rec("03:00", "Failed")],
            **CHECKED,
        ),
        now=at("03:10"),
        events=("RunLate",),
        wake=at("03:15"),
        late=(R03,),
        says={"RunLate": "waiting to retry (attempt 2)"},
    ),
    CareRow(
        id="no deadline: no Late condition, no cursor",
        status=failing(0),
        jobs=(job("03:00", created=at("03:00:01")),),
        now=at("03:50"),
        wake=at("04:00"),
        fields={"deadlineCheckedUntil": None},
    ),
]


@pytest.mark.parametrize("row", LATE, ids=lambda r: r.id)
def test_deadlines(row: CareRow) -> None:
    decision = run_care(row)
    if "deadline" not in row.spec:
        assert all(c.type != "Late" for c in decision.status.conditions)


def test_an_idle_sync_does_not_rewrite_the_status() -> None:
    # The cursor moves only when a run's deadline passes, not with every sync's clock.
    spec = make_spec(deadline="10m")
    first = decide(task(spec, status=failing(0, **CHECKED), jobs=SUCCEEDED_03), t("03:06"))
    again = decide(task(spec, status=first.status, jobs=SUCCEEDED_03), t("03:07"))
    assert again.status == first.status


def test_late_fires_on_time_through_the_wake_up() -> None:
    spec = make_spec(deadline="90s", schedule="0 */6 * * *")
    view = task(spec, status=failing(0, **CHECKED), jobs=(job("03:00", created=at("03:00:01")),))
    decision = decide(view, t("03:00:30"))
    assert decision.wake_at == t("03:01:30")
    assert decision.late == []
    due = decide(replace(view, status=decision.status), t("03:01:30"))
    assert due.late == [R03]


# --- notifications --------------------------------------------------------------------------------

NOTIFY = {"notify": [HOOK]}


def delivered(
    change: str,
    run: str,
    sink: str = "ops",
    *,
    ok: bool = True,
    when: str = "03:07",
    round: int = 1,
) -> care.Delivery:
    key = care.notification_id(UID, run, 1, Change(change))
    return care.Delivery(key, sink, ok, t(when), "" if ok else "HTTP 500", round=round)


def waiting(change: str, run: str, *sinks: str, **more: Any) -> dict[str, Any]:
    return {
        "id": care.notification_id(UID, run, 1, Change(change)),
        "change": change,
        "run": run,
        "attempt": 1,
        "at": at("03:06"),
        "sinks": list(sinks or ["ops"]),
        **more,
    }


NOTIFICATIONS = [
    CareRow(
        id="the first failure after a success: Failing",
        spec=NOTIFY,
        status=failing(0),
        jobs=failed_03(),
        now=at("03:06"),
        events=("RunFailed",),
        wake=at("04:00"),
        notified=(("Failing", R03, ("ops",)),),
        conditions={"Notified": ("True", "AsExpected")},
    ),
    CareRow(
        id="a second failure in a row: nothing new (changes only, never every run)",
        spec=NOTIFY,
        status=failing(1),
        jobs=failed_03(),
        now=at("03:06"),
        events=("RunFailed",),
        wake=at("04:00"),
        notified=(),
    ),
    CareRow(
        id="a success after failures: Recovered",
        spec=NOTIFY,
        status=failing(2),
        jobs=SUCCEEDED_03,
        now=at("03:06"),
        events=("RunSucceeded",),
        wake=at("04:00"),
        notified=(("Recovered", R03, ("ops",)),),
    ),
    CareRow(
        id="a success after a success: nothing",
        spec=NOTIFY,
        status=failing(0),
        jobs=SUCCEEDED_03,
        now=at("03:06"),
        events=("RunSucceeded",),
        wake=at("04:00"),
        notified=(),
    ),
    CareRow(
        id="a sink that wants only Recovered is not sent Failing",
        spec={"notify": [HOOK, {"name": "chat", "url": "http://x/", "changes": ["Recovered"]}]},
        status=failing(0),
        jobs=failed_03(),
        now=at("03:06"),
        events=("RunFailed",),
        wake=at("04:00"),
        notified=(("Failing", R03, ("ops",)),),
    ),
    CareRow(
        id="no spec.notify: nothing queued, no Notified condition",
        status=failing(0),
        jobs=failed_03(),
        now=at("03:06"),
        events=("RunFailed",),
        wake=at("04:00"),
        notified=(),
    ),
    CareRow(
        id="suspended by the policy: Failing and Suspended",
        spec=NOTIFY | {"failurePolicy": {"suspendAfter": 1}},
        status=failing(0),
        jobs=failed_03(),
        now=at("03:06"),
        events=("RunFailed", "FailureThreshold"),
        wake=None,
        notified=(("Failing", R03, ("ops",)), ("Suspended", R03, ("ops",))),
    ),
    CareRow(
        id="missed slots: one Missed, about the last one",
        spec=NOTIFY | {"startingDeadlineSeconds": 60},
        status=ran("01:00"),
        now=at("03:30"),
        events=("MissedSlots",),
        wake=at("04:00"),
        notified=(("Missed", R03, ("ops",)),),
    ),
    CareRow(
        id="late: Late",
        spec=NOTIFY | DEADLINE,
        status=failing(0, **CHECKED),
        jobs=(job("03:00", created=at("03:00:01")),),
        now=at("03:10"),
        events=("RunLate",),
        wake=at("04:00"),
        late=(R03,),
        notified=(("Late", R03, ("ops",)),),
    ),
    CareRow(
        id="delivered: struck off, Notified True",
        spec=NOTIFY,
        status=ran("03:00", notifications=[waiting("Failing", R03)]),
        deliveries=(delivered("Failing", R03),),
        now=at("03:07"),
        wake=at("04:00"),
        notified=(),
        conditions={"Notified": ("True", "Delivered")},
    ),
    CareRow(
        id="delivery failed: kept with a back-off, Notified False, one Event, wake for the retry",
        spec=NOTIFY,
        status=ran("03:00", notifications=[waiting("Failing", R03)]),
        deliveries=(delivered("Failing", R03, ok=False),),
        now=at("03:07"),
        events=("NotificationFailed",),
        wake=at("03:07:05"),
        notified=(("Failing", R03, ("ops",)),),
        conditions={"Notified": ("False", "DeliveryFailed")},
        says={"NotificationFailed": "sink ops: HTTP 500"},
    ),
    CareRow(
        id="failing again: the back-off doubles, no second Event",
        spec=NOTIFY,
        status=ran(
            "03:00",
            notifications=[waiting("Failing", R03, failures=1, notBefore=at("03:07:05"))],
            conditions=[{"type": "Notified", "status": "False", "reason": "DeliveryFailed"}],
        ),
        deliveries=(delivered("Failing", R03, ok=False, when="03:07:06", round=2),),
        now=at("03:07:06"),
        wake=at("03:07:16"),
        notified=(("Failing", R03, ("ops",)),),
        conditions={"Notified": ("False", "DeliveryFailed")},
    ),
    CareRow(
        id="three sinks tried together fail, their outcomes reaching status in two syncs: the "
        "round counts once (the back-off does not grow per sink)",
        spec={"notify": [HOOK, {"name": "chat", "url": "http://x/"}]},
        status=ran(
            "03:00",
            notifications=[
                waiting("Failing", R03, "ops", "chat", failures=2, notBefore=at("03:07:10"))
            ],
            conditions=[{"type": "Notified", "status": "False", "reason": "DeliveryFailed"}],
        ),
        # The round-2 outcome of "ops" was folded already (failures=2); "chat"'s comes now.
        deliveries=(delivered("Failing", R03, "chat", ok=False, when="03:07:06", round=2),),
        now=at("03:07:06"),
        wake=at("03:07:16"),
        notified=(("Failing", R03, ("ops", "chat")),),
        conditions={"Notified": ("False", "DeliveryFailed")},
    ),
    CareRow(
        id="two sinks, one answered: only the other is tried again",
        spec={"notify": [HOOK, {"name": "chat", "url": "http://x/"}]},
        status=ran("03:00", notifications=[waiting("Failing", R03, "ops", "chat")]),
        deliveries=(
            delivered("Failing", R03, "ops"),
            delivered("Failing", R03, "chat", ok=False),
        ),
        now=at("03:07"),
        events=("NotificationFailed",),
        wake=at("03:07:05"),
        notified=(("Failing", R03, ("chat",)),),
    ),
    CareRow(
        id=f"the {care.MAX_DELIVERIES}th failure: dropped, with a Warning Event",
        spec=NOTIFY,
        status=ran(
            "03:00",
            notifications=[waiting("Failing", R03, failures=care.MAX_DELIVERIES - 1)],
            conditions=[{"type": "Notified", "status": "False", "reason": "DeliveryFailed"}],
        ),
        deliveries=(delivered("Failing", R03, ok=False, round=care.MAX_DELIVERIES),),
        now=at("03:07"),
        events=("NotificationDropped",),
        wake=at("04:00"),
        notified=(),
        says={"NotificationDropped": f"after {care.MAX_DELIVERIES} attempts: ops: HTTP 500"},
    ),
    CareRow(
        id="a sink removed from the spec is no longer owed anything",
        spec=NOTIFY,
        status=ran("03:00", notifications=[waiting("Failing", R03, "gone")]),
        now=at("03:07"),
        wake=at("04:00"),
        notified=(),
    ),
]


@pytest.mark.parametrize("row", NOTIFICATIONS, ids=lambda r: r.id)
def test_notifications(row: CareRow) -> None:
    decision = run_care(row)
    if not row.spec.get("notify"):
        assert all(c.type != "Notified" for c in decision.status.conditions)


def test_the_idempotency_key_is_task_uid_run_attempt_and_change() -> None:
    decision = decide(task(make_spec(**NOTIFY), status=failing(0), jobs=failed_03()), t("03:06"))
    [pending] = decision.status.notifications
    assert pending.id == f"{UID}/{R03}/1/Failing"
    assert pending.at == t("03:06")
    assert f"run {R03} attempt 1 Failed (exit code 1): no route to host" in pending.message
    # The same change of the same run is never queued twice, e.g. by a replayed sync.
    again = decide(
        task(make_spec(**NOTIFY), status=failing(0, notifications=[pending]), jobs=failed_03()),
        t("03:06"),
    )
    assert [n.id for n in again.status.notifications] == [pending.id]


def test_pending_notifications_are_bounded() -> None:
    queued = [
        PendingNotification.model_validate(waiting("Failing", at(f"{h:02d}:00")))
        for h in range(care.MAX_PENDING)
    ]
    oldest = queued[0]
    dropped = care.queue_notification(
        queued,
        make_spec(**NOTIFY).notify or [],
        uid=UID,
        change=Change.LATE,
        run=R03,
        attempt=1,
        at=t("23:00"),
        message="late",
    )
    assert dropped == oldest
    assert len(queued) == care.MAX_PENDING


@pytest.mark.parametrize(
    ("failures", "delay"), [(1, 5), (2, 10), (3, 20), (7, 320), (8, 600), (40, 600)]
)
def test_delivery_backoff(failures: int, delay: int) -> None:
    assert care.delivery_backoff(failures) == timedelta(seconds=delay)


@pytest.mark.parametrize(
    ("sink", "field"),
    [
        ({"name": "a"}, "spec.notify[0]: set url or secretRef"),
        ({"name": "a", "url": "http://x", "secretRef": {"name": "s"}}, "spec.notify[0]: set at"),
        ({"name": "a", "url": "ftp://x"}, "spec.notify[0].url: must be an http:// or https://"),
        ({"name": "a", "url": "http://x", "mode": "Binary"}, "spec.notify[0]: mode is only"),
        ({"name": "a", "url": "http://x", "timeout": "5m"}, "spec.notify[0].timeout: must be"),
        ({"name": "A", "url": "http://x"}, "spec.notify[0].name:"),
        ({"name": "a", "url": "http://x", "changes": ["Sometimes"]}, "spec.notify[0].changes[0]"),
    ],
)
def test_invalid_sinks_are_rejected_naming_the_field(sink: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as caught:
        make_spec(notify=[sink])
    assert str(caught.value).startswith(field), str(caught.value)


def test_sink_names_must_be_unique() -> None:
    with pytest.raises(SpecError, match=r"^spec.notify: sink names must be unique \(repeated: a\)"):
        make_spec(notify=[{"name": "a", "url": "http://x"}, {"name": "a", "url": "http://y"}])


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"deadline": "0s"}, "spec.deadline:"),
        ({"deadline": "40d"}, "spec.deadline: must be between 1s and 31d"),
        ({"failurePolicy": {"suspendAfter": 0}}, "spec.failurePolicy.suspendAfter:"),
    ],
)
def test_invalid_policy_fields_name_the_field(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as caught:
        make_spec(**fields)
    assert str(caught.value).startswith(message)


# --- next fire times in status --------------------------------------------------------------------

NEXT = [
    CareRow(
        id="the next three fire times",
        status=ran("02:00"),
        now=at("02:30"),
        wake=at("03:00"),
        fields={"nextScheduleTimes": [at("03:00"), at("04:00"), at("05:00")]},
    ),
    CareRow(
        id="after a fire: the following three",
        status=ran("02:00"),
        now=at("03:00:05"),
        creates=(J03,),
        events=("RunStarted",),
        wake=at("04:00"),
        fields={"nextScheduleTimes": [at("04:00"), at("05:00"), at("06:00")]},
    ),
    CareRow(
        id="maxRuns leaves fewer",
        spec={"maxRuns": 3},
        status=ran("02:00", runCount=2),
        now=at("02:30"),
        wake=at("03:00"),
        fields={"nextScheduleTimes": [at("03:00")]},
    ),
    CareRow(
        id="suspended: none",
        spec={"suspend": True},
        status=ran("02:00"),
        now=at("02:30"),
        wake=None,
        fields={"nextScheduleTimes": []},
    ),
]


@pytest.mark.parametrize("row", NEXT, ids=lambda r: r.id)
def test_next_schedule_times(row: CareRow) -> None:
    decision = run_care(row)
    if decision.status.nextScheduleTimes:
        assert decision.status.nextScheduleTime == decision.status.nextScheduleTimes[0]


def test_an_invalid_spec_shows_no_next_times() -> None:
    view = task(
        None,
        status={"nextScheduleTimes": [at("03:00")]},
        spec_error=SpecError("spec.timeZone", "unknown time zone 'Mars/Olympus'"),
    )
    assert decide(view, t("02:00")).status.nextScheduleTimes == []
