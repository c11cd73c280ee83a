"""The operator's memory of the cluster: every task's latest object and the facts of its Jobs.

Watch events and resync lists feed it; each returns the task to sync, if any. It does no I/O and
holds no clock: the sync reads it, and an ordering counter (``tick``) tells a list that is older
than an event from one that is newer, so a resync only forgets what nothing has mentioned since
the list began.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from nightshift.jobs import (
    ANNOTATION_BACKFILL,
    ANNOTATION_BACKFILL_UID,
    ANNOTATION_RUN_NOW,
    ANNOTATION_SLOT,
    job_identity,
)
from nightshift.models import KIND, read_time
from nightshift.reconcile import JobView

__all__ = [
    "RESYNC",
    "Calendars",
    "Entry",
    "JobRecord",
    "Key",
    "Store",
    "calendar_ref",
    "resource_version",
]

Key = tuple[str, str]  # (namespace, name)
RESYNC = "RESYNC"  # the kind of the events a resync feeds in
Outcome = tuple[int | None, str | None]  # exit code, termination message


def resource_version(obj: dict[str, Any]) -> int:
    """An object's resourceVersion as a number (0 when absent or not a number).

    Kubernetes calls resourceVersions opaque, but etcd-backed ones are its revision, which only
    grows: comparing them is how an event older than our own write is recognised.
    """
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


def _finished(job: dict[str, Any]) -> tuple[Any, str | None, datetime | None]:
    """("Succeeded" | "Failed" | None, reason, finish time) from a Job's terminal condition."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") == "Complete":
            return "Succeeded", cond.get("reason"), read_time(cond.get("lastTransitionTime"))
        if cond.get("type") == "Failed":
            return "Failed", cond.get("reason"), read_time(cond.get("lastTransitionTime"))
    return None, None, None


@dataclass(frozen=True, slots=True)
class JobRecord:
    """The few facts about a Job the operator keeps (a full Job body is ~5 KB).

    The reconciler sees a :class:`JobView` of it; the record also knows who controls the Job,
    whether it is being deleted, and its pod's outcome once that has been read.
    """

    name: str
    uid: str
    owner_uid: str
    run: str | None
    attempt: int | None
    slot: datetime | None
    created: datetime | None
    finished: Literal["Succeeded", "Failed"] | None
    reason: str | None
    finished_at: datetime | None
    deleting: bool
    run_now_token: str | None
    outcome: Outcome | None = None  # read from the pod once the Job finished; None: not yet
    rv: int = field(default=0, compare=False)  # orders events; not a change the reconciler sees
    backfill: str | None = None  # the uid of the Backfill that runs it (not the schedule)
    backfill_name: str | None = None
    # spec.suspend: a queue (Kueue) holds the Job until it admits it. It is still an active run.
    suspended: bool = False

    @classmethod
    def of(cls, body: dict[str, Any]) -> JobRecord:
        meta = body.get("metadata") or {}
        refs: list[dict[str, Any]] = meta.get("ownerReferences") or []
        owner = next((r for r in refs if r.get("controller")), {})
        identity = job_identity(body)
        annotations = meta.get("annotations") or {}
        finished, reason, finished_at = _finished(body)
        return cls(
            name=meta.get("name", ""),
            uid=meta.get("uid", ""),
            owner_uid=owner.get("uid", ""),
            run=identity[0] if identity else None,
            attempt=identity[1] if identity else None,
            slot=read_time(annotations.get(ANNOTATION_SLOT)),
            created=read_time(meta.get("creationTimestamp")),
            finished=finished,
            reason=reason,
            finished_at=finished_at,
            deleting=bool(meta.get("deletionTimestamp")),
            run_now_token=annotations.get(ANNOTATION_RUN_NOW),
            rv=resource_version(body),
            backfill=annotations.get(ANNOTATION_BACKFILL_UID) or None,
            backfill_name=annotations.get(ANNOTATION_BACKFILL) or None,
            suspended=(body.get("spec") or {}).get("suspend") is True,
        )

    def belongs_to(self, task_uid: str) -> bool:
        """Whether the reconciler should see this Job as one of the task's runs (a Backfill's
        Jobs are the task's too, but the Backfill follows them: docs/architecture.md)."""
        return (
            not self.deleting
            and self.owner_uid == task_uid
            and self.run is not None
            and self.backfill is None
        )

    def view(self) -> JobView:
        """What the reconciler reads (call only when :meth:`belongs_to` holds), or a Backfill
        (any Job of the task with a run and an attempt)."""
        assert self.run is not None
        assert self.attempt is not None
        exit_code, message = self.outcome or (None, None)
        return JobView(
            name=self.name,
            run=self.run,
            attempt=self.attempt,
            slot=self.slot,
            created=self.created,
            finished=self.finished,
            reason=self.reason,
            finished_at=self.finished_at,
            exit_code=exit_code,
            message=message,
            run_now_token=self.run_now_token,
            backfill=self.backfill,
            suspended=self.suspended,
        )


