"""The results in short: Nightshift's p99 over the floor's and the CronJob controller's, the
table of every metric against its target, and the JSON file with the commit measured."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from bench import REPO
from bench.constants import TARGETS

Row = tuple[str, str, str, str]  # metric, measured, target, met
HEADER: Row = ("metric", "measured (run 1 / run 2 / …)", "target", "met")


def values(runs: list[dict[str, Any]], *path: str) -> list[Any]:
    out = []
    for run in runs:
        value: Any = run
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        out.append(value)
    return out


def fmt(items: list[Any], unit: str = "") -> str:
    shown = ["—" if v is None else (f"{v:g}" if isinstance(v, float) else str(v)) for v in items]
    return " / ".join(shown) + (f" {unit}" if unit and any(v is not None for v in items) else "")


def within(items: list[Any], limit: float) -> bool | None:
    """Every run at or under the limit (None: nothing measured)."""
    if all(v is None for v in items):
        return None
    return all(v is not None and v <= limit for v in items)


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    """Nightshift's p99 (each run) over the best p99 of the floor (both variants, every run) and
    over the best p99 of the CronJob controller (every run), with the targets."""
    fire = values(results.get("fire", []), "skew", "p99_ms")
    floor = [
        v for key in ("floor", "floor_raw") for v in values(results.get(key, []), "skew", "p99_ms")
    ]
    references = {
        "p99_vs_floor": ("best floor p99 (both variants, every run)", floor),
        "p99_vs_cronjob": (
            "best CronJob controller p99 (every run)",
            values(results.get("cronjob", []), "skew", "p99_ms"),
        ),
    }
    out: dict[str, Any] = {}
    for name, (what, p99s) in references.items():
        best = min((v for v in p99s if v), default=None)
        if not fire or best is None:
            continue
        measured = [round(v / best, 2) if v is not None else None for v in fire]
        out[name] = {
            "measured": measured,
            "target_max": TARGETS[name],
            "met": within(measured, TARGETS[name]),
            "nightshift_p99_ms": fire,
            "reference_p99_ms": best,
            "reference": what,
        }
    return out


def table(results: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []

    def add(metric: str, measured: str, target: str = "", ok: bool | None = None) -> None:
        rows.append((metric, measured, target, "" if ok is None else ("yes" if ok else "NO")))

    def misses_duplicates(runs: list[dict[str, Any]]) -> tuple[str, bool]:
        misses = [len(m) if m is not None else None for m in values(runs, "skew", "misses")]
        dups = values(runs, "skew", "duplicates_after_runs")
        pairs = [f"{m}, {d}" for m, d in zip(misses, dups, strict=True)]
        return " / ".join(pairs), all(m == 0 and d == 0 for m, d in zip(misses, dups, strict=True))

    n = results["args"]["tasks"]
    for key, label in (("floor", "default client"), ("floor_raw", "raw responses")):
        runs = results.get(key, [])
        if not runs:
            continue
        for p in ("p50", "p99"):
            add(f"floor ({label}) {p}, {n} Jobs", fmt(values(runs, "skew", f"{p}_ms"), "ms"))
        add(f"floor ({label}): API server CPU", fmt(cpu_of(runs, "kube-apiserver"), "s"))

    fire = results.get("fire", [])
    if fire:
        for p in ("p50", "p90", "p99", "max"):
            add(
                f"Nightshift skew {p}, {n} tasks due together",
                fmt(values(fire, "skew", f"{p}_ms"), "ms"),
            )
        shown, ok = misses_duplicates(fire)
        add("Nightshift misses, duplicates", shown, "0, 0", ok)
        add("operator CPU in the fire window", fmt(cpu_of(fire, "operator"), "s"))
        add(
            "operator CPU until every run settled",
            fmt(cpu_of(fire, "operator", "cpu_until_settled"), "s"),
        )
        add("operator peak RSS (VmHWM)", fmt(values(fire, "operator", "rss_mib", "VmHWM"), "MiB"))
        add(
            "API server CPU in the fire window (Nightshift)",
            fmt(cpu_of(fire, "kube-apiserver"), "s"),
        )
        add(
            "kube-controller-manager CPU in the fire window (Nightshift)",
            fmt(cpu_of(fire, "kube-controller-manager"), "s"),
        )

    cron = results.get("cronjob", [])
    if cron:
        for p in ("p50", "p90", "p99", "max"):
            add(
                f"CronJob controller skew {p}, {n} CronJobs",
                fmt(values(cron, "skew", f"{p}_ms"), "ms"),
            )
        shown, _ = misses_duplicates(cron)
        add("CronJob controller misses, duplicates", shown)
        add(
            "kube-controller-manager CPU in the fire window (CronJob)",
            fmt(cpu_of(cron, "kube-controller-manager"), "s"),
        )
        add(
            "kube-controller-manager CPU until every run settled (CronJob)",
            fmt(cpu_of(cron, "kube-controller-manager", "cpu_until_settled"), "s"),
        )
        add("API server CPU in the fire window (CronJob)", fmt(cpu_of(cron, "kube-apiserver"), "s"))

    for name, label in (
        ("p99_vs_floor", "Nightshift p99 / floor p99 (best floor run)"),
        ("p99_vs_cronjob", "Nightshift p99 / CronJob controller p99 (best run)"),
    ):
        ratio = results.get("ratios", {}).get(name)
        if ratio:
            target = ratio["target_max"]
            add(label, fmt(ratio["measured"], "x"), f"≤ {target} x", ratio["met"])

    writes = TARGETS["api_writes_per_run"]
    if fire:
        measured = values(fire, "api", "operator_writes_per_run")
        add(
            "Nightshift API writes per successful run (operator)",
            fmt(measured),
            f"≤ {writes}",
            within(measured, writes),
        )
        add(
            "Nightshift API calls per successful run (operator)",
            fmt(values(fire, "api", "operator_total_per_run")),
        )
        measured = values(fire, "api", "audit_writes_per_run")
        if any(v is not None for v in measured):
            add(
                "Nightshift API writes per run (server audit log)",
                fmt(measured),
                f"≤ {writes}",
                within(measured, writes),
            )
            add(
                "Nightshift API requests per run (server audit log)",
                fmt(values(fire, "api", "audit_total_per_run")),
            )
    if cron:
        if any(v is not None for v in values(cron, "api", "audit_writes_per_run")):
            add(
                "CronJob controller API writes per run (audit log)",
                fmt(values(cron, "api", "audit_writes_per_run")),
            )
            add(
                "CronJob controller API requests per run (audit log)",
                fmt(values(cron, "api", "audit_total_per_run")),
            )
        add(
            "CronJob phase: Job and CronJob writes per run (API server, no Events)",
            fmt(values(cron, "api", "server_writes_per_run_without_events")),
        )

    if results.get("baseline"):
        add("RSS, no tasks", fmt([results["baseline"].get("VmRSS")], "MiB"))
    for key in ("big", "huge"):
        runs = results.get(key, [])
        if not runs:
            continue
        size = runs[0]["tasks"] - 1
        at_target = size >= 10000  # the targets are for 10,000 tasks
        rss_limit = TARGETS["rss_mib_at_10000"]
        rss = f"≤ {rss_limit} MiB at 10,000"
        for label, path in (
            (f"RSS at {size} tasks (VmRSS)", ("first_start", "VmRSS")),
            (f"peak RSS at {size} tasks (VmHWM)", ("first_start", "VmHWM")),
        ):
            measured = values(runs, *path)
            add(
                label, fmt(measured, "MiB"), rss, within(measured, rss_limit) if at_target else None
            )
        add(
            f"first start, {size} tasks: all loaded",
            fmt(values(runs, "first_start", "loaded_s"), "s"),
        )
        add(f"first start, {size} tasks: idle", fmt(values(runs, "first_start", "idle_s"), "s"))
        limit = TARGETS["first_fire_after_restart_s"]
        measured = values(runs, "restart", "first_fire_s")
        add(
            f"first fire after kill -9, {size} tasks",
            fmt(measured, "s"),
            f"≤ {limit} s at 10,000",
            within(measured, limit) if at_target else None,
        )
        add(f"all {size} loaded after restart", fmt(values(runs, "restart", "loaded_s"), "s"))
        add(f"RSS after restart, {size} tasks", fmt(values(runs, "restart", "VmRSS"), "MiB"))
        add(f"peak RSS after restart, {size} tasks", fmt(values(runs, "restart", "VmHWM"), "MiB"))
    for run in results.get("scale", []):
        where = f"{run['total_tasks']} tasks, {run['replicas']} replicas, {run['shards']} shards"
        limit = TARGETS["scale_rss_mib_per_replica"]
        for label, key in (("loaded", "load"), ("after the kill", "after_kill")):
            hwm = [r["VmHWM"] for r in run.get(key, {}).values()]
            add(
                f"scale ({where}): peak RSS per replica, {label}",
                fmt(hwm, "MiB"),
                f"≤ {limit} MiB",
                within(hwm, limit),
            )
        add(
            "scale: load time per replica",
            fmt([r["loaded_s"] for r in run.get("load", {}).values()], "s"),
        )
        skew = run.get("skew") or {}
        add(
            f"scale: p99 of {run['tasks']} due together (misses, duplicates)",
            f"{skew.get('p99_ms')} ms ({len(skew.get('misses') or [])}, {skew.get('duplicates')})",
        )
        kill = run.get("kill9") or {}
        fired = kill.get("first_fire_s")
        first = "none within 120 s" if kill and fired is None else f"{fired} s"
        add(
            "scale: kill -9: its shards held by others (first Job of its tick tasks)",
            f"{kill.get('shards_taken_s')} s ({first})",
            "≤ 15 s",
            within([kill.get("shards_taken_s")], 15),
        )
        slots = run.get("slots") or {}
        late = (
            f" ({slots['late_slots']} late, the latest +{slots['latest_s']} s)"
            if "late_slots" in slots
            else ""
        )
        add(
            "scale: kill -9 and 1 → 3 → 2: duplicates, lost slots",
            f"{slots.get('duplicates')}, {slots.get('lost_slots')}{late}",
            "0, 0",
            slots.get("duplicates") == 0 and slots.get("lost_slots") == 0,
        )
    return rows


def cpu_of(runs: list[dict[str, Any]], process: str, window: str = "cpu_during_fire") -> list[Any]:
    return [(run.get(window) or {}).get("cpu_s", {}).get(process) for run in runs]


def print_table(rows: list[Row]) -> None:
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    line = " | ".join(f"{{:<{w}}}" for w in widths)
    print(line.format(*HEADER))
    print("-+-".join("-" * w for w in widths))
    for row in rows:
        print(line.format(*row))


def write(results: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps(results, indent=2, default=str) + "\n")
    tmp.replace(out)


def git_commit() -> str | None:
    res = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    )
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "operator"],
        capture_output=True,
        text=True,
        check=False,
    )
    return (
        (res.stdout.strip() + ("+dirty" if dirty.stdout.strip() else ""))
        if res.returncode == 0
        else None
    )
