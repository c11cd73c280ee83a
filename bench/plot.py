"""The PNG next to the JSON: the CDF of the fire skew per phase and run (with matplotlib, an
optional dependency; without it, no plot)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.host import say
from bench.report import fmt

# (phase key, label, colour) in the order the plot's legend lists them
PLOTTED = (
    ("floor", "floor (default client)", "tab:gray"),
    ("floor_raw", "floor (raw responses)", "tab:green"),
    ("fire", "Nightshift", "tab:blue"),
    ("cronjob", "CronJob controller", "tab:orange"),
    ("scale", "Nightshift, shards over replicas", "tab:purple"),
)


def plot(results: dict[str, Any], png: Path) -> bool:
    """Empirical CDFs of the fire skew (ms, log x) per phase and run, a vertical line at each p99;
    a task without a Job (a miss) keeps its curve under 1."""
    try:
        import matplotlib  # noqa: PLC0415 (optional: pip install -e ".[bench]")

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
        import matplotlib.ticker  # noqa: PLC0415
    except ImportError:
        say('no plot: matplotlib is not installed (pip install -c constraints.txt -e ".[bench]")')
        return False
    fig, ax = plt.subplots(figsize=(10, 6), dpi=120)
    styles = ("-", "--", ":", "-.")
    plotted = 0
    for key, label, colour in PLOTTED:
        for i, run in enumerate(results.get(key, []), 1):
            skew = run.get("skew") or {}
            skews = skew.get("skews_ms")
            if not skews:
                continue
            xs = [max(v, 0.1) for v in sorted(skews)]  # log axis: an early Job is drawn at 0.1 ms
            ys = [(k + 1) / run["tasks"] for k in range(len(xs))]
            style = styles[(i - 1) % len(styles)]
            name = label if len(results.get(key, [])) == 1 else f"{label}, run {i}"
            extra = f", {len(skew['misses'])} misses" if skew.get("misses") else ""
            ax.step(
                [xs[0], *xs],
                [0.0, *ys],
                where="post",
                color=colour,
                linestyle=style,
                label=f"{name}: p50 {skew['p50_ms']:g} ms, p99 {skew['p99_ms']:g} ms{extra}",
            )
            ax.axvline(skew["p99_ms"], color=colour, linestyle=style, linewidth=0.8, alpha=0.6)
            plotted += 1
    if not plotted:
        plt.close(fig)
        say("no plot: no skews in the results")
        return False
    ax.set_xscale("log")
    plain = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")
    ax.xaxis.set_major_formatter(plain)
    low, high = ax.get_xlim()
    # Under two decades there are too few powers of ten: label the minor ticks too.
    ax.xaxis.set_minor_formatter(plain if high / low < 100 else matplotlib.ticker.NullFormatter())
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("fire skew: Job ADDED at the watcher - slot time (ms, log scale)")
    ax.set_ylabel("fraction of tasks with a Job")
    ax.axhline(0.99, color="black", linewidth=0.5, linestyle=":")
    ax.grid(True, which="both", alpha=0.3)
    host = results.get("host", {})
    commit = (host.get("commit") or "?")[:12] + (
        "+dirty" if "dirty" in (host.get("commit") or "") else ""
    )
    ax.set_title(
        f"Fire skew, N = {results['args']['tasks']} due at the same minute; commit {commit}, "
        f"{results.get('started', '')[:10]}, {host.get('cpus')} CPUs\n"
        "(vertical lines: p99)",
        fontsize=10,
    )
    against = {"p99_vs_floor": "floor", "p99_vs_cronjob": "CronJob controller"}
    notes = [
        f"Nightshift p99 / {against.get(name, name)} p99: {fmt(r['measured'], 'x')} "
        f"(target ≤ {r['target_max']}: {'met' if r['met'] else 'not met'})"
        for name, r in results.get("ratios", {}).items()
    ]
    if notes:
        ax.text(
            0.01,
            0.97,
            "\n".join(notes),
            transform=ax.transAxes,
            va="top",
            fontsize=9,
            bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"},
        )
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)
    plt.close(fig)
    return True