def _pack(body: dict[str, Any]) -> bytes:
    meta = dict(body.get("metadata") or {})
    meta.pop("managedFields", None)  # large and never read
    return json.dumps({**body, "metadata": meta}, separators=(",", ":")).encode()


@dataclass(slots=True)
class Entry:
    """One task: its latest object as compact JSON (parsed per sync) and its Jobs' records.

    Keeping JSON text instead of parsed dicts and models is what keeps 10,000 tasks in budget.
    """

    raw: bytes
    uid: str
    rv: int
    seen: int = 0  # the store's tick when the task was last heard of
    jobs: dict[str, JobRecord] = field(default_factory=dict)
    job_seen: dict[str, int] = field(default_factory=dict)  # the same, per Job

    @classmethod
    def of(cls, body: dict[str, Any]) -> Entry:
        meta = body.get("metadata") or {}
        return cls(raw=_pack(body), uid=meta.get("uid", ""), rv=resource_version(body))

    def replace(self, body: dict[str, Any]) -> None:
        """Take a newer version of the same task."""
        self.raw, self.rv = _pack(body), resource_version(body)

    @property
    def body(self) -> dict[str, Any]:
        """The stored object, freshly parsed (callers may change it)."""
        value: dict[str, Any] = json.loads(self.raw)
        return value

    def drop_job(self, name: str) -> None:
        self.jobs.pop(name, None)
        self.job_seen.pop(name, None)


