#!/usr/bin/env python3
"""`make dev`: on the running local cluster, install the CRD, start the operator (with its webhook)
in the background, apply the examples, and show `kubectl get stask` and recent Events.

On a cluster with a real node (`make dev NODE=real`) the examples' Jobs select that node, so
their pods run the job images for real (`kubectl logs`, real exit codes and signals).

The operator keeps running after this script exits; `make dev-down` (or `make cluster-down`)
stops it. Its log is .cluster/logs/operator.log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# tests/support is the local-cluster kit the tests use too (the cluster handle, the real node's
# label and taint, the webhook certificate). It is no installed package, and `make dev-down` runs
# this with the system Python: its modules used here need only the standard library.
sys.path.insert(0, str(REPO / "tests"))

from support.certs import self_signed  # noqa: E402
from support.cluster import Cluster, on_real_node  # noqa: E402

STATE = Path(os.environ.get("NIGHTSHIFT_CLUSTER_DIR") or REPO / ".cluster").resolve()
NAMESPACE = os.environ.get("NIGHTSHIFT_DEV_NAMESPACE", "nightshift-demo")
WATCH_SECONDS = int(os.environ.get("NIGHTSHIFT_DEV_WATCH", "75"))
# The examples that show something within a minute on the local cluster.
DEMO = [
    "01-cron.yaml",
    "03-interval.yaml",
    "06-retries.yaml",
    "07-forbid.yaml",
    "08-timeout.yaml",
    "09-history.yaml",
    "10-run-now.yaml",
    "11-pause-on-failure.yaml",
    "12-deadline.yaml",
]


def say(message: str) -> None:
    print(f"dev: {message}", flush=True)


def cluster() -> Cluster:
    return Cluster.from_state(STATE, owned=False)


def kubectl(*args: str, check: bool = True, stdin: str | None = None) -> str:
    result = cluster().kubectl(*args, check=False, input=stdin, timeout=None)
    if check and result.returncode != 0:
        sys.exit(f"dev: {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


def webhook_cert() -> tuple[Path, Path]:
    """A self-signed serving certificate for 127.0.0.1 (the API server calls the webhook there)."""
    return self_signed(STATE / "pki", days=365, alt_names="IP:127.0.0.1,DNS:localhost")


def apply_example(path: Path, real_node: bool) -> None:
    if not real_node:
        kubectl("apply", "-n", NAMESPACE, "-f", str(path))
        return
    # Its pods select the real node and tolerate its taint (hack/cluster/realnode.py).
    task = json.loads(
        kubectl("create", "--dry-run=client", "-o", "json", "-n", NAMESPACE, "-f", str(path))
    )
    kubectl("apply", "-n", NAMESPACE, "-f", "-", stdin=json.dumps(on_real_node(task)))


def operator_running(pid_file: Path) -> bool:
    try:
        pid = int(pid_file.read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


def start_operator() -> None:
    pid_file = STATE / "pids" / "operator.pid"
    log_file = STATE / "logs" / "operator.log"
    if operator_running(pid_file):
        say(f"operator already running (pid {pid_file.read_text().strip()}); log: {log_file}")
        return
    cert, key = webhook_cert()
    env = {**os.environ, "KUBECONFIG": str(STATE / "kubeconfig")}
    command = [
        str(REPO / ".venv" / "bin" / "nightshift"), "run",
        "--health-port", "0", "--metrics-port", "9090",
        "--webhook-port", "9443", "--webhook-addr", "127.0.0.1", "--webhook-host", "127.0.0.1",
        "--webhook-cert", str(cert), "--webhook-key", str(key),
        "--webhook-manage", "nightshift.dev",
        # The examples fire every 10 to 30 s to show their behaviour quickly; a cluster's
        # default floor is 1m.
        "--min-interval", "10s",
    ]  # fmt: skip
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(str(proc.pid))
    # Wait for the webhook registration, so the examples are validated on the way in.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        out = kubectl("get", "validatingwebhookconfiguration", "nightshift.dev", check=False)
        if "nightshift.dev" in out:
            break
        if proc.poll() is not None:
            sys.exit(f"dev: the operator exited; see {log_file}")
        time.sleep(0.5)
    say(f"operator started (pid {proc.pid}); log: {log_file}; metrics: http://127.0.0.1:9090/")


def stop_operator() -> None:
    pid_file = STATE / "pids" / "operator.pid"
    if operator_running(pid_file):
        pid = int(pid_file.read_text())
        os.killpg(pid, signal.SIGTERM)
        say(f"operator (pid {pid}) stopped")
    pid_file.unlink(missing_ok=True)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "down":
        stop_operator()
        return 0
    kubectl("apply", "-f", str(REPO / "crds"))
    for path in sorted((REPO / "crds").glob("*.yaml")):
        kubectl("wait", "--for=condition=Established", f"crd/{path.stem}")
    say("CRD installed")
    start_operator()
    kubectl("create", "namespace", NAMESPACE, check=False)
    real = cluster().real_node
    for name in DEMO:
        apply_example(REPO / "examples" / name, real)
    kubectl(
        "annotate", "-n", NAMESPACE, "stask", "on-demand",
        f"nightshift.dev/run-now=dev-{int(time.time())}", "--overwrite",
    )  # fmt: skip
    where = "the real node" if real else "the KWOK nodes"
    say(f"applied {len(DEMO)} examples to namespace {NAMESPACE} (Jobs on {where}), and asked "
        "on-demand to run now")  # fmt: skip
    end = time.monotonic() + WATCH_SECONDS
    while True:
        view = kubectl("get", "stask", "-n", NAMESPACE)
        events = kubectl(
            "get", "events", "-n", NAMESPACE, "--field-selector",
            "involvedObject.kind=ScheduledTask", "--sort-by=.lastTimestamp",
        ).splitlines()  # fmt: skip
        if sys.stdout.isatty():
            print("\033[2J\033[H", end="")
        print(time.strftime("%H:%M:%S"), f"kubectl get stask -n {NAMESPACE}")
        print(view)
        print("recent events:")
        print("\n".join(events[:1] + events[-12:]))
        if time.monotonic() >= end:
            break
        time.sleep(5)
    say("the operator keeps running. Try:")
    print('  eval "$(hack/cluster/cluster.py env)"')
    print(f"  kubectl describe stask -n {NAMESPACE} flaky-sync")
    print("  make dev-down      # stop the operator;  make cluster-down  # stop everything")
    return 0


if __name__ == "__main__":
    sys.exit(main())
