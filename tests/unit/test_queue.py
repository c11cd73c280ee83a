"""``concurrencyPolicy: Queue`` (Temporal's BufferOne): rows in the style of test_reconcile.py.

The task is the same hourly ``school/sync-ics``; a slot that comes due while a run is active waits
in ``status.queued`` and starts as soon as that run ends (retries included); at most one waits.
"""

from __future__ import annotations

from typing import Any

import pytest
from test_reconcile import Row, active, at, job, name_of, ran, record, run_rows

J03 = "sync-ics-20260301030000-1"
J04 = "sync-ics-20260301040000-1"
QUEUE = {"concurrencyPolicy": "Queue"}


def queued(slot: str, since: str) -> dict[str, Any]:
    return {"run": at(slot), "scheduledAt": at(slot), "queuedAt": at(since), "runNowToken": None}


ROWS = [
    Row(
        id="idle: a due slot starts at once",
        spec=QUEUE,
        status=ran("03:00"),
        now=at("04:00:01"),
        creates=(J04,),
        events=("RunStarted",),
        wake=at("05:00"),
        fields={"queued": None},
    ),
    Row(
        id="busy: the due slot is queued, not skipped",
        spec=QUEUE,
        status=ran("03:00", active=[active("03:00")]),
        jobs=(job("03:00"),),
        now=at("04:00:05"),
        events=("RunQueued",),
        wake=at("05:00"),
        active=(J03,),
        runs=(),
        fields={
            "queued": queued("04:00", "04:00:05"),
            "lastSlotTime": at("04:00"),
            "lastScheduleTime": at("03:00"),
            "runCount": 1,
        },
        says={"RunQueued": f"run {at('03:00')} still active"},
    ),
    Row(
        id="the queued run starts as soon as the active one ends",
        spec=QUEUE,
        status=ran("03:00", active=[active("03:00")], queued=queued("04:00", "04:00:05")),
        jobs=(job("03:00", finished="Succeeded", finished_at=at("04:20")),),
        now=at("04:20:01"),
        creates=(J04,),
        events=("RunSucceeded", "RunStarted"),
        wake=at("05:00"),
        active=(J04,),
        fields={"queued": None, "runCount": 2, "lastScheduleTime": at("04:00")},
        says={"RunStarted": f"queued at {at('04:00:05').replace('Z', '+00:00')}"},
    ),
    Row(
        id="never more than one waits: a further slot is Skipped",
        spec=QUEUE,
        status=ran(
            "03:00",
            lastSlotTime=at("04:00"),
            active=[active("03:00")],
            queued=queued("04:00", "04:00:05"),
        ),
        jobs=(job("03:00"),),
        now=at("05:00:05"),
        events=("RunSkipped",),
        wake=at("06:00"),
        runs=((at("05:00"), 1, "Skipped"),),
        fields={"queued": queued("04:00", "04:00:05"), "lastSlotTime": at("05:00")},
        says={"RunSkipped": f"run {at('04:00')} is already queued"},
    ),
    Row(
        id="a run waiting for its retry is still running: the queued one waits",
        spec={**QUEUE, "retry": {"maxRetries": 1, "backoff": {"initial": "10s", "jitter": False}}},
        status=ran("03:00", active=[active("03:00")], queued=queued("04:00", "04:00:05")),
        jobs=(job("03:00", finished="Failed", finished_at=at("04:10"), exit_code=1),),
        now=at("04:10:01"),
        events=("RetryScheduled",),
        wake=at("04:10:10"),
        pending=((at("03:00"), 2, at("04:10:10")),),
        fields={"queued": queued("04:00", "04:00:05")},
    ),
    Row(
        id="the queued run's Job created before a restart is adopted, not created again",
        spec=QUEUE,
        status=ran(
            "03:00",
            lastSlotTime=at("04:00"),
            queued=queued("04:00", "04:00:05"),
            runs=[record("03:00", "Succeeded")],
        ),
        jobs=(job("03:00", finished="Succeeded"), job("04:00", created=at("04:20"))),
        now=at("04:20:05"),
        wake=at("05:00"),
        active=(J04,),
        fields={"queued": None, "runCount": 2, "lastScheduleTime": at("04:00")},
    ),
    Row(
        id="a run-now request while busy is queued too, with its token",
        spec=QUEUE,
        status=ran("03:00", active=[active("03:00")]),
        jobs=(job("03:00"),),
        run_now="abc",
        now=at("03:20"),
        events=("RunQueued",),
        wake=at("04:00"),
        fields={
            "queued": {
                "run": "manual-ba7816bf8f",
                "scheduledAt": None,
                "queuedAt": at("03:20"),
                "runNowToken": "abc",
            },
            "runNowToken": "abc",
        },
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_queue(row: Row) -> None:
    run_rows(row)


def test_a_queued_run_now_request_starts_with_its_token() -> None:
    row = Row(
        id="queued manual run starts",
        spec=QUEUE,
        status=ran(
            "03:00",
            active=[active("03:00")],
            runNowToken="abc",
            queued={"run": "manual-ba7816bf8f", "queuedAt": at("03:20"), "runNowToken": "abc"},
        ),
        jobs=(job("03:00", finished="Succeeded", finished_at=at("03:30")),),
        run_now="abc",
        now=at("03:30:01"),
        creates=(name_of("manual-ba7816bf8f"),),
        events=("RunSucceeded", "RunStarted"),
        wake=at("04:00"),
        fields={"queued": None, "runCount": 1},
    )
    decision = run_rows(row)
    annotations = decision.create[0].manifest["metadata"]["annotations"]
    assert annotations["nightshift.dev/run-now"] == "abc"
