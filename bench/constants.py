"""The settings the bench's modules share: the operator's identity, the users the API server's
counts are told apart by, the pool size, the tick tasks, and the targets."""

from __future__ import annotations

from bench import REPO
from nightshift.jobs import LABEL_MANAGED

# Every CRD the chart installs: without Calendar and Backfill the operator lists them in vain
# and logs a 404 every few seconds per shard, which no installation does.
CRDS = REPO / "crds"
SELECTOR = f"{LABEL_MANAGED}=true"
OPERATOR_NS = "nightshift-bench"  # where the operator's ServiceAccount lives
OPERATOR_SA = "operator"
OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NS}:{OPERATOR_SA}"
FLOW_SCHEMA = "nightshift-bench-operator"
# kube-controller-manager runs with --use-service-account-credentials: one user per controller.
CRONJOB_USER = "system:serviceaccount:kube-system:cronjob-controller"
CRONJOB_DEADLINE = 600  # startingDeadlineSeconds: generous, a late fire is a skew, not a miss
CRONJOB_SYNCS_DEFAULT = 5  # kube-controller-manager --concurrent-cron-job-syncs default
WRITE_CALLS = ("create_job", "patch_status", "create_event", "delete_job")
WRITE_VERBS = ("create", "patch", "update", "delete")
THREADS = 16
MISS_AFTER = 60.0  # a task without a Job this long after T is a miss
TICK = "zz-tick"  # listed last (etcd lists by key): the worst case for a restart
TICK_EVERY = 10
SCALE_TICK = 4  # s: the interval of the scale phase's tick tasks
SCALE_LATE = 2 * SCALE_TICK  # s: a tick slot whose first Job came later than this is late
SCALE_PENDING = 50  # tasks with writes pending, over all replicas, that count as written
SCALE_CATCH_UP = 120.0  # s the scale phase waits at its end for tick slots still without a Job

TARGETS = {
    "api_writes_per_run": 3,
    "rss_mib_at_10000": 200,
    "first_fire_after_restart_s": 30,
    "p99_vs_floor": 1.2,
    "p99_vs_cronjob": 0.5,
    "scale_rss_mib_per_replica": 200,
}
