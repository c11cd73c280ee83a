"""The Job watcher, a thread that stamps each new Job as it arrives, and the skew, misses and
duplicates of what it saw."""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from typing import Any

from kubernetes import client, watch

from bench.constants import MISS_AFTER, SELECTOR
from bench.host import say
from bench.slots import utc
from nightshift.jobs import ANNOTATION_ATTEMPT, ANNOTATION_RUN
from support.percentiles import percentile
from support.wait import poll


def summary_ms(values: list[float]) -> dict[str, Any]:
    ms = [v * 1000 for v in values]
    out: dict[str, Any] = {"n": len(ms)}
    for name, p in (("p50", 50), ("p90", 90), ("p99", 99)):
        value = percentile(ms, p)
        out[f"{name}_ms"] = round(value, 1) if value is not None else None
    out["min_ms"] = round(min(ms), 1) if ms else None
    out["max_ms"] = round(max(ms), 1) if ms else None
    out["mean_ms"] = round(sum(ms) / len(ms), 1) if ms else None
    return out


class JobWatcher(threading.Thread):
    """Stamps every ADDED Job (with the operator's label) in a namespace with time.time()."""

    def __init__(self, admin: Any, namespace: str) -> None:
        super().__init__(daemon=True, name=f"watch-{namespace}")
        self.batch = client.BatchV1Api(admin)
        self.namespace = namespace
        self.added: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.stopped = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            listed = self.batch.list_namespaced_job(self.namespace, label_selector=SELECTOR)
            rv = listed.metadata.resource_version
            for job in listed.items:  # none expected: the namespace is fresh
                self._record(time.time(), client.ApiClient().sanitize_for_serialization(job))
            self.ready.set()
            while not self.stopped.is_set():
                stream = watch.Watch().stream(
                    self.batch.list_namespaced_job,
                    self.namespace,
                    label_selector=SELECTOR,
                    resource_version=rv,
                    allow_watch_bookmarks=True,
                    timeout_seconds=300,
                    deserialize=False,  # stamp on arrival, not after building model objects
                )
                for event in stream:
                    now = time.time()
                    obj = event.get("object") or {}
                    rv = (obj.get("metadata") or {}).get("resourceVersion", rv)
                    if event.get("type") == "ADDED":
                        self._record(now, obj)
                    if self.stopped.is_set():
                        break
        except BaseException as error:  # reported by the phase that started the watch
            self.error = error
            self.ready.set()

    def _record(self, now: float, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        owner = next((r for r in meta.get("ownerReferences") or [] if r.get("controller")), {})
        annotations = meta.get("annotations") or {}
        with self.lock:
            self.added.append(
                {
                    "t": now,
                    "name": meta.get("name"),
                    "task": owner.get("name")
                    or (meta.get("labels") or {}).get("nightshift.dev/task"),
                    "owner_uid": owner.get("uid"),
                    "run": annotations.get(ANNOTATION_RUN),
                    "attempt": annotations.get(ANNOTATION_ATTEMPT),
                }
            )

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.added)

    def stop(self) -> None:
        self.stopped.set()


def start_watcher(watcher: JobWatcher) -> None:
    watcher.start()
    if not watcher.ready.wait(30) or watcher.error is not None:
        raise RuntimeError(f"the Job watch did not start: {watcher.error}")


def await_every_job(watcher: JobWatcher, n: int, due: float, what: str) -> None:
    """Until the watcher has seen a Job for each of n owners, or MISS_AFTER past the slot."""
    poll(
        lambda: len({j["task"] for j in watcher.snapshot()}) >= n or time.time() > due + MISS_AFTER,
        timeout=due - time.time() + MISS_AFTER + 5,
        what=what,
        interval=0.05,
    )


def reported_skew(label: str, watcher: JobWatcher, names: list[str], due: float) -> dict[str, Any]:
    """The skew report of what the watcher saw, also said on the terminal."""
    report = skew_report(watcher.snapshot(), names, due)
    say(
        "{}: p50 {p50_ms} ms, p90 {p90_ms} ms, p99 {p99_ms} ms, max {max_ms} ms, "
        "misses {m}, duplicates {duplicates}".format(label, m=len(report["misses"]), **report)
    )
    return report


def skew_report(added: list[dict[str, Any]], tasks: list[str], due: float) -> dict[str, Any]:
    first: dict[str, float] = {}
    for job in added:
        if job["attempt"] == "1" and job["task"] in tasks and job["t"] - due <= MISS_AFTER:
            first[job["task"]] = min(first.get(job["task"], math.inf), job["t"])
    per_slot = Counter((j["owner_uid"], j["task"], j["run"], j["attempt"]) for j in added)
    skews = [first[t] - due for t in tasks if t in first]
    report = summary_ms(skews)
    report["jobs_added"] = len(added)
    report["duplicates"] = sum(n - 1 for n in per_slot.values() if n > 1)
    report["misses"] = sorted(t for t in tasks if t not in first)
    report["early"] = sum(1 for s in skews if s < 0)
    report["first_job_at"] = utc(min(first.values())) if first else None
    report["last_job_at"] = utc(max(first.values())) if first else None
    report["skews_ms"] = sorted(round(s * 1000, 1) for s in skews)  # for the plot
    return report