class Store:
    """Every task the operator knows, by (namespace, name), and Jobs seen before their task."""

    def __init__(self) -> None:
        self.entries: dict[Key, Entry] = {}
        self._orphans: dict[str, dict[str, JobRecord]] = {}  # task uid -> Jobs
        self._orphan_seen: dict[str, int] = {}
        self._tick = itertools.count(1)

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, key: Key) -> Entry | None:
        return self.entries.get(key)

    def tick(self) -> int:
        """The next value of the ordering counter."""
        return next(self._tick)

    # --- watch input --------------------------------------------------------------------------

    def task_event(self, kind: str | None, body: dict[str, Any]) -> Key | None:
        """A task was listed (``None``), added, modified, deleted or resynced; the key to sync."""
        meta = body.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        if kind == "DELETED":
            self.forget(key)
            return None
        entry = self.entries.get(key)
        rv = resource_version(body)
        if entry is not None and entry.uid != meta.get("uid"):
            if rv < entry.rv:
                return None  # an older namesake: deleted before this task was created
            entry = None  # deleted and re-created under the same name
        if entry is None:
            entry = Entry.of(body)
            self.entries[key] = entry
            entry.jobs.update(self._orphans.pop(entry.uid, {}))
            seen = self._orphan_seen.pop(entry.uid, 0)
            entry.job_seen.update(dict.fromkeys(entry.jobs, seen))
        elif kind == RESYNC and rv <= entry.rv:
            entry.seen = self.tick()
            return None  # nothing new
        elif rv >= entry.rv:
            entry.replace(body)
        else:
            entry.seen = self.tick()
            return None  # an older event than the status we wrote ourselves
        entry.seen = self.tick()
        return key

    def job_event(self, kind: str | None, body: dict[str, Any]) -> Key | None:
        """A Job carrying our label changed; file it under its controlling task."""
        meta = body.get("metadata") or {}
        owner = next(
            (
                ref
                for ref in meta.get("ownerReferences") or []
                if ref.get("controller") and ref.get("kind") == KIND
            ),
            None,
        )
        if owner is None:
            return None
        key = (meta.get("namespace", ""), owner.get("name", ""))
        entry = self.entries.get(key)
        name = meta.get("name", "")
        if entry is None or entry.uid != owner.get("uid"):
            # Jobs can be listed before their task; keep them until the task arrives.
            uid = owner.get("uid", "")
            bucket = self._orphans.setdefault(uid, {})
            self._orphan_seen[uid] = self.tick()
            if kind == "DELETED":
                bucket.pop(name, None)
                if not bucket:
                    self._orphans.pop(uid, None)
                    self._orphan_seen.pop(uid, None)
            else:
                bucket[name] = JobRecord.of(body)
            return None
        if kind == "DELETED":
            entry.drop_job(name)
            return key
        previous = entry.jobs.get(name)
        current = JobRecord.of(body)
        if previous is not None and previous.uid == current.uid and current.rv < previous.rv:
            return None  # older than what an event (or our own create) already said
        if previous is not None and previous.uid == current.uid and current.finished:
            current = replace(current, outcome=previous.outcome)  # read once, kept
        entry.jobs[name] = current
        entry.job_seen[name] = self.tick()
        if previous == current:
            return None  # nothing the reconciler cares about changed
        return key

    def job_created(self, key: Key, body: dict[str, Any]) -> None:
        """Record a Job this operator just created (or adopted) without waiting for the watch."""
        entry = self.entries.get(key)
        if entry is None:
            return
        record = JobRecord.of(body)
        if record.name not in entry.jobs:
            entry.jobs[record.name] = record
            entry.job_seen[record.name] = self.tick()

    def set_outcome(self, key: Key, job: JobRecord, outcome: Outcome) -> None:
        """Remember the exit code and message read from a finished Job's pod."""
        entry = self.entries.get(key)
        record = entry.jobs.get(job.name) if entry is not None else None
        if entry is not None and record is not None and record.uid == job.uid:
            entry.jobs[job.name] = replace(record, outcome=outcome)

    def stored(self, key: Key, entry: Entry, body: dict[str, Any]) -> None:
        """Our own write of the task came back as ``body``."""
        if self.entries.get(key) is entry and resource_version(body) >= entry.rv:
            entry.replace(body)
            entry.seen = self.tick()

    def forget(self, key: Key) -> bool:
        """Drop a task (deleted); True if it was known."""
        return self.entries.pop(key, None) is not None

    # --- lists -------------------------------------------------------------------------------

    def tasks_listed(self, mark: int, tasks: set[tuple[str, str, str]]) -> list[Key]:
        """A full list of tasks, begun at tick ``mark``, showed ``tasks`` (namespace, name,
        uid): returns the known tasks it did not show and nothing has mentioned since ``mark``
        (deleted while no watch ran; the caller forgets them). Jobs kept for tasks that are gone
        go too."""
        gone = [
            key
            for key, entry in self.entries.items()
            if entry.seen < mark and (*key, entry.uid) not in tasks
        ]
        live = {uid for *_, uid in tasks}
        for uid in [u for u, seen in self._orphan_seen.items() if seen < mark and u not in live]:
            self._orphans.pop(uid, None)
            self._orphan_seen.pop(uid, None)
        return gone

    def jobs_listed(self, mark: int, jobs: set[tuple[str, str]]) -> tuple[list[Key], int]:
        """A full list of our Jobs, begun at ``mark``, showed ``jobs`` (namespace, name): drops
        the Jobs it did not show and nothing has mentioned since. Returns the tasks that lost
        Jobs (to sync again) and how many Jobs were dropped."""
        changed: list[Key] = []
        dropped = 0
        for key, entry in self.entries.items():
            stale = [
                name
                for name, seen in entry.job_seen.items()
                if seen < mark and (key[0], name) not in jobs
            ]
            for name in stale:
                entry.drop_job(name)
            if stale:
                dropped += len(stale)
                changed.append(key)
        return changed, dropped


