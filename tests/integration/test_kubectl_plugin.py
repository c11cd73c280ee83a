"""`kubectl nightshift` against the real control plane, run the way users run it: as a process.

Tasks are scheduled once a year (Jan 1, 03:00 UTC), so every run here is a run-now request. KWOK
plays the pods: by default they succeed after about a second; pod-template annotations make them
fail with an exit code and a termination message. Pods on KWOK have no logs. The CRD and the
operator come from the shared `crd` and `operator` fixtures (tests/support/fixtures.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from support.operator import Operator
from support.tasks import status
from support.wait import poll

VENV_BIN = Path(sys.executable).parent
PLUGIN = VENV_BIN / "kubectl-nightshift"
YEARLY = "0 3 1 1 *"
MESSAGE = "disk full: /var/backup has 0 bytes free; the nightly dump was not written anywhere"


def task(
    name: str, *, pod_annotations: dict[str, str] | None = None, **spec: Any
) -> dict[str, Any]:
    template: dict[str, Any] = {
        "spec": {"containers": [{"name": "main", "image": "registry.invalid/job:1"}]}
    }
    if pod_annotations:
        template["metadata"] = {"annotations": pod_annotations}
    return {
        "apiVersion": "nightshift.dev/v1alpha1",
        "kind": "ScheduledTask",
        "metadata": {"name": name},
        "spec": {"schedule": YEARLY, **spec, "jobTemplate": {"spec": {"template": template}}},
    }


def failing(name: str, **spec: Any) -> dict[str, Any]:
    annotations = {"test.nightshift.dev/exit-code": "3", "test.nightshift.dev/message": MESSAGE}
    return task(name, pod_annotations=annotations, **spec)


def plugin(
    cluster: Any, *args: str, kubeconfig: Path | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """`kubectl-nightshift --kubeconfig K ARGS`, with no $KUBECONFIG to fall back on."""
    assert PLUGIN.exists(), f"{PLUGIN} is missing: install the package (make venv)"
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    res = subprocess.run(
        [str(PLUGIN), "--kubeconfig", str(kubeconfig or cluster.kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    assert "Traceback" not in res.stderr, res.stderr
    return res


def test_run_wait_exit_codes_history_and_logs(
    cluster: Any, namespace: str, operator: Operator
) -> None:
    cluster.apply(task("ok"), namespace)
    retry = {"maxRetries": 1, "backoff": {"initial": "1s", "jitter": False}}
    cluster.apply(failing("bad", retry=retry), namespace)

    res = plugin(cluster, "-n", namespace, "run", "ok", "--wait", "--timeout", "3m")
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("scheduledtask.nightshift.dev/ok: run requested (token ")
    assert "Succeeded (attempt 1, exit 0" in lines[-1]

    res = plugin(cluster, "run", "bad", "--wait", "--timeout", "3m", "-n", namespace)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "Failed (after 2 attempts, exit 3" in res.stdout
    assert "disk full" in res.stdout
    assert "attempt 2: retry not before" in res.stderr or "attempt 2: Failed" in res.stderr

    res = plugin(cluster, "-n", namespace, "history", "bad")
    assert res.returncode == 0, res.stderr
    header, *rows = res.stdout.splitlines()
    assert header.split()[:6] == ["RUN", "ATTEMPT", "RESULT", "EXIT", "STARTED", "DURATION"]
    assert len(rows) == 2
    for row, attempt in zip(rows, ("2", "1"), strict=True):
        assert row.split()[1:4] == [attempt, "Failed", "3"]
        assert "disk full: /var/backup" in row
        assert MESSAGE not in row  # cut to 60 characters in the table
    res = plugin(cluster, "-n", namespace, "history", "bad", "-o", "json")
    data = json.loads(res.stdout)
    assert [(r["attempt"], r["exitCode"], r["message"]) for r in data["runs"]] == [
        (2, 3, MESSAGE),
        (1, 3, MESSAGE),
    ]
    assert yaml.safe_load(plugin(cluster, "-n", namespace, "history", "ok", "-o", "yaml").stdout)[
        "runs"
    ][0]["result"] == ("Succeeded")

    # KWOK pods have no logs: the API refuses, and the plugin says which pod it tried.
    res = plugin(cluster, "-n", namespace, "logs", "bad")
    assert res.returncode == 1
    job = data["runs"][0]["job"]
    assert f"Error: cannot read the log of pod {namespace}/{job}-" in res.stderr
    assert res.stderr.count("Error:") == 1


def test_run_twice_creates_two_runs(cluster: Any, namespace: str, operator: Operator) -> None:
    cluster.apply(task("twice", concurrencyPolicy="Allow"), namespace)
    first = json.loads(plugin(cluster, "-n", namespace, "run", "twice", "-o", "json").stdout)
    # The operator acts on the annotation's latest value: let it take the first request.
    poll(
        lambda: status(cluster, namespace, "twice").get("runNowToken") == first["token"],
        timeout=60,
        what="the first run-now request to be taken",
    )
    second = json.loads(plugin(cluster, "-n", namespace, "run", "twice", "-o", "json").stdout)
    assert first["run"] != second["run"]
    assert first["job"] != second["job"]

    def both_done() -> bool:
        runs = status(cluster, namespace, "twice").get("runs") or []
        done = {r["run"]: r for r in runs if r["result"] == "Succeeded"}
        return first["run"] in done and second["run"] in done

    poll(both_done, timeout=90, what="both manual runs to succeed")
    jobs = cluster.get("jobs", "-n", namespace, "-l", "nightshift.dev/task=twice")["items"]
    assert {first["job"], second["job"]} <= {j["metadata"]["name"] for j in jobs}


def test_suspend_resume_next_and_list(cluster: Any, crd: None, namespace: str) -> None:
    cluster.apply(task("nightly", schedule="30 2 * * *", timeZone="America/New_York"), namespace)

    res = plugin(cluster, "-n", namespace, "suspend", "nightly", "--reason", "storage migration")
    assert res.returncode == 0, res.stderr
    assert res.stdout == "scheduledtask.nightshift.dev/nightly suspended\n"
    obj = cluster.get("stask", "nightly", "-n", namespace)
    assert obj["spec"]["suspend"] is True
    assert obj["metadata"]["annotations"]["nightshift.dev/suspend-reason"] == "storage migration"

    res = plugin(cluster, "-n", namespace, "next", "nightly", "-n", "3")
    assert res.returncode == 0, res.stderr
    header, *times = res.stdout.splitlines()
    assert header.split() == ["LOCAL", "(America/New_York)", "UTC"]
    assert len(times) == 3
    for line in times:
        local, utc = line.split()
        assert local[11:19] in ("02:30:00", "03:00:00")  # 03:00 on the spring-forward day
        assert utc.endswith("Z")
    assert "suspended" in res.stderr

    res = plugin(cluster, "-n", namespace, "resume", "nightly")
    assert res.returncode == 0, res.stderr
    obj = cluster.get("stask", "nightly", "-n", namespace)
    assert obj["spec"]["suspend"] is False
    assert "nightshift.dev/suspend-reason" not in (obj["metadata"].get("annotations") or {})
    res = plugin(cluster, "next", "nightly", "--namespace", namespace, "--count", "2", "-o", "json")
    data = json.loads(res.stdout)
    assert data["suspended"] is False
    assert len(data["times"]) == 2
    assert res.stderr == ""

    res = plugin(cluster, "list", "-A")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split()[:2] == ["NAMESPACE", "NAME"]
    row = next(line for line in res.stdout.splitlines() if line.startswith(namespace + " "))
    assert row.split()[1:3] == ["nightly", "30"]
    assert "(America/New_York)" in row
    listed = json.loads(plugin(cluster, "-n", namespace, "list", "-o", "json").stdout)
    assert [(r["name"], r["suspend"]) for r in listed] == [("nightly", False)]

    res = plugin(cluster, "-n", namespace, "history", "nightly")
    assert (res.returncode, res.stdout) == (0, "no runs yet\n")


def test_errors_are_one_line_and_exit_1(
    cluster: Any, crd: None, namespace: str, tmp_path: Path
) -> None:
    res = plugin(cluster, "-n", namespace, "history", "nope")
    assert res.returncode == 1
    assert res.stderr == f'Error: scheduledtask "nope" not found in namespace "{namespace}"\n'
    for args in (["run", "nope"], ["suspend", "nope"], ["next", "nope"], ["logs", "nope"]):
        res = plugin(cluster, "-n", namespace, *args)
        assert res.returncode == 1
        assert "not found" in res.stderr

    config = yaml.safe_load(cluster.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
    dead = tmp_path / "dead.kubeconfig"
    dead.write_text(yaml.safe_dump(config))
    res = plugin(cluster, "list", kubeconfig=dead)
    assert res.returncode == 1
    assert res.stderr.startswith(
        "Error: cannot reach the Kubernetes API server at https://127.0.0.1:1"
    )

    res = plugin(cluster, "list", kubeconfig=tmp_path / "missing")
    assert (res.returncode, res.stderr) == (
        1,
        f"Error: kubeconfig {tmp_path / 'missing'}: no such file\n",
    )

    res = plugin(cluster, "history")
    assert res.returncode == 2
    assert "usage: kubectl nightshift history" in res.stderr


def test_a_user_without_rbac_is_told_forbidden(
    cluster: Any, crd: None, namespace: str, tmp_path: Path
) -> None:
    cluster.apply(task("secret"), namespace)
    cluster.kubectl("create", "serviceaccount", "nobody", "-n", namespace)
    token = cluster.kubectl("create", "token", "nobody", "-n", namespace).stdout.strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    server = admin["clusters"][0]["cluster"]
    user_config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {
                    "server": server["server"],
                    "certificate-authority-data": server["certificate-authority-data"],
                },
            }
        ],
        "users": [{"name": "nobody", "user": {"token": token}}],
        "contexts": [
            {
                "name": "nobody",
                "context": {"cluster": "local", "user": "nobody", "namespace": namespace},
            }
        ],
        "current-context": "nobody",
    }
    path = tmp_path / "nobody.kubeconfig"
    path.write_text(yaml.safe_dump(user_config))

    # No -n: the namespace comes from the kubeconfig context.
    res = plugin(cluster, "history", "secret", kubeconfig=path)
    assert res.returncode == 1
    assert res.stderr.startswith("Error: forbidden: ")
    assert f'"system:serviceaccount:{namespace}:nobody"' in res.stderr
    assert f'in the namespace "{namespace}"' in res.stderr
    assert res.stderr.count("\n") == 1
    res = plugin(cluster, "run", "secret", kubeconfig=path)
    assert (res.returncode, res.stderr.startswith("Error: forbidden: ")) == (1, True)


def test_kubectl_finds_the_plugin_on_path(cluster: Any, crd: None, namespace: str) -> None:
    cluster.apply(task("via-kubectl"), namespace)
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{cluster.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("KUBECONFIG", None)
    kubectl = str(cluster.bin_dir / "kubectl")
    res = subprocess.run(
        [kubectl, "nightshift", "--help"], capture_output=True, text=True, env=env, check=False
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("usage: kubectl nightshift")
    res = subprocess.run(
        [kubectl, "nightshift", "--kubeconfig", str(cluster.kubeconfig), "-n", namespace, "list"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[1].split()[0] == "via-kubectl"
