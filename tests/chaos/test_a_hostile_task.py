"""One hostile task beside 100 normal ones: the neighbours must not notice (issue 18).

It runs first of the chaos tests (its file name): right after test_apiserver_outage restarted the
API server, it saw no normal run in its first half (the cause is not understood yet).

The hostile task is as hostile as the operator allows: the smallest interval it accepts
(``--min-interval``, set to 5 s here so that the test is short; the default is 1m),
``concurrencyPolicy: Allow`` with Jobs that run 30 s (so its active runs pile up), history kept at
the maximum, and a ``jobTemplate`` exactly at the size limit (64 KiB, carried by every Job and
pod). The 100 normal tasks fire together every 10 s. One operator runs throughout: for the first
half of $NIGHTSHIFT_CHAOS_SECONDS only the normal tasks exist, then the hostile task joins. What a
user would notice, and what is asserted:

* the normal tasks' fire skew (their Job's ADDED event, stamped by a watch here, minus the slot)
  stays within 2x of the first half's, at the median and at p99 (baselines under 250 ms count as
  250 ms: the 2-core machine's noise);
* the operator's RSS stays below the chart's memory limit (384 MiB);
* its writes per second stay within the client-side limit (``--api-qps``, 100 by default;
  ``--api-burst`` 1,000 at once).

The figures are printed on one ``CHAOS`` line: skews of both halves, RSS, writes per second, the
hostile task's Jobs, its Event objects and the Events the per-task limit dropped.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from chaoslib import budget, chaos_seconds, job_slot, now, traceback_count
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch

from nightshift.guard import Limits, template_size
from support.metrics import by_label, parse_metrics
from support.operator import Operator
from support.percentiles import percentile
from support.tasks import task
from support.wait import poll

NORMAL = 100
NORMAL_EVERY = "10s"
FLOOR = "5s"
ROLE = "chaos.nightshift.dev/role"
WRITES = ("create_job", "delete_job", "patch_status", "create_event", "patch_event", "label_job")
WARM_UP = 2  # the first slots of the first half: the operator's first list and syncs
BASELINE_FLOOR = 0.25  # s
RSS_LIMIT = 384  # MiB, the chart's resources.limits.memory
QPS, BURST = 100.0, 1000


def normal_task(name: str) -> dict[str, Any]:
    manifest = task(name, interval=NORMAL_EVERY, history={"succeeded": 1, "failed": 1})
    manifest["spec"]["jobTemplate"]["metadata"] = {"labels": {ROLE: "normal"}}
    return manifest


def hostile_task(limit: int) -> dict[str, Any]:
    """Interval at the floor, Allow, Jobs that run 30 s, history at the maximum, and a template
    of exactly ``limit`` bytes."""
    manifest = task(
        "hostile",
        interval=FLOOR,
        concurrencyPolicy="Allow",
        history={"succeeded": 100, "failed": 100},
        pod_annotations={"test.nightshift.dev/run-for": "30s"},
    )
    template = manifest["spec"]["jobTemplate"]
    template.setdefault("metadata", {})  # what the CRD's defaults add: the size is as stored
    container = template["spec"]["template"]["spec"]["containers"][0]
    container["args"] = [""]
    container["args"][0] = "x" * (limit - template_size(template))
    assert template_size(template) == limit
    return manifest


class Stamper(threading.Thread):
    """Watches the normal tasks' Jobs and stamps each one's arrival: (slot, skew in s)."""

    def __init__(self, kubeconfig: Path, namespace: str) -> None:
        super().__init__(name="chaos-stamper", daemon=True)
        configuration = k8s.Configuration()
        k8s_config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
        self._api = k8s.ApiClient(configuration)
        self.namespace = namespace
        self.skews: dict[str, tuple[datetime, float]] = {}  # Job name: (slot, skew)
        self._halt = threading.Event()
        self._watch = k8s_watch.Watch()

    def run(self) -> None:
        batch = k8s.BatchV1Api(self._api)
        while not self._halt.is_set():
            try:
                for event in self._watch.stream(
                    batch.list_namespaced_job,
                    self.namespace,
                    label_selector=f"{ROLE}=normal",
                    timeout_seconds=60,
                ):
                    arrived = time.time()
                    if event["type"] != "ADDED":
                        continue
                    job = self._api.sanitize_for_serialization(event["object"])
                    slot = job_slot(job)
                    name = job["metadata"]["name"]
                    if slot is not None and name not in self.skews:
                        self.skews[name] = (slot, arrived - slot.timestamp())
            except Exception:  # the watch ends or breaks: watch again
                if not self._halt.is_set():
                    time.sleep(0.5)

    def stop(self) -> None:
        self._halt.set()
        self._watch.stop()
        self.join(timeout=70)
        self._api.close()


class Meter(threading.Thread):
    """Samples the operator every second: RSS (MiB) and its write counters."""

    def __init__(self, operator: Operator) -> None:
        super().__init__(name="chaos-meter", daemon=True)
        self.operator = operator
        self.samples: list[tuple[float, float, float]] = []  # (time, RSS MiB, writes so far)
        self._halt = threading.Event()

    def run(self) -> None:
        assert self.operator.proc is not None
        status = Path(f"/proc/{self.operator.proc.pid}/status")
        while not self._halt.wait(1.0):
            try:
                rss = int(re.search(r"VmRSS:\s+(\d+)", status.read_text())[1]) / 1024  # type: ignore[index]
                text = self.operator.metrics()
            except (OSError, TypeError, urllib.error.URLError):
                continue
            calls = by_label(parse_metrics(text), "nightshift_api_requests_total", "call")
            writes = sum(value for call, value in calls.items() if call in WRITES)
            self.samples.append((time.time(), rss, writes))

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)

    def between(self, start: float, end: float) -> dict[str, float]:
        """Max RSS, and writes per second (average; max over 5 s windows) in [start, end]."""
        window = [s for s in self.samples if start <= s[0] <= end]
        if len(window) < 2:
            return {}
        rates = [
            (b[2] - a[2]) / (b[0] - a[0])
            for a, b in zip(window, window[5:], strict=False)
            if b[0] > a[0]
        ]
        return {
            "rss_max_mib": round(max(s[1] for s in window), 1),
            "writes_per_s": round(
                (window[-1][2] - window[0][2]) / (window[-1][0] - window[0][0]), 1
            ),
            "writes_per_s_max_5s": round(max(rates, default=0.0), 1),
        }


def figures(skews: list[float]) -> dict[str, float]:
    return {
        "runs": len(skews),
        "p50_ms": round(percentile(skews, 50, empty=math.nan) * 1000),
        "p90_ms": round(percentile(skews, 90, empty=math.nan) * 1000),
        "p99_ms": round(percentile(skews, 99, empty=math.nan) * 1000),
        "max_ms": round(max(skews, default=float("nan")) * 1000),
    }


def counter(text: str, name: str) -> float:
    """The value of an unlabelled counter (0.0 when it is not there)."""
    return parse_metrics(text).get((name, frozenset()), 0.0)


@pytest.mark.timeout(budget(extra=600))
def test_a_hostile_task_does_not_slow_its_neighbours(
    cluster: Any, crd: None, namespace: str, operators: Callable[..., Operator]
) -> None:
    half = max(40.0, chaos_seconds() / 2)
    limit = Limits().max_template_bytes
    items = [normal_task(f"n-{i:03d}") for i in range(NORMAL)]
    cluster.kubectl(
        "apply", "-n", namespace, "-f", "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
    )  # fmt: skip
    operator = operators(namespaces=[namespace], min_interval=FLOOR).start()
    poll(
        lambda: (
            sum(
                1
                for t in cluster.get("stask", "-n", namespace)["items"]
                if (t.get("status") or {}).get("nextScheduleTime")
            )
            == NORMAL
        ),
        timeout=60,
        what="every normal task scheduled",
    )
    stamper = Stamper(cluster.kubeconfig, namespace)
    meter = Meter(operator)
    stamper.start()
    meter.start()
    # The clock starts once the normal tasks' Jobs arrive: right after the API server restart of
    # the test before, the first ones can take longer than a whole half.
    poll(lambda: stamper.skews, timeout=120, what="the normal tasks' first Jobs")
    try:
        first = now()
        time.sleep(half)
        joined = now()
        cluster.apply(hostile_task(limit), namespace)
        time.sleep(half)
        ended = now()
        time.sleep(5)  # the last slots' Jobs arrive
        text = operator.metrics()
    finally:
        stamper.stop()
        meter.stop()

    slots = sorted({slot for slot, _ in stamper.skews.values()})
    warm = [s for s in slots if s >= first][WARM_UP:]
    before = [skew for slot, skew in stamper.skews.values() if warm and warm[0] <= slot < joined]
    after = [skew for slot, skew in stamper.skews.values() if joined <= slot < ended]
    hostile = [
        j for j in cluster.get("jobs", "-n", namespace)["items"]
        if j["metadata"]["labels"].get("nightshift.dev/task") == "hostile"
    ]  # fmt: skip
    hostile_events = cluster.get(
        "events", "-n", namespace, "--field-selector", "involvedObject.name=hostile"
    )["items"]
    assert before, f"no normal run seen before the hostile task ({len(after)} after)"
    assert after, f"no normal run seen after the hostile task ({len(before)} before)"
    report = {
        "test": "hostile-task",
        "half_s": half,
        "normal_tasks": NORMAL,
        "hostile_template_bytes": limit,
        "without": figures(before) | meter.between(first.timestamp(), joined.timestamp()),
        "with": figures(after) | meter.between(joined.timestamp(), ended.timestamp()),
        "hostile_jobs_now": len(hostile),
        "hostile_event_objects": len(hostile_events),
        "hostile_event_count": sum(e.get("count") or 1 for e in hostile_events),
        "events_throttled": counter(text, "nightshift_events_throttled_total"),
        "api_throttled_s": counter(text, "nightshift_api_throttled_seconds_total"),
        "tracebacks": traceback_count(operator.logs()),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    print("CHAOS", json.dumps(report))

    assert len(before) >= NORMAL, report
    assert len(after) >= NORMAL, report
    assert hostile, "the hostile task never ran"
    base_p50 = max(percentile(before, 50, empty=math.nan), BASELINE_FLOOR)
    base_p99 = max(percentile(before, 99, empty=math.nan), BASELINE_FLOOR)
    assert percentile(after, 50, empty=math.nan) <= 2 * base_p50, report
    assert percentile(after, 99, empty=math.nan) <= 2 * base_p99, report
    assert report["with"]["rss_max_mib"] <= RSS_LIMIT, report
    assert report["with"]["writes_per_s"] <= QPS, report
    assert report["with"]["writes_per_s_max_5s"] <= QPS + BURST / 5, report
    assert report["tracebacks"] == 0, report
    assert operator.health()[0] == 200
