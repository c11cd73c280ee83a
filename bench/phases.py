"""The phases, each a method of ``Bench``: floor, fire, cronjob, baseline, big and scale."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from bench.cluster import (
    Cluster,
    api_client,
    audit_per_run,
    delete_namespace,
    fresh_namespace,
    request_deltas,
    setup_operator_identity,
)
from bench.constants import (
    CRONJOB_USER,
    FLOW_SCHEMA,
    MISS_AFTER,
    SCALE_CATCH_UP,
    SCALE_LATE,
    SCALE_PENDING,
    SCALE_TICK,
    THREADS,
    TICK,
    TICK_EVERY,
    WRITE_CALLS,
)
from bench.host import cpu_snapshot, cpu_window, loadavg, proc_status, say
from bench.operator_process import Operator, skew_histogram
from bench.slots import daily_cron, minute_slot, run_time, utc
from bench.watcher import (
    JobWatcher,
    await_every_job,
    reported_skew,
    skew_report,
    start_watcher,
)
from bench.workload import create_cronjobs, create_tasks, cronjob_body, task_body
from nightshift.jobs import build_job, run_id_for_slot
from nightshift.models import GROUP, PLURAL, VERSION, parse_spec
from nightshift.sharding import bucket, shard_of
from support.metrics import Samples, delta, total
from support.percentiles import percentile
from support.wait import poll, sleep_until


class Bench:
    def __init__(self, args: argparse.Namespace, cluster: Cluster, workdir: Path) -> None:
        self.args = args
        self.cluster = cluster
        self.workdir = workdir
        self.admin = api_client(cluster.kubeconfig, pool=THREADS + 4)
        self.operator_kubeconfig = setup_operator_identity(cluster, self.admin, workdir)
        self.custom = client.CustomObjectsApi(self.admin)
        self.log_count = 0

    def operator(self, namespace: str, args: list[str] | None = None) -> Operator:
        self.log_count += 1
        log = self.workdir / f"operator-{self.log_count}-{namespace}.log"
        env = dict(item.split("=", 1) for item in self.args.operator_env)
        return Operator(self.operator_kubeconfig, namespace, log, env, args)

    def server_snapshot(self) -> dict[str, Any]:
        samples = self.cluster.metrics()
        return {"samples": samples, "audit": self.cluster.audit_offset()}

    def server_delta(
        self, before: dict[str, Any], after: dict[str, Any], namespace: str
    ) -> dict[str, Any]:
        del namespace  # apiserver_request_total has no namespace label
        b, a = before["samples"], after["samples"]
        flow = "apiserver_flowcontrol_dispatched_requests_total"
        return {
            "operator_flowschema_dispatched": total(a, flow, flow_schema=FLOW_SCHEMA)
            - total(b, flow, flow_schema=FLOW_SCHEMA),
            "apiserver_request_total": request_deltas(b, a),
            "audit_operator_user": self.cluster.audit_between(before["audit"], after["audit"]),
            "audit_cronjob_controller_user": self.cluster.audit_between(
                before["audit"], after["audit"], CRONJOB_USER
            ),
        }

    # -- phase 1 and 2 ----------------------------------------------------------------------

    def _slot_phase(
        self, kind: str, run: int
    ) -> tuple[str, JobWatcher, float, str, list[str], dict[str, Any]]:
        """A fresh namespace with the Job watcher running, and the minute T that N objects (named
        t-00000...) will be due at: far enough away to create them (and, for Nightshift, for the
        operator's first pass)."""
        n = self.args.tasks
        ns = fresh_namespace(self.admin, f"bench-{kind}{run}")
        watcher = JobWatcher(self.admin, ns)
        start_watcher(watcher)
        due = minute_slot(n / 50 + 15)
        schedule = daily_cron(due)
        names = [f"t-{i:05d}" for i in range(n)]
        result: dict[str, Any] = {
            "namespace": ns,
            "tasks": n,
            "due": utc(due),
            "schedule": schedule,
            "load_before": loadavg(),
        }
        return ns, watcher, due, schedule, names, result

    def fire(self, run: int) -> dict[str, Any]:
        n = self.args.tasks
        # Time to create the tasks (~500/s) and for the operator's first pass (~5 s at 1,000, ~60 s
        # at 10,000), then the next minute boundary.
        ns, watcher, due, schedule, names, result = self._slot_phase("fire", run)
        say(f"fire #{run}: {n} tasks due at {utc(due)} ({schedule!r}, UTC), namespace {ns}")
        spec = {"schedule": schedule, "timeZone": "UTC"}
        result["create"] = {
            "seconds": create_tasks(self.admin, ns, [task_body(x, spec) for x in names])["seconds"]
        }
        op = self.operator(ns)
        op.start()
        try:
            poll(op.metrics, timeout=60, what="operator metrics endpoint")
            loaded = op.wait_tasks(n, timeout=max(30, due - time.time()))
            try:
                settled = op.wait_settled(timeout=max(1.0, due - time.time() - 1), quiet=1.0)
            except TimeoutError:
                settled = time.time()
                say("WARNING: the operator was still busy with its first syncs near T")
            before_op = op.metrics() or {}
            before_srv = self.server_snapshot()
            margin = due - time.time()
            result["operator"] = {
                "pid": op.pid,
                "log": str(op.log_path),
                "loaded_s_after_start": round(loaded - op.started_at, 2),
                "idle_s_after_start": round(settled - op.started_at, 2),
                "idle_s_before_due": round(margin, 2),
                "startup_calls": op.calls(before_op),
            }
            if margin < 0.5:
                say(f"WARNING: the operator was ready only {margin:.2f} s before T")
            say(f"operator idle {margin:.1f} s before T ({utc(due)}); waiting for the slot")
            spy = None
            if self.args.py_spy:
                sleep_until(due - 0.2)
                result["profile"] = str(self.workdir / f"profile-fire{run}.txt")
                spy = op.profile(self.args.py_spy, Path(result["profile"]), n / 50 + 1)
            pids = self.cluster.pids() | {"operator": op.pid, "bench": os.getpid()}
            sleep_until(due)
            cpu0 = cpu_snapshot(pids)
            await_every_job(watcher, n, due, "a Job for every task")
            result["cpu_during_fire"] = cpu_window(cpu0, cpu_snapshot(pids), time.time() - due)
            if spy is not None:
                spy.wait()
            result["skew"] = reported_skew(f"fire #{run}", watcher, names, due)
            result["api"] = self.runs_succeeded(op, ns, n, before_op, before_srv)
            result["cpu_until_settled"] = cpu_window(cpu0, cpu_snapshot(pids), time.time() - due)
            after_op = op.metrics() or {}
            result["operator_fire_skew_histogram"] = skew_histogram(before_op, after_op)
            result["skew"]["duplicates_after_runs"] = skew_report(watcher.snapshot(), names, due)[
                "duplicates"
            ]
            result["operator"]["rss_mib"] = op.proc_status()
        finally:
            op.stop()
            watcher.stop()
        result["load_after"] = loadavg()
        result["namespace_delete_s"] = delete_namespace(self.admin, ns)
        return result

    def runs_succeeded(
        self, op: Operator, ns: str, n: int, before_op: Samples, before_srv: dict[str, Any]
    ) -> dict[str, Any]:
        """Phase 2: once every task's run has succeeded, API calls per successful run."""
        start = time.monotonic()

        def all_succeeded() -> bool:
            items = self.custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"]
            ok = sum(1 for t in items if (t.get("status") or {}).get("lastResult") == "Succeeded")
            return ok >= n

        poll(all_succeeded, timeout=180, what="every run Succeeded", interval=1.0)
        succeeded_after = time.monotonic() - start
        op.wait_settled(timeout=60, quiet=2.0)
        after_op = op.metrics() or {}
        after_srv = self.server_snapshot()
        calls = delta(op.calls(after_op), op.calls(before_op))
        writes = sum(calls.get(c, 0.0) for c in WRITE_CALLS)
        runs = total(after_op, "nightshift_runs_total", result="Succeeded") - total(
            before_op, "nightshift_runs_total", result="Succeeded"
        )
        server = self.server_delta(before_srv, after_srv, ns)
        per_run = {k: round(v / runs, 2) for k, v in calls.items()} if runs else {}
        report: dict[str, Any] = {
            "all_succeeded_s_after_due": round(succeeded_after, 1),
            "successful_runs": runs,
            "operator_calls": calls,
            "operator_calls_per_run": per_run,
            "operator_total_per_run": round(sum(calls.values()) / runs, 2) if runs else None,
            "operator_writes_per_run": round(writes / runs, 2) if runs else None,
            "server": server,
        }
        report |= audit_per_run(server["audit_operator_user"], runs)
        if runs:
            report["flowschema_per_run"] = round(server["operator_flowschema_dispatched"] / runs, 2)
        say(
            f"api: {runs:.0f} successful runs; operator writes/run "
            f"{report['operator_writes_per_run']}, calls/run {report['operator_total_per_run']}: "
            f"{per_run}"
        )
        return report

    # -- the floor --------------------------------------------------------------------------

    def floor(self, run: int, *, raw: bool) -> dict[str, Any]:
        """A bare client creates the same N Jobs at T. ``raw``: the responses are not turned
        into model objects (``_preload_content=False``); otherwise the client does what it does
        by default."""
        n = self.args.tasks
        kind = "raw" if raw else "client"
        ns = fresh_namespace(self.admin, f"bench-floor{run}-{kind}")
        say(f"floor #{run} ({kind}): {THREADS} threads create {n} Jobs at T, namespace {ns}")
        due = float(math.ceil(time.time() + n / 20 + 10))
        anchor = datetime.fromtimestamp(due, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        names = [f"t-{i:05d}" for i in range(n)]
        bodies = [
            task_body(x, {"interval": "1h", "anchor": anchor, "suspend": True}) for x in names
        ]
        created = create_tasks(self.admin, ns, bodies)["objects"]
        slot = datetime.fromtimestamp(due, UTC)
        manifests = [
            build_job(
                task_name=t["metadata"]["name"],
                task_uid=t["metadata"]["uid"],
                spec=parse_spec(t["spec"]),
                run=run_id_for_slot(slot),
                attempt=1,
                slot=slot,
            )
            for t in created
        ]
        watcher = JobWatcher(self.admin, ns)
        start_watcher(watcher)
        bare = api_client(self.operator_kubeconfig, pool=THREADS, retries=0)
        batch = client.BatchV1Api(bare)
        errors: list[str] = []

        def warm(_: int) -> None:
            batch.list_namespaced_job(ns, limit=1)

        def create(manifest: dict[str, Any]) -> None:
            try:
                if raw:
                    response = batch.create_namespaced_job(ns, manifest, _preload_content=False)
                    response.read()  # an unread body must not go back into the pool
                    response.release_conn()
                else:
                    batch.create_namespaced_job(ns, manifest)
            except ApiException as error:
                errors.append(f"{error.status} {error.reason}")

        result: dict[str, Any] = {
            "namespace": ns,
            "variant": kind,
            "tasks": n,
            "due": utc(due),
            "load_before": loadavg(),
        }
        with ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(warm, range(THREADS * 2)))  # open the connections before T
            pids = self.cluster.pids() | {"bench": os.getpid()}
            sleep_until(due)
            cpu0 = cpu_snapshot(pids)
            start = time.time()
            list(pool.map(create, manifests))
            result["client_seconds"] = round(time.time() - start, 3)
        poll(
            lambda: len(watcher.snapshot()) >= n or time.time() > due + MISS_AFTER,
            timeout=MISS_AFTER + 5,
            what="every Job",
            interval=0.05,
        )
        result["cpu_during_fire"] = cpu_window(cpu0, cpu_snapshot(pids), time.time() - due)
        watcher.stop()
        result["errors"] = errors
        result["skew"] = skew_report(watcher.snapshot(), names, due)
        say(
            "floor #{} ({}): p50 {p50_ms} ms, p90 {p90_ms} ms, p99 {p99_ms} ms, "
            "max {max_ms} ms".format(run, kind, **result["skew"])
        )
        result["load_after"] = loadavg()
        result["namespace_delete_s"] = delete_namespace(self.admin, ns)
        return result

    # -- the CronJob controller -------------------------------------------------------------

    def cronjob(self, run: int) -> dict[str, Any]:
        """N equivalent CronJobs due at the same minute T, fired by kube-controller-manager's
        CronJob controller; watched and counted like the fire phase."""
        n = self.args.tasks
        # The CronJobs must exist (creationTimestamp, 1 s resolution) before T, or the controller
        # never considers the slot; they are created at several hundred per second.
        ns, watcher, due, schedule, names, result = self._slot_phase("cronjob", run)
        say(f"cronjob #{run}: {n} CronJobs due at {utc(due)} ({schedule!r}), namespace {ns}")
        created = create_cronjobs(self.admin, ns, [cronjob_body(x, due) for x in names])
        result["create"] = {"seconds": created["seconds"]}
        margin = due - time.time()
        result["created_s_before_due"] = round(margin, 2)
        if margin < 2:
            say(f"WARNING: the CronJobs existed only {margin:.2f} s before T")
        pids = self.cluster.pids() | {"bench": os.getpid()}
        kcm = pids.get("kube-controller-manager")
        try:
            sleep_until(due - 3)  # the controller's first syncs of the new CronJobs are done
            before_srv = self.server_snapshot()
            say(f"cronjob #{run}: {n} CronJobs exist {margin:.1f} s before T; waiting for the slot")
            sleep_until(due)
            cpu0 = cpu_snapshot(pids)
            await_every_job(watcher, n, due, "a Job for every CronJob")
            result["cpu_during_fire"] = cpu_window(cpu0, cpu_snapshot(pids), time.time() - due)
            result["skew"] = reported_skew(f"cronjob #{run}", watcher, names, due)
            result["api"] = self.cronjobs_succeeded(ns, n, due, before_srv)
            result["cpu_until_settled"] = cpu_window(cpu0, cpu_snapshot(pids), time.time() - due)
            result["skew"]["duplicates_after_runs"] = skew_report(watcher.snapshot(), names, due)[
                "duplicates"
            ]
            if kcm is not None:
                result["kube_controller_manager_status"] = proc_status(kcm)
        finally:
            watcher.stop()
        result["load_after"] = loadavg()
        result["namespace_delete_s"] = delete_namespace(self.admin, ns)
        return result

    def cronjobs_succeeded(
        self, ns: str, n: int, due: float, before_srv: dict[str, Any]
    ) -> dict[str, Any]:
        """Once every CronJob has a successful Job (``status.lastSuccessfulTime``) and the API
        server's counters of the controllers' writes are still, API requests per successful
        run."""
        batch = client.BatchV1Api(self.admin)
        start = time.monotonic()

        def succeeded() -> int:
            listed = batch.list_namespaced_cron_job(ns, _preload_content=False)
            items = json.loads(listed.data)["items"]
            return sum(
                1
                for c in items
                if (last := (c.get("status") or {}).get("lastSuccessfulTime"))
                and run_time(last) >= due
                and not (c.get("status") or {}).get("active")
            )

        try:
            poll(
                lambda: succeeded() >= n,
                timeout=300,
                what="every CronJob's run Succeeded",
                interval=1.0,
            )
        except TimeoutError as error:
            say(f"WARNING: {error}; counting what succeeded")
        succeeded_after = time.monotonic() - start
        after_srv = self.server_quiet(before_srv)
        runs = succeeded()
        server = self.server_delta(before_srv, after_srv, ns)
        counts = server["apiserver_request_total"]
        writes = sum(
            counts[k]
            for k in ("POST jobs", "DELETE jobs", "PUT cronjobs/status", "PATCH cronjobs/status")
        )
        report: dict[str, Any] = {
            "all_succeeded_s_after_due": round(succeeded_after, 1),
            "successful_runs": runs,
            # Events have no user label in the metric: the Job controller's are in there too.
            "server_writes_per_run_without_events": round(writes / runs, 2) if runs else None,
            "server": server,
        }
        report |= audit_per_run(server["audit_cronjob_controller_user"], runs)
        say(
            f"api: {runs} successful CronJob runs; controller writes/run (audit) "
            f"{report.get('audit_writes_per_run')}, server writes/run without Events "
            f"{report['server_writes_per_run_without_events']}: "
            f"{server['audit_cronjob_controller_user']}"
        )
        return report

    def server_quiet(
        self, before: dict[str, Any], *, quiet: float = 3.0, timeout: float = 120
    ) -> dict[str, Any]:
        """Wait until the API server's counts of Job, CronJob status and Event writes have not
        moved for ``quiet`` s (the controllers' last status updates and Events are out)."""

        def writes(snapshot: dict[str, Any]) -> dict[str, float]:
            counts = request_deltas(before["samples"], snapshot["samples"])
            return {k: v for k, v in counts.items() if not k.startswith("LIST")}

        deadline = time.monotonic() + timeout
        last = self.server_snapshot()
        since = time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(1.0)
            now = self.server_snapshot()
            if writes(now) != writes(last):
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return now
        say(f"WARNING: the API server's write counters still moving after {timeout:.0f} s")
        return last

    # -- phase 3 ----------------------------------------------------------------------------

    def baseline(self) -> dict[str, Any]:
        ns = fresh_namespace(self.admin, "bench-empty")
        op = self.operator(ns)
        op.start()
        try:
            poll(op.metrics, timeout=60, what="operator metrics endpoint")
            op.wait_tasks(0, timeout=30)
            op.wait_settled(timeout=60)
            status = op.proc_status()
        finally:
            op.stop()
        delete_namespace(self.admin, ns)
        say(
            f"baseline: an operator with no tasks: RSS {status['VmRSS']} MiB, "
            f"HWM {status['VmHWM']} MiB"
        )
        return status

    def big(self, count: int, run: int) -> dict[str, Any]:
        ns = fresh_namespace(self.admin, f"bench-big{count}-{run}")
        say(f"big #{run}: {count} idle tasks + 1 every {TICK_EVERY} s, namespace {ns}")
        bodies = [task_body(f"t-{i:05d}", {"schedule": "@yearly"}) for i in range(count)]
        bodies.append(task_body(TICK, {"interval": f"{TICK_EVERY}s"}))
        result: dict[str, Any] = {"namespace": ns, "tasks": count + 1, "load_before": loadavg()}
        created = create_tasks(self.admin, ns, bodies)
        result["create"] = {
            "seconds": created["seconds"],
            "per_s": round(len(bodies) / created["seconds"]),
        }
        del created
        watcher = JobWatcher(self.admin, ns)
        start_watcher(watcher)
        op = self.operator(ns)
        srv0 = self.server_snapshot()
        op.start()
        restarted: Operator | None = None
        try:
            if self.args.py_spy:
                result["profile"] = str(self.workdir / f"profile-big{count}-{run}.txt")
                op.profile(self.args.py_spy, Path(result["profile"]), 10 + count / 100)
            poll(op.metrics, timeout=120, what="operator metrics endpoint")
            loaded = op.wait_tasks(count + 1, timeout=900, interval=0.2)
            poll(
                lambda: (op.gauge("nightshift_scheduler_queue_depth") or 0) >= count + 1,
                timeout=900,
                what="every task in the heap",
                interval=0.5,
            )
            settled = op.wait_settled(timeout=900, quiet=3.0, interval=1.0)
            result["first_start"] = {
                "loaded_s": round(loaded - op.started_at, 2),
                "idle_s": round(settled - op.started_at, 2),
                "cpu_s": round(op.cpu_seconds(), 2),
                "metrics_scrape": op.scrape_cost(),
                "calls": op.calls(),
                "server": self.server_delta(srv0, self.server_snapshot(), ns),
                **op.proc_status(),
            }
            first = result["first_start"]
            say(
                f"big #{run}: loaded {count + 1} tasks {first['loaded_s']} s after start, "
                f"idle after {first['idle_s']} s; RSS {first['VmRSS']} MiB, "
                f"HWM {first['VmHWM']} MiB"
            )
            # The 10 s task must be firing before we kill the operator.
            seen = len([j for j in watcher.snapshot() if j["task"] == TICK])
            poll(
                lambda: len([j for j in watcher.snapshot() if j["task"] == TICK]) > seen,
                timeout=TICK_EVERY * 3 + 5,
                what=f"a Job of {TICK}",
            )
            # Kill one second before the next slot: the slot falls inside the restart.
            slot = math.ceil((time.time() + 1.5) / TICK_EVERY) * TICK_EVERY
            sleep_until(slot - 1.0)
            op.kill9()
            killed = time.time()
            restarted = self.operator(ns)
            restarted.start()
            start = restarted.started_at
            if self.args.py_spy:
                result["profile_restart"] = str(self.workdir / f"profile-restart{count}-{run}.txt")
                restarted.profile(
                    self.args.py_spy, Path(result["profile_restart"]), 5 + count / 500
                )

            def fired() -> dict[str, Any] | None:
                jobs = [j for j in watcher.snapshot() if j["task"] == TICK and j["t"] > killed]
                return jobs[0] if jobs else None

            loaded2: float | None = None
            deadline = time.time() + 600
            job = None
            polls = 0
            while time.time() < deadline and (job is None or loaded2 is None):
                # A scrape costs the operator CPU (one nightshift_active_runs series per task):
                # poll the gauge at 5 Hz, look at the watcher's records at 20 Hz.
                if (
                    loaded2 is None
                    and polls % 4 == 0
                    and restarted.gauge("nightshift_tasks") == count + 1
                ):
                    loaded2 = time.time()
                polls += 1
                job = job or fired()
                time.sleep(0.05)
            restarted.wait_settled(timeout=900, quiet=3.0, interval=1.0)
            result["restart"] = {
                "killed_s_before_slot": round(slot - killed, 2),
                "slot": utc(slot),
                "first_fire_s": round(job["t"] - start, 2) if job else None,
                "first_fire_run": job["run"] if job else None,
                # Late relative to the Job's own slot (a slot missed during a long restart is
                # recorded as Missed; catchUp Latest runs the newest one).
                "first_fire_late_s": round(job["t"] - run_time(job["run"]), 2) if job else None,
                "loaded_s": round(loaded2 - start, 2) if loaded2 else None,
                "calls": restarted.calls(),
                **restarted.proc_status(),
            }
            again = result["restart"]
            say(
                f"big #{run}: after kill -9 + restart: first Job of {TICK} after "
                f"{again['first_fire_s']} s (run {again['first_fire_run']}), "
                f"all loaded after {again['loaded_s']} s; RSS {again['VmRSS']} MiB"
            )
            jobs = watcher.snapshot()
            result["tick_duplicates"] = sum(
                n - 1
                for n in Counter(
                    (j["run"], j["attempt"]) for j in jobs if j["task"] == TICK
                ).values()
                if n > 1
            )
        finally:
            op.stop()
            if restarted is not None:
                restarted.stop()
            watcher.stop()
        result["load_after"] = loadavg()
        result["namespace_delete_s"] = delete_namespace(self.admin, ns, wait=900)
        return result

    # -- phase 5: scale-out by shards -------------------------------------------------------

    def _holders(self, ns: str) -> dict[int, str]:
        """Shard -> holder identity, from the shard Leases."""
        leases = client.CoordinationV1Api(self.admin).list_namespaced_lease(
            ns, label_selector="nightshift.dev/lease-role=shard"
        )
        return {
            int(lease.metadata.labels["nightshift.dev/shard"]): lease.spec.holder_identity
            for lease in leases.items
            if lease.spec.holder_identity
        }

    def _settle_shards(
        self, ops: dict[str, Operator], shards: int, tasks: int, *, timeout: float, what: str
    ) -> dict[str, dict[str, Any]]:
        """Wait until the replicas hold every shard, none above its fair share, their
        nightshift_tasks add up to ``tasks``, unchanged for 3 s, and their writes are done (at
        most SCALE_PENDING tasks with writes pending: the tick tasks write all the time). Per
        replica: the shards it holds, its tasks, when its task count last grew (seconds after
        its start), RSS; and how long after the call the writes were done."""
        share = -(-shards // len(ops))
        last: dict[str, tuple[float, float]] = {}
        changed = {name: op.started_at for name, op in ops.items()}
        stable_since = math.inf
        called = time.time()
        deadline = called + timeout
        written: float | None = None
        while True:
            now = time.time()
            seen = {
                name: (op.gauge("nightshift_shards_held") or 0, op.gauge("nightshift_tasks") or 0)
                for name, op in ops.items()
            }
            pending = sum(op.gauge("nightshift_writes_pending") or 0 for op in ops.values())
            for name, value in seen.items():
                if value != last.get(name):
                    changed[name] = now
            loaded = (
                sum(v[0] for v in seen.values()) == shards
                and all(v[0] <= share for v in seen.values())
                and sum(v[1] for v in seen.values()) == tasks
            )
            if loaded and pending <= SCALE_PENDING and written is None:
                written = now - called
            done = loaded and pending <= SCALE_PENDING
            if seen != last or not done:
                stable_since = now
            last = seen
            if done and now - stable_since >= 3:
                break
            if now > deadline:
                raise TimeoutError(
                    f"{what}: not settled after {timeout:.0f} s: {seen}, {pending} writes pending"
                )
            time.sleep(0.5)
        holders = self._holders(next(iter(ops.values())).namespace)
        out = {}
        for name, op in ops.items():
            out[name] = {
                "shards": sorted(s for s, who in holders.items() if who == op.identity),
                "tasks": int(last[name][1]),
                "loaded_s": round(changed[name] - op.started_at, 2),
                **op.proc_status(),
            }
        for replica in out.values():
            # When the replicas' writes together were done (seconds after the wait began).
            replica["writes_done_s"] = round(written or 0.0, 1)
        say(
            f"scale: {what}: "
            + "; ".join(
                f"{n} {r['shards']} {r['tasks']} tasks, loaded {r['loaded_s']} s, "
                f"RSS {r['VmRSS']} MiB"
                for n, r in out.items()
            )
            + f"; writes done {written or 0.0:.0f} s after the wait began"
        )
        return out

    def _ticks(self, ns: str, shards: int) -> dict[str, dict[str, Any]]:
        """Tasks due every SCALE_TICK s, at least one in each shard (created until every shard
        has one): a handover shows as their first Job after it, a duplicate or lost slot in
        their Jobs."""
        spec = {
            "interval": f"{SCALE_TICK}s",
            "concurrencyPolicy": "Allow",
            "startingDeadlineSeconds": 300,
            "catchUp": "All",
            "maxCatchUp": 100,  # the CRD's bound: 400 s of ticks
        }
        ticks: dict[str, dict[str, Any]] = {}
        covered: set[int] = set()
        while len(covered) < shards and len(ticks) < 8 * shards:
            name = f"tick-{len(ticks):03d}"
            body = self.custom.create_namespaced_custom_object(
                GROUP, VERSION, ns, PLURAL, task_body(name, spec)
            )
            shard = shard_of(bucket(body["metadata"]["uid"]), shards)
            covered.add(shard)
            created = datetime.fromisoformat(
                body["metadata"]["creationTimestamp"].replace("Z", "+00:00")
            ).timestamp()
            ticks[name] = {"shard": shard, "created": created}
        return ticks

    def _slots_report(
        self, watcher: JobWatcher, ticks: dict[str, dict[str, Any]], until: float, since: float
    ) -> dict[str, Any]:
        """Duplicate Jobs, and the tick tasks' slots up to ``until``: lost (no attempt-1 Job) or,
        from ``since`` on (the replicas loaded: before, no replica ran yet and the slots were
        caught up once one did), late (its first Job more than SCALE_LATE s after the slot),
        with the worst delay."""
        jobs = [j for j in watcher.snapshot() if j["task"] in ticks]
        per_slot = Counter((j["task"], j["run"], j["attempt"]) for j in jobs)
        first: dict[tuple[str, str], float] = {}
        for j in jobs:
            if j["attempt"] == "1":
                key = (j["task"], j["run"])
                first[key] = min(first.get(key, j["t"]), j["t"])
        lost: list[str] = []
        late: list[str] = []
        worst = 0.0
        for name, tick in ticks.items():
            slot = (tick["created"] // SCALE_TICK + 1) * SCALE_TICK
            while slot <= until:
                run = run_id_for_slot(datetime.fromtimestamp(slot, UTC))
                added = first.get((name, run))
                if added is None:
                    lost.append(f"{name} {run}")
                elif slot >= since:
                    worst = max(worst, added - slot)
                    if added - slot > SCALE_LATE:
                        late.append(f"{name} {run} +{added - slot:.1f} s")
                slot += SCALE_TICK
        return {
            "jobs": len(jobs),
            "duplicates": sum(n - 1 for n in per_slot.values() if n > 1),
            "lost_slots": len(lost),
            "lost": lost[:50],
            "late_slots": len(late),
            "late": late[:50],
            "latest_s": round(worst, 1),
        }

    def scale(self) -> dict[str, Any]:
        """--scale-tasks over --scale-replicas replicas with --scale-shards shards: each
        replica's RSS and load time; the skew of --tasks due together, spread over the shards;
        the first fire after one replica's kill -9; then 1 -> 3 -> 2 replicas."""
        count, replicas = self.args.scale_tasks, self.args.scale_replicas
        shards = self.args.scale_shards
        ns = fresh_namespace(self.admin, "bench-scale")
        watcher = JobWatcher(self.admin, ns)
        start_watcher(watcher)
        args = ["--shards", str(shards), "--leader-election-namespace", ns]
        ticks = self._ticks(ns, shards)
        due_n = min(self.args.tasks, count // 2)
        idle = count - due_n - len(ticks)
        result: dict[str, Any] = {
            "namespace": ns,
            "total_tasks": count,
            "tasks": due_n,  # due together: the skew's denominator (and the plot's)
            "replicas": replicas,
            "shards": shards,
            "ticks": {name: t["shard"] for name, t in ticks.items()},
            "load_before": loadavg(),
        }
        say(f"scale: {count} tasks over {replicas} replicas, {shards} shards, namespace {ns}")
        bodies = [task_body(f"t-{i:05d}", {"schedule": "@yearly"}) for i in range(idle)]
        result["create"] = {"seconds": create_tasks(self.admin, ns, bodies)["seconds"]}
        del bodies
        ops: dict[str, Operator] = {}
        every: list[Operator] = []

        def start(name: str) -> None:
            op = self.operator(ns, args)
            op.start()
            ops[name] = op
            every.append(op)
            poll(op.metrics, timeout=60, what=f"replica {name}'s metrics endpoint")

        try:
            for i in range(replicas):
                start(f"r{i}")
            loaded = count - due_n
            result["load"] = self._settle_shards(
                ops, shards, loaded, timeout=1800, what=f"{replicas} replicas loaded"
            )
            loaded_at = time.time()

            # The skew of due_n tasks due together, spread over the shards.
            due = minute_slot(due_n / 50 + 20)
            names = [f"d-{i:05d}" for i in range(due_n)]
            spec = {"schedule": daily_cron(due), "timeZone": "UTC"}
            objs = create_tasks(self.admin, ns, [task_body(n, spec) for n in names])["objects"]
            shard_of_task = {
                o["metadata"]["name"]: shard_of(bucket(o["metadata"]["uid"]), shards) for o in objs
            }
            del objs
            poll(
                lambda: sum(op.gauge("nightshift_tasks") or 0 for op in ops.values()) == count,
                timeout=max(30, due - time.time() - 2),
                what="every replica to see the due tasks",
            )
            say(f"scale: {due_n} tasks due at {utc(due)} over {shards} shards")
            sleep_until(due)
            poll(
                lambda: (
                    {j["task"] for j in watcher.snapshot()} >= set(names)
                    or time.time() > due + MISS_AFTER
                ),
                timeout=MISS_AFTER + 10,
                what="a Job for every due task",
                interval=0.1,
            )
            skew = reported_skew("scale: due together", watcher, names, due)
            per_shard: dict[int, list[float]] = {}
            first = {
                j["task"]: j["t"] - due
                for j in sorted(watcher.snapshot(), key=lambda j: -j["t"])
                if j["task"] in shard_of_task and j["attempt"] == "1"
            }
            for name, seconds in first.items():
                per_shard.setdefault(shard_of_task[name], []).append(seconds)
            skew["per_shard"] = {
                str(shard): {"n": len(v), "p99_ms": round((percentile(v, 99) or 0) * 1000, 1)}
                for shard, v in sorted(per_shard.items())
            }
            result["skew"] = skew
            result["after_fire"] = {name: op.proc_status() for name, op in ops.items()}

            # kill -9 of one replica: its shards move, and its tick tasks fire again.
            victim_name = "r0"
            victim = ops.pop(victim_name)
            lost = sorted(s for s, who in self._holders(ns).items() if who == victim.identity)
            orphan_ticks = {n for n, t in ticks.items() if t["shard"] in lost}
            time.sleep(SCALE_TICK)
            killed = time.time()
            victim.kill9()
            survivors = {op.identity for op in ops.values()}
            poll(
                lambda: all(self._holders(ns).get(s) in survivors for s in lost),
                timeout=120,
                what="the killed replica's shards to be taken",
                interval=0.2,  # shards_taken_s below is measured at this resolution
            )
            moved = time.time() - killed

            def first_fire() -> float | None:
                after = [
                    j["t"]
                    for j in watcher.snapshot()
                    if j["task"] in orphan_ticks and j["t"] > killed
                ]
                return min(after) if after else None

            # A takeover that fires nothing within the wait is a result, not the end of the run.
            fired: float | None = None
            with contextlib.suppress(TimeoutError):
                fired = poll(
                    first_fire, timeout=SCALE_CATCH_UP, what="a Job of the killed replica's shards"
                )
            result["kill9"] = {
                "shards": lost,
                "ticks": sorted(orphan_ticks),
                "shards_taken_s": round(moved, 2),
                "first_fire_s": None if fired is None else round(fired - killed, 2),
            }
            say(
                f"scale: kill -9 of {victim_name}: shards {lost} taken after {moved:.1f} s, "
                + (
                    f"first Job after {fired - killed:.1f} s"
                    if fired is not None
                    else f"no Job of its tick tasks within {SCALE_CATCH_UP:.0f} s"
                )
            )
            result["after_kill"] = self._settle_shards(
                ops, shards, count, timeout=900, what=f"{len(ops)} replicas after the kill"
            )

            # Rescale 1 -> 3 -> 2 (SIGTERM to scale down, as a Deployment does).
            steps: dict[str, Any] = {}
            rescale_from = time.time()
            while len(ops) > 1:
                ops.pop(sorted(ops)[-1]).stop()
            steps["1"] = self._settle_shards(ops, shards, count, timeout=900, what="1 replica")
            time.sleep(2 * SCALE_TICK)
            start("r4")
            start("r5")
            steps["3"] = self._settle_shards(ops, shards, count, timeout=900, what="3 replicas")
            time.sleep(2 * SCALE_TICK)
            ops.pop(sorted(ops)[-1]).stop()
            steps["2"] = self._settle_shards(ops, shards, count, timeout=900, what="2 replicas")
            time.sleep(3 * SCALE_TICK)
            until = time.time() - 2 * SCALE_TICK
            result["rescale"] = {"steps": steps, "seconds": round(until - rescale_from, 1)}
            # A slot the new owners have not run yet is caught up later (catchUp: All): wait for
            # that (at most SCALE_CATCH_UP s) before calling a slot lost rather than late.
            waiting = time.monotonic()
            with contextlib.suppress(TimeoutError):
                poll(
                    lambda: self._slots_report(watcher, ticks, until, loaded_at)["lost_slots"] == 0,
                    timeout=SCALE_CATCH_UP,
                    what="the tick tasks' slots to be caught up",
                    interval=1.0,
                )
            result["slots"] = self._slots_report(watcher, ticks, until, loaded_at)
            slots = result["slots"]
            slots["waited_s"] = round(time.monotonic() - waiting, 1)
            say(
                f"scale: {slots['jobs']} Jobs of {len(ticks)} tick tasks through the kill and "
                f"the rescale: {slots['duplicates']} duplicates, {slots['lost_slots']} lost "
                f"slots, {slots['late_slots']} late by over {SCALE_LATE} s (the latest "
                f"+{slots['latest_s']} s; waited {slots['waited_s']} s for them)"
            )
        finally:
            for op in every:
                op.stop()
            watcher.stop()
        result["load_after"] = loadavg()
        result["namespace_delete_s"] = delete_namespace(self.admin, ns, wait=1800)
        return result
