"""Tables for ``nightshift.store``: what the operator remembers of tasks and Jobs, and which task
each watch event or resync asks to sync.

Each row feeds events into a fresh :class:`~nightshift.store.Store` and states, per event, the key
it returns (or None), then what the store holds afterwards: every task's uid and resourceVersion,
and the names of its Jobs. Bodies are the few fields the store reads; every value is written out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from nightshift.store import RESYNC, Key, Store

NS = "school"
KEY: Key = (NS, "t")


def task(rv: int, *, uid: str = "u1", name: str = "t", status: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {"namespace": NS, "name": name, "uid": uid, "resourceVersion": str(rv)},
        "spec": {"schedule": "0 * * * *"},
    }
    if status is not None:
        body["status"] = status
    return body


def job(
    name: str,
    rv: int,
    *,
    owner: str = "t",
    owner_uid: str = "u1",
    uid: str | None = None,
    finished: str | None = None,
    controller: bool = True,
    kind: str = "ScheduledTask",
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {
            "namespace": NS,
            "name": name,
            "uid": uid or f"job-{name}",
            "resourceVersion": str(rv),
            "creationTimestamp": "2026-03-01T03:00:01Z",
            "annotations": {
                "nightshift.dev/run": "2026-03-01T03:00:00Z",
                "nightshift.dev/attempt": "1",
            },
            "ownerReferences": [
                {"kind": kind, "name": owner, "uid": owner_uid, "controller": controller}
            ],
        },
        "status": {},
    }
    if finished:
        body["status"] = {
            "conditions": [
                {
                    "type": finished,
                    "status": "True",
                    "lastTransitionTime": "2026-03-01T03:05:00Z",
                }
            ]
        }
    return body


Step = tuple[str, str | None, dict[str, Any], Key | None]  # ("task" | "job", kind, body, returns)


@dataclass(frozen=True)
class Row:
    id: str
    steps: tuple[Step, ...]
    tasks: dict[str, tuple[str, int]]  # name: (uid, resourceVersion)
    jobs: dict[str, tuple[str, ...]] | None = None  # name: its Jobs' names (None: no check)


def feed(store: Store, steps: tuple[Step, ...]) -> list[Key | None]:
    out: list[Key | None] = []
    for resource, kind, body, _ in steps:
        if resource == "task":
            out.append(store.task_event(kind, body))
        else:
            out.append(store.job_event(kind, body))
    return out


def held(store: Store) -> tuple[dict[str, tuple[str, int]], dict[str, tuple[str, ...]]]:
    tasks = {key[1]: (e.uid, e.rv) for key, e in store.entries.items()}
    jobs = {key[1]: tuple(sorted(e.jobs)) for key, e in store.entries.items()}
    return tasks, jobs


TASK_ROWS = [
    Row(
        id="listed by kopf (kind None): stored and synced",
        steps=(("task", None, task(10), KEY),),
        tasks={"t": ("u1", 10)},
    ),
    Row(
        id="a newer version replaces the stored one",
        steps=(("task", "ADDED", task(10), KEY), ("task", "MODIFIED", task(12), KEY)),
        tasks={"t": ("u1", 12)},
    ),
    Row(
        id="out of order: an older event after a newer one (our own write came back first) is "
        "ignored",
        steps=(
            ("task", "ADDED", task(10), KEY),
            ("task", "MODIFIED", task(12), KEY),
            ("task", "MODIFIED", task(11), None),
        ),
        tasks={"t": ("u1", 12)},
    ),
    Row(
        id="resync of an unchanged task: nothing to sync",
        steps=(("task", "ADDED", task(10), KEY), ("task", RESYNC, task(10), None)),
        tasks={"t": ("u1", 10)},
    ),
    Row(
        id="resync of a newer version (an event the watch missed): synced",
        steps=(("task", "ADDED", task(10), KEY), ("task", RESYNC, task(14), KEY)),
        tasks={"t": ("u1", 14)},
    ),
    Row(
        id="resync older than what the watch said: ignored",
        steps=(("task", "ADDED", task(10), KEY), ("task", RESYNC, task(9), None)),
        tasks={"t": ("u1", 10)},
    ),
    Row(
        id="a resync of a task first seen in the list: stored and synced",
        steps=(("task", RESYNC, task(10), KEY),),
        tasks={"t": ("u1", 10)},
    ),
    Row(
        id="deleted: forgotten, nothing to sync",
        steps=(("task", "ADDED", task(10), KEY), ("task", "DELETED", task(11), None)),
        tasks={},
    ),
    Row(
        id="namesake: re-created under the same name (new uid) replaces the old task, "
        "without its Jobs",
        steps=(
            ("task", "ADDED", task(10), KEY),
            ("job", "ADDED", job("t-1", 11), KEY),
            ("task", "ADDED", task(20, uid="u2"), KEY),
        ),
        tasks={"t": ("u2", 20)},
        jobs={"t": ()},
    ),
    Row(
        id="namesake: the old task's Job after the new task arrived is kept apart (an orphan)",
        steps=(
            ("task", "ADDED", task(20, uid="u2"), KEY),
            ("job", "MODIFIED", job("t-1", 21, owner_uid="u1"), None),
        ),
        tasks={"t": ("u2", 20)},
        jobs={"t": ()},
    ),
    Row(
        id="namesake: the deleted task's older version from a resync page (listed before the "
        "re-creation) does not replace the new task",
        steps=(
            ("task", "ADDED", task(10), KEY),
            ("task", "DELETED", task(19), None),
            ("task", "ADDED", task(20, uid="u2"), KEY),
            ("task", RESYNC, task(10), None),
        ),
        tasks={"t": ("u2", 20)},
    ),
    Row(
        id="Jobs before their task (a list's order): adopted when the task arrives",
        steps=(
            ("job", None, job("t-1", 8), None),
            ("job", None, job("t-2", 9), None),
            ("task", None, task(10), KEY),
        ),
        tasks={"t": ("u1", 10)},
        jobs={"t": ("t-1", "t-2")},
    ),
    Row(
        id="an orphan Job deleted before its task arrives is not adopted",
        steps=(
            ("job", "ADDED", job("t-1", 8), None),
            ("job", "ADDED", job("t-2", 9), None),
            ("job", "DELETED", job("t-1", 10), None),
            ("task", "ADDED", task(11), KEY),
        ),
        tasks={"t": ("u1", 11)},
        jobs={"t": ("t-2",)},
    ),
    Row(
        id="orphans of another uid are not adopted by a namesake",
        steps=(
            ("job", "ADDED", job("t-1", 8, owner_uid="u0"), None),
            ("task", None, task(10), KEY),
        ),
        tasks={"t": ("u1", 10)},
        jobs={"t": ()},
    ),
    Row(
        id="a Job of a known task: synced; the same Job again (only its rv moved): not synced",
        steps=(
            ("task", "ADDED", task(10), KEY),
            ("job", "ADDED", job("t-1", 11), KEY),
            ("job", "MODIFIED", job("t-1", 12), None),
            ("job", RESYNC, job("t-1", 12), None),
        ),
        tasks={"t": ("u1", 10)},
        jobs={"t": ("t-1",)},
    ),
    Row(
        id="a Job that finished: synced",
        steps=(
            ("task", "ADDED", task(10), KEY),
            ("job", "ADDED", job("t-1", 11), KEY),
            ("job", "MODIFIED", job("t-1", 12, finished="Failed"), KEY),
        ),
        tasks={"t": ("u1", 10)},
        jobs={"t": ("t-1",)},
    ),
    Row(
        id="a Job deleted: dropped and synced",
        steps=(
            ("task", "ADDED", task(10), KEY),
            ("job", "ADDED", job("t-1", 11), KEY),
            ("job", "DELETED", job("t-1", 12), KEY),
        ),
        tasks={"t": ("u1", 10)},
        jobs={"t": ()},
    ),
    Row(
        id="out of order: a resync page older than the watch event that finished the Job does "
        "not make it unfinished",
        steps=(
            ("task", "ADDED", task(10), KEY),
            ("job", "ADDED", job("t-1", 11), KEY),
            ("job", "MODIFIED", job("t-1", 12, finished="Failed"), KEY),
            ("job", RESYNC, job("t-1", 11), None),
        ),
        tasks={"t": ("u1", 10)},
        jobs={"t": ("t-1",)},
    ),
    Row(
        id="a Job no ScheduledTask controls: ignored",
        steps=(
            ("task", "ADDED", task(10), KEY),
            ("job", "ADDED", job("t-1", 11, controller=False), None),
            ("job", "ADDED", job("t-2", 12, kind="CronJob"), None),
        ),
        tasks={"t": ("u1", 10)},
        jobs={"t": ()},
    ),
]


@pytest.mark.parametrize("row", TASK_ROWS, ids=lambda r: r.id)
def test_events(row: Row) -> None:
    store = Store()
    returned = feed(store, row.steps)
    assert returned == [step[3] for step in row.steps]
    tasks, jobs = held(store)
    assert tasks == row.tasks
    if row.jobs is not None:
        assert jobs == row.jobs


def test_an_older_resync_page_leaves_a_finished_job_finished() -> None:
    store = Store()
    store.task_event("ADDED", task(10))
    store.job_event("MODIFIED", job("t-1", 12, finished="Failed"))
    store.job_event(RESYNC, job("t-1", 11))
    assert store.entries[KEY].jobs["t-1"].finished == "Failed"


# --- a Job's pod outcome ----------------------------------------------------------------------


def test_outcome_is_kept_across_job_events_of_the_same_job() -> None:
    store = Store()
    store.task_event("ADDED", task(10))
    store.job_event("ADDED", job("t-1", 11, finished="Failed"))
    record = store.entries[KEY].jobs["t-1"]
    store.set_outcome(KEY, record, (3, "bad input"))
    # A later event of the same finished Job (a label changed, a resync) keeps what was read.
    assert store.job_event("MODIFIED", job("t-1", 12, finished="Failed")) is None
    assert store.entries[KEY].jobs["t-1"].outcome == (3, "bad input")
    assert store.entries[KEY].jobs["t-1"].view().exit_code == 3


def test_outcome_is_not_inherited_by_a_namesake_job() -> None:
    store = Store()
    store.task_event("ADDED", task(10))
    store.job_event("ADDED", job("t-1", 11, finished="Failed"))
    old = store.entries[KEY].jobs["t-1"]
    store.set_outcome(KEY, old, (3, None))
    assert store.job_event("MODIFIED", job("t-1", 13, uid="other", finished="Failed")) == KEY
    assert store.entries[KEY].jobs["t-1"].outcome is None
    store.set_outcome(KEY, old, (4, None))  # read for the old Job: not the namesake's
    assert store.entries[KEY].jobs["t-1"].outcome is None


def test_job_created_records_without_the_watch_and_never_overwrites() -> None:
    store = Store()
    store.task_event("ADDED", task(10))
    store.job_created(KEY, job("t-1", 11))
    assert store.entries[KEY].jobs["t-1"].uid == "job-t-1"
    store.job_created(KEY, job("t-1", 12, uid="later"))
    assert store.entries[KEY].jobs["t-1"].uid == "job-t-1"
    store.job_created(("school", "unknown"), job("x-1", 13))  # no such task: nothing
    assert set(store.entries) == {KEY}


@pytest.mark.parametrize(
    ("returned", "same_entry", "rv"),
    [
        pytest.param(12, True, 12, id="our write came back newer: taken"),
        pytest.param(9, True, 10, id="older than what a watch delivered meanwhile: ignored"),
        pytest.param(12, False, 10, id="for an entry since replaced (namesake): ignored"),
    ],
)
def test_stored(returned: int, same_entry: bool, rv: int) -> None:
    store = Store()
    store.task_event("ADDED", task(10))
    entry = store.entries[KEY]
    if not same_entry:
        store.task_event("ADDED", task(10, uid="u2"))
    store.stored(KEY, entry, task(returned, status={"runCount": 1}))
    assert store.entries[KEY].rv == rv


# --- resync -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResyncRow:
    """Events ``before`` the list begins (the mark), events ``during`` it, then what it listed."""

    id: str
    before: tuple[Step, ...]
    during: tuple[Step, ...]
    listed_tasks: tuple[tuple[str, str], ...]  # (name, uid)
    listed_jobs: tuple[str, ...]
    gone_tasks: tuple[str, ...]
    changed: tuple[str, ...]
    gone_jobs: int
    tasks: dict[str, tuple[str, int]]
    jobs: dict[str, tuple[str, ...]]


RESYNC_ROWS = [
    ResyncRow(
        id="everything listed: nothing forgotten",
        before=(("task", None, task(10), KEY), ("job", None, job("t-1", 11), KEY)),
        during=(),
        listed_tasks=(("t", "u1"),),
        listed_jobs=("t-1",),
        gone_tasks=(),
        changed=(),
        gone_jobs=0,
        tasks={"t": ("u1", 10)},
        jobs={"t": ("t-1",)},
    ),
    ResyncRow(
        id="a task deleted while the watch was down: forgotten with its Jobs",
        before=(
            ("task", None, task(10), KEY),
            ("job", None, job("t-1", 11), KEY),
            ("task", None, task(12, name="other", uid="u9"), ("school", "other")),
        ),
        during=(),
        listed_tasks=(("other", "u9"),),
        listed_jobs=(),
        gone_tasks=("t",),
        changed=(),
        gone_jobs=0,
        tasks={"other": ("u9", 12)},
        jobs={"other": ()},
    ),
    ResyncRow(
        id="a task created while the list ran (heard of after the mark): kept",
        before=(),
        during=(("task", "ADDED", task(10), KEY),),
        listed_tasks=(),
        listed_jobs=(),
        gone_tasks=(),
        changed=(),
        gone_jobs=0,
        tasks={"t": ("u1", 10)},
        jobs={"t": ()},
    ),
    ResyncRow(
        id="a task last heard of before the mark but modified during the list: kept",
        before=(("task", None, task(10), KEY),),
        during=(("task", "MODIFIED", task(13), KEY),),
        listed_tasks=(),
        listed_jobs=(),
        gone_tasks=(),
        changed=(),
        gone_jobs=0,
        tasks={"t": ("u1", 13)},
        jobs={"t": ()},
    ),
    ResyncRow(
        id="the list shows a namesake (another uid): the old task is forgotten",
        before=(("task", None, task(10), KEY),),
        during=(),
        listed_tasks=(("t", "u2"),),
        listed_jobs=(),
        gone_tasks=("t",),
        changed=(),
        gone_jobs=0,
        tasks={},
        jobs={},
    ),
    ResyncRow(
        id="a Job deleted while the watch was down: dropped, and its task synced",
        before=(
            ("task", None, task(10), KEY),
            ("job", None, job("t-1", 11), KEY),
            ("job", None, job("t-2", 12), KEY),
        ),
        during=(),
        listed_tasks=(("t", "u1"),),
        listed_jobs=("t-2",),
        gone_tasks=(),
        changed=("t",),
        gone_jobs=1,
        tasks={"t": ("u1", 10)},
        jobs={"t": ("t-2",)},
    ),
    ResyncRow(
        id="a Job created while the list ran: kept",
        before=(("task", None, task(10), KEY),),
        during=(("job", "ADDED", job("t-1", 11), KEY),),
        listed_tasks=(("t", "u1"),),
        listed_jobs=(),
        gone_tasks=(),
        changed=(),
        gone_jobs=0,
        tasks={"t": ("u1", 10)},
        jobs={"t": ("t-1",)},
    ),
]


def lists_done(
    store: Store, mark: int, tasks: set[tuple[str, str, str]], jobs: set[tuple[str, str]]
) -> tuple[list[Key], list[Key], int]:
    """What the controller does when the task list, then the Job list, begun at ``mark`` end."""
    gone = store.tasks_listed(mark, tasks)
    for key in gone:
        store.forget(key)
    changed, dropped = store.jobs_listed(mark, jobs)
    return gone, changed, dropped


@pytest.mark.parametrize("row", RESYNC_ROWS, ids=lambda r: r.id)
def test_resync(row: ResyncRow) -> None:
    store = Store()
    assert feed(store, row.before) == [s[3] for s in row.before]
    mark = store.tick()
    assert feed(store, row.during) == [s[3] for s in row.during]
    gone, changed, dropped = lists_done(
        store,
        mark,
        {(NS, name, uid) for name, uid in row.listed_tasks},
        {(NS, name) for name in row.listed_jobs},
    )
    assert tuple(k[1] for k in gone) == row.gone_tasks
    assert tuple(k[1] for k in changed) == row.changed
    assert dropped == row.gone_jobs
    assert held(store) == (row.tasks, row.jobs)


@pytest.mark.parametrize(
    ("owner_listed", "adopted"),
    [
        pytest.param(False, (), id="orphans of a task the list lacks: forgotten"),
        pytest.param(True, ("t-1",), id="orphans of a listed task: kept for it"),
    ],
)
def test_resync_orphans(owner_listed: bool, adopted: tuple[str, ...]) -> None:
    store = Store()
    store.job_event(None, job("t-1", 8))
    mark = store.tick()
    listed = {(NS, "t", "u1")} if owner_listed else set()
    lists_done(store, mark, listed, {(NS, "t-1")})
    store.task_event("ADDED", task(10))
    assert tuple(store.entries[KEY].jobs) == adopted
