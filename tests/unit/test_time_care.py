"""Issues 14 and 15 together: where the runs that look after themselves (failure policy,
deadlines, Kueue, shards) meet several schedules, calendars, ``concurrencyPolicy: Queue`` and
Backfills. Rows in the style of test_reconcile.py and test_queue.py.

The task is the hourly ``school/sync-ics`` of test_reconcile.py.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
import test_backfill as bf
from test_queue import QUEUE, queued
from test_reconcile import (
    J03,
    J04,
    Row,
    active,
    at,
    job,
    name_of,
    ran,
    record,
    run_rows,
    t,
    view_of,
)

from nightshift import care
from nightshift.jobs import CRONJOB_SCHEDULED_TIMESTAMP, LABEL_BUCKET
from nightshift.models import ActiveRun, QueuedRun, RunRecord, RunResult
from nightshift.reconcile import decide
from nightshift.sharding import bucket

PAUSE = {**QUEUE, "failurePolicy": {"suspendAfter": 2}}
MANUAL = "manual-ba7816bf8f"

ROWS = [
    Row(
        id="Queue + failurePolicy: the failure that suspends the task drops the queued slot",
        spec=PAUSE,
        status=ran(
            "03:00",
            lastSlotTime=at("04:00"),
            active=[active("03:00")],
            queued=queued("04:00", "04:00:05"),
            consecutiveFailures=1,
            failuresSinceResume=1,
        ),
        jobs=(job("03:00", finished="Failed", finished_at=at("04:20"), exit_code=1),),
        now=at("04:20:01"),
        events=("RunFailed", "FailureThreshold", "RunSkipped"),
        runs=((at("04:00"), 1, "Skipped"), (at("03:00"), 1, "Failed")),
        fields={"queued": None, "runCount": 1, "failuresSinceResume": 2},
        conditions={"Suspended": ("True", "FailureThreshold"), "Running": ("False", "Idle")},
        says={"RunSkipped": "the failure policy suspended the task while it was queued"},
    ),
    Row(
        id="Queue + failurePolicy: below the threshold the queued slot starts as usual",
        spec=PAUSE,
        status=ran(
            "03:00",
            lastSlotTime=at("04:00"),
            active=[active("03:00")],
            queued=queued("04:00", "04:00:05"),
        ),
        jobs=(job("03:00", finished="Failed", finished_at=at("04:20"), exit_code=1),),
        now=at("04:20:01"),
        creates=(J04,),
        events=("RunFailed", "RunStarted"),
        wake=at("05:00"),
        active=(J04,),
        fields={"queued": None, "runCount": 2, "failuresSinceResume": 1},
        conditions={"Suspended": ("False", "Active")},
    ),
    Row(
        id="Queue + failurePolicy: a queued run-now request still runs once the task is suspended",
        spec={**QUEUE, "failurePolicy": {"suspendAfter": 1}},
        status=ran(
            "03:00",
            active=[active("03:00")],
            runNowToken="abc",
            queued={"run": MANUAL, "queuedAt": at("03:20"), "runNowToken": "abc"},
        ),
        jobs=(job("03:00", finished="Failed", finished_at=at("03:30"), exit_code=1),),
        run_now="abc",
        now=at("03:30:01"),
        creates=(name_of(MANUAL),),
        events=("RunFailed", "FailureThreshold", "RunStarted"),
        active=(name_of(MANUAL),),
        fields={"queued": None, "runCount": 1},
        conditions={"Suspended": ("True", "FailureThreshold")},
    ),
    Row(
        id="Queue + spec.suspend (the user's switch): the queued slot still starts, like a retry",
        spec={**QUEUE, "suspend": True},
        status=ran(
            "03:00",
            lastSlotTime=at("04:00"),
            active=[active("03:00")],
            queued=queued("04:00", "04:00:05"),
        ),
        jobs=(job("03:00", finished="Succeeded", finished_at=at("04:20")),),
        now=at("04:20:01"),
        creates=(J04,),
        events=("RunSucceeded", "RunStarted"),
        active=(J04,),
        fields={"queued": None, "runCount": 2},
        conditions={"Suspended": ("True", "Suspended")},
    ),
    Row(
        id="Queue + a Job Kueue holds: it is the active run, the next slot waits behind it",
        spec=QUEUE,
        status=ran("03:00", active=[{**active("03:00"), "queued": True}]),
        jobs=(replace(job("03:00"), suspended=True),),
        now=at("04:00:05"),
        events=("RunQueued",),
        wake=at("05:00"),
        active=(J03,),
        fields={"queued": queued("04:00", "04:00:05")},
        conditions={"Running": ("True", "Queued")},
    ),
    Row(
        id="Queue + deadline: a run waiting in status.queued is Late once its slot is that old",
        spec={**QUEUE, "deadline": "30m"},
        status=ran(
            "03:00",
            lastSlotTime=at("04:00"),
            active=[active("03:00")],
            queued=queued("04:00", "04:00:05"),
            deadlineCheckedUntil=at("03:00"),
        ),
        jobs=(job("03:00"),),
        now=at("04:30:01"),
        events=("RunLate",),
        wake=at("05:00"),
        active=(J03,),
        fields={"deadlineCheckedUntil": at("04:00"), "queued": queued("04:00", "04:00:05")},
        conditions={"Late": ("True", "DeadlineExceeded")},
        says={"RunLate": "queued behind the active run (concurrencyPolicy Queue)"},
    ),
    Row(
        id="Excluded + deadline: a slot the calendar skipped is never Late",
        spec={"deadline": "10m", "exclude": [{"cron": "0 4 * * *", "reason": "backups"}]},
        status=ran("03:00", runs=[record("03:00", "Succeeded")], deadlineCheckedUntil=at("03:00")),
        now=at("04:20"),
        events=("RunExcluded",),
        wake=at("05:00"),
        runs=((at("04:00"), 1, "Excluded"), (at("03:00"), 1, "Succeeded")),
        fields={"deadlineCheckedUntil": at("04:00")},
        conditions={"Late": ("False", "OnTime")},
    ),
    Row(
        id="Excluded + failurePolicy + notify: an excluded slot is no failure and no news",
        spec={
            "failurePolicy": {"suspendAfter": 1},
            "notify": [{"name": "ops", "url": "http://hooks.example/x"}],
            "exclude": [{"cron": "0 4 * * *"}],
        },
        status=ran("03:00", runs=[record("03:00", "Succeeded")]),
        now=at("04:00:05"),
        events=("RunExcluded",),
        wake=at("05:00"),
        fields={"failuresSinceResume": 0, "suspendedByPolicy": None, "notifications": []},
        conditions={"Suspended": ("False", "Active"), "Failing": ("False", "AsExpected")},
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_issues_14_and_15_together(row: Row) -> None:
    run_rows(row)


def test_next_schedule_times_pass_over_excluded_slots_of_several_schedules() -> None:
    row = Row(
        id="several schedules and an exclusion",
        spec={
            "schedule": None,
            "schedules": [{"cron": "0 * * * *"}, {"cron": "30 5 * * *"}],
            "exclude": [{"cron": "0 5 * * *"}],
        },
        status=ran("03:00", runs=[record("03:00", "Succeeded")]),
        now=at("03:10"),
    )
    decision = decide(view_of(row), t("03:10"))
    assert [x.strftime("%H:%M") for x in decision.status.nextScheduleTimes] == [
        "04:00",
        "05:30",  # 05:00 is excluded; 05:30 is the second entry's
        "06:00",
    ]


def test_judge_deadline_excuses_excluded_slots_and_judges_the_queued_run() -> None:
    slot = t("03:00")
    runs = [RunRecord(run=at("03:00"), scheduledAt=slot, result=RunResult.EXCLUDED)]
    waiting = QueuedRun(run=at("04:00"), scheduledAt=t("04:00"), queuedAt=t("04:00:05"))
    held = ActiveRun(run=at("02:00"), attempt=1, job="j", scheduledAt=t("02:00"), queued=True)
    judged = care.judge_deadline(
        timedelta(minutes=5),
        t("01:00"),
        fresh=False,
        active=[held],
        pending=[],
        runs=runs,
        now=t("04:10"),
        queued=waiting,
    )
    assert judged.late == (
        (at("02:00"), "held by its queue (Kueue)"),
        (at("04:00"), "queued behind the active run (concurrencyPolicy Queue)"),
    )
    assert judged.cursor == t("04:00")


def test_a_backfill_job_carries_the_tasks_kueue_labels_bucket_and_cronjob_timestamp() -> None:
    labels = {
        "kueue.x-k8s.io/queue-name": "team-a",
        "kueue.x-k8s.io/priority-class": "nightly",
        "team": "data",  # the task's own: not copied
    }
    task = replace(bf.facts(), labels=labels)
    status = bf.planned(("03:00", "Pending", 1))
    decision = bf.decide_backfill(bf.view(status, task=task), bf.at("10:31"))
    meta = decision.create[0].manifest["metadata"]
    assert meta["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    assert meta["labels"]["kueue.x-k8s.io/priority-class"] == "nightly"
    assert "team" not in meta["labels"]
    # The task's shard bucket: with shards, the shard that holds the task sees its Backfill's Jobs.
    assert meta["labels"][LABEL_BUCKET] == str(bucket(bf.TASK_UID))
    assert meta["annotations"][CRONJOB_SCHEDULED_TIMESTAMP] == "2026-03-01T03:00:00Z"