# --- calendars ------------------------------------------------------------------------------------


def calendar_ref(body: dict[str, Any]) -> str | None:
    """The name in a task body's spec.calendarRef, or None (read without validating the spec)."""
    spec = body.get("spec")
    ref = spec.get("calendarRef") if isinstance(spec, dict) else None
    name = ref.get("name") if isinstance(ref, dict) else None
    return name if isinstance(name, str) and name else None


@dataclass(slots=True)
class _Calendar:
    raw: bytes
    rv: int
    seen: int


class Calendars:
    """The Calendars the operator knows, and which tasks reference each (by spec.calendarRef).

    A Calendar event returns the tasks to sync again, so that a change takes effect at once for
    every task that references it. Pure, like the Store: the ``tick`` of the task Store orders
    its events against resync lists.
    """

    def __init__(self, tick: Callable[[], int]) -> None:
        self._tick = tick  # the Store's ordering counter
        self._calendars: dict[Key, _Calendar] = {}
        self._users: dict[Key, set[Key]] = {}  # calendar -> tasks that reference it
        self._uses: dict[Key, Key] = {}  # task -> the calendar it references
        self._listed = False  # a full list has been taken in: a calendar not known is missing
        self._namespaces: set[str] = set()  # or a list of these namespaces' Calendars

    def __len__(self) -> int:
        return len(self._calendars)

    def get(self, key: Key) -> dict[str, Any] | None:
        """The stored Calendar, freshly parsed, or None when there is none of that name."""
        found = self._calendars.get(key)
        if found is None:
            return None
        value: dict[str, Any] = json.loads(found.raw)
        return value

    def listed_in(self, namespace: str) -> bool:
        """Whether a Calendar of ``namespace`` that is not known does not exist."""
        return self._listed or namespace in self._namespaces

    def namespace_listed(self, namespace: str) -> None:
        """A list of the namespace's Calendars has been taken in."""
        self._namespaces.add(namespace)

    def users(self, key: Key) -> tuple[Key, ...]:
        """The tasks whose spec.calendarRef names this calendar."""
        return tuple(sorted(self._users.get(key, ())))

    def task_event(self, task: Key, body: dict[str, Any] | None) -> None:
        """Note which calendar a task references (``body`` None: the task is gone)."""
        name = calendar_ref(body) if body is not None else None
        new = (task[0], name) if name else None
        old = self._uses.get(task)
        if old == new:
            return
        if old is not None:
            users = self._users.get(old, set())
            users.discard(task)
            if not users:
                self._users.pop(old, None)
            del self._uses[task]
        if new is not None:
            self._uses[task] = new
            self._users.setdefault(new, set()).add(task)

    def event(self, kind: str | None, body: dict[str, Any]) -> tuple[Key, ...]:
        """A Calendar was listed, added, modified, deleted or resynced: the tasks to sync."""
        meta = body.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        if kind == "DELETED":
            return self.users(key) if self._calendars.pop(key, None) is not None else ()
        rv = resource_version(body)
        known = self._calendars.get(key)
        if known is not None and rv <= known.rv:
            known.seen = self._tick()
            return ()
        self._calendars[key] = _Calendar(_pack(body), rv, self._tick())
        return self.users(key)

    def resync_done(self, mark: int, listed: set[Key]) -> tuple[Key, ...]:
        """Forget the Calendars a full list (begun at tick ``mark``) no longer shows; return the
        tasks that referenced them."""
        gone = [k for k, c in self._calendars.items() if c.seen < mark and k not in listed]
        tasks: set[Key] = set()
        for key in gone:
            del self._calendars[key]
            tasks.update(self.users(key))
        self._listed = True
        return tuple(sorted(tasks))
