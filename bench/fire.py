#!/usr/bin/env python3
"""Firing benchmarks on a local control plane: print a table, write the numbers as JSON.

    .venv/bin/python bench/fire.py [--tasks 1000] [--big 1000] [--huge 10000] [--repeat 1]

Phases (each run ``--repeat`` times, one after another, each in a fresh namespace that is deleted
afterwards; in this order):

``floor``   N Jobs (built by ``nightshift.jobs.build_job``), created at T by a bare client (a
            pool of 16 threads, warm connections, the operator's credentials), watched the same
            way as below: what the API server and this machine allow at best.
``fire``    N ScheduledTasks (``schedule: "M H * * *"``, UTC) all due at the same minute T; a
            fresh operator is started before T. A watcher thread in this process (a batch/v1 Job
            watch with the operator's label selector) stamps each ADDED event with
            ``time.time()``; skew = that time - T. Then it waits until every task's status says
            Succeeded and counts the API calls per run: the operator's own
            ``nightshift_api_requests_total`` and, independently, what the API server saw from
            the operator's user (audit log, flow-control and request metrics).
``cronjob`` The built-in CronJob controller (kube-controller-manager) with N equivalent batch/v1
            CronJobs due at the same kind of minute T, the same Job template, watched the same
            way; API requests per run from the API server's metrics and the audit log (user
            ``system:serviceaccount:kube-system:cronjob-controller``).
``big``     --big idle tasks (``@yearly``) plus one task due every 10 s: operator RSS (VmRSS,
            VmHWM) once every task is loaded and scheduled; then kill -9 one second before a
            slot of the 10 s task and restart: time until that task's Job appears and until all
            tasks are loaded again. ``--huge N`` does the same once at N tasks.

The table compares Nightshift's p99 with the floor's and the CronJob controller's; a PNG next to
the JSON shows the skew distributions (needs matplotlib: ``pip install -e ".[bench]"``).

The operator runs as ``nightshift run --namespace NS`` under a ServiceAccount bound to
cluster-admin, so its requests can be told apart from everything else on the server: a
FlowSchema of its own (``apiserver_flowcontrol_dispatched_requests_total``) and, when this script
started the cluster, an audit log that records only that user's requests.

Nothing here asserts on time: the numbers are printed and written to --out.

This file parses the arguments and runs the phases in order; the parts are the other modules
of the package ``bench`` (bench/README.md, "Layout").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Run as ``python bench/fire.py`` (what ``make bench`` does), this file is a script, not
# ``bench.fire``, and sys.path[0] is bench/ itself. The repository root goes on sys.path ahead of
# it so that the sibling modules are imported the one way they import each other too: as the
# package ``bench`` (``from bench.watcher import JobWatcher``), never as top-level modules
# (``import watcher`` would load a second copy). As bench/ stays on sys.path, no module there may
# be named like a standard or installed module (hence ``operator_process``, not ``operator``).
# Importing ``bench`` puts tests/ on sys.path for tests/support.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import REPO
from bench.cluster import Cluster
from bench.constants import CRDS, TARGETS
from bench.host import loadavg
from bench.phases import Bench
from bench.plot import plot
from bench.report import git_commit, print_table, ratios, table, write


def main(argv: list[str] | None = None) -> int:
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--tasks",
        type=int,
        default=1000,
        help="tasks (and CronJobs, and floor Jobs) due at the same minute (default 1000)",
    )
    parser.add_argument(
        "--big",
        type=int,
        default=1000,
        help="idle tasks for the RSS and restart phase (default 1000)",
    )
    parser.add_argument(
        "--huge",
        type=int,
        default=0,
        help="also run the RSS and restart phase once at this many tasks (e.g. 10000)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs of each phase (default 1: ~11 min in all on 2 cores; each run adds ~9 min)",
    )
    parser.add_argument(
        "--phases",
        default="floor,fire,cronjob,big",
        help="comma-separated subset of floor,fire,cronjob,big,scale (always run in this order; "
        "scale only when named)",
    )
    parser.add_argument(
        "--scale-tasks",
        type=int,
        default=50000,
        help="scale phase: tasks in all (default 50000; of them --tasks are due together)",
    )
    parser.add_argument(
        "--scale-replicas", type=int, default=4, help="scale phase: replicas (default 4)"
    )
    parser.add_argument(
        "--scale-shards", type=int, default=8, help="scale phase: shards (default 8)"
    )
    parser.add_argument(
        "--cluster-dir",
        help="reuse this cluster if healthy, else start one there (default: a temporary one)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO / "bench" / "results" / f"{today}-fire.json",
        help="the JSON; the plot goes next to it with the suffix .png "
        "(default bench/results/<UTC date>-fire.json)",
    )
    parser.add_argument(
        "--replot",
        type=Path,
        metavar="JSON",
        help="only redraw the PNG of an earlier run's JSON (next to it) and exit",
    )
    parser.add_argument(
        "--py-spy",
        metavar="PATH",
        help="profile the operator with this py-spy during each fire window and each big start "
        "(the profiler costs CPU: numbers from such a run are not comparable); implies --keep",
    )
    parser.add_argument(
        "--operator-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the operator (repeatable), e.g. MALLOC_ARENA_MAX=2",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the work directory (operator logs, audit log)"
    )
    args = parser.parse_args(argv)
    if args.replot:
        earlier = json.loads(args.replot.read_text())
        earlier.setdefault("ratios", ratios(earlier))
        done = plot(earlier, args.replot.with_suffix(".png"))
        print(args.replot.with_suffix(".png") if done else "no plot")
        return 0 if done else 1
    args.keep = args.keep or bool(args.py_spy)
    phases = {p.strip() for p in args.phases.split(",") if p.strip()}
    unknown = phases - {"floor", "fire", "cronjob", "big", "scale"}
    if unknown:
        parser.error(f"unknown phases: {', '.join(sorted(unknown))}")

    workdir = Path(tempfile.mkdtemp(prefix="nightshift-bench-"))
    cluster = Cluster(args.cluster_dir, workdir)
    results: dict[str, Any] = {
        "benchmark": "fire",
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "host": {
            "cpus": os.cpu_count(),
            "loadavg": loadavg(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "commit": git_commit(),
        },
        "targets": TARGETS,
    }
    try:
        cluster.up()
        cluster.kubectl("apply", "-f", str(CRDS))
        names = [f"crd/{path.name.removesuffix('.yaml')}" for path in sorted(CRDS.glob("*.yaml"))]
        cluster.kubectl("wait", "--for=condition=Established", *names)
        results["cluster"] = {
            "dir": str(cluster.dir),
            "started_here": cluster.started,
            "audit_log": cluster.audit_log is not None,
            "kube_controller_manager": cluster.controller_manager(),
        }
        bench = Bench(args, cluster, workdir)
        # One phase at a time, never two together: they share the 2 cores.
        for run in range(1, args.repeat + 1):
            if "floor" in phases:
                results.setdefault("floor", []).append(bench.floor(run, raw=False))
                results.setdefault("floor_raw", []).append(bench.floor(run, raw=True))
                write(results, args.out)
            if "fire" in phases:
                results.setdefault("fire", []).append(bench.fire(run))
                write(results, args.out)
            if "cronjob" in phases:
                results.setdefault("cronjob", []).append(bench.cronjob(run))
                write(results, args.out)
        if "big" in phases:
            results["baseline"] = bench.baseline()
            for run in range(1, args.repeat + 1):
                results.setdefault("big", []).append(bench.big(args.big, run))
                write(results, args.out)
            if args.huge:
                results["huge"] = [bench.big(args.huge, 1)]
        if "scale" in phases:
            results["scale"] = [bench.scale()]
            write(results, args.out)
        results["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
        results["ratios"] = ratios(results)
        results["table"] = table(results)
        write(results, args.out)
        png = args.out.with_suffix(".png")
        plotted = plot(results, png)
        print()
        print_table(results["table"])
        print(f"\nresults: {args.out}" + (f", plot: {png}" if plotted else ""))
        if args.keep:
            print(f"work directory (operator logs): {workdir}")
    finally:
        cluster.down()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
