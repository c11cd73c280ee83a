"""The guards on the workload (issue 18) against the real API server. Each of these failed before:

- a user who may write ScheduledTasks but not create Jobs wrote a task, and got Jobs;
- a privileged template (hostPath /, privileged) was admitted and run;
- ``interval: 1s`` was admitted and fired every second;
- nothing at the API server held the operator's own Jobs to a Pod Security level.

The webhook runs in an operator process (kopf registers it for the test's namespace); the
operator judges again what slips past a webhook that is not there, and the chart's
ValidatingAdmissionPolicy judges the Jobs the operator's ServiceAccount creates.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from support.operator import Operator
from support.tasks import condition, jobs, reasons, status, task
from support.wait import poll

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = "spec.jobTemplate.spec.template.spec"
PRIVILEGED = {
    "spec": {
        "template": {
            "spec": {
                "containers": [
                    {
                        "name": "main",
                        "image": "registry.invalid/job:1",
                        "securityContext": {"privileged": True},
                    }
                ],
                "volumes": [{"name": "root", "hostPath": {"path": "/"}}],
            }
        }
    }
}


@contextlib.contextmanager
def webhook(cluster: Any, namespace: str, tmp_path: Path, **kwargs: Any) -> Iterator[Operator]:
    """An operator serving the webhook for ``namespace``, once the API server calls it."""
    name = f"{namespace}.nightshift.dev"
    op = Operator(cluster.kubeconfig, tmp_path, namespaces=[namespace], webhook=name, **kwargs)
    op.start()
    try:
        poll(
            lambda: cluster.kubectl(
                "get", "validatingwebhookconfiguration", name, check=False
            ).returncode == 0,
            timeout=20,
            what="the webhook configuration",
        )  # fmt: skip
        # With failurePolicy Ignore an unreachable webhook admits everything: probe until the
        # API server calls it (a cron syntax error only the webhook can see).
        probe = json.dumps(task("probe", schedule="61 * * * *"))
        poll(
            lambda: cluster.kubectl(
                "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=probe, check=False
            ).returncode != 0,
            timeout=20,
            what="the webhook to be called",
        )  # fmt: skip
        yield op
    finally:
        op.stop()
        cluster.kubectl("delete", "validatingwebhookconfiguration", name, check=False)


def apply(
    cluster: Any, manifest: dict[str, Any], namespace: str, *args: str
) -> subprocess.CompletedProcess[str]:
    result: subprocess.CompletedProcess[str] = cluster.kubectl(
        "apply", "-n", namespace, *args, "-f", "-", input=json.dumps(manifest), check=False
    )
    return result


def grant(cluster: Any, namespace: str, name: str, rules: list[dict[str, Any]], user: str) -> None:
    """A Role ``name`` with ``rules``, bound to ``user`` (a ServiceAccount's user name)."""
    _, _, sa_namespace, sa = user.split(":")
    objects = [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": name, "namespace": namespace},
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": sa_namespace}],
        },
    ]
    cluster.kubectl(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    )


def can(cluster: Any, user: str, verb: str, resource: str, namespace: str) -> bool:
    answer = cluster.kubectl(
        "auth", "can-i", verb, resource, f"--as={user}", "-n", namespace, check=False
    )
    return bool(answer.stdout.strip() == "yes")


# --- the SubjectAccessReview ----------------------------------------------------------------


def test_a_user_who_may_create_tasks_but_not_jobs_is_refused(
    cluster: Any, crd: None, namespace: str, tmp_path: Path
) -> None:
    cluster.kubectl("create", "serviceaccount", "author", "-n", namespace)
    user = f"system:serviceaccount:{namespace}:author"
    tasks_rule = {
        "apiGroups": ["nightshift.dev"],
        "resources": ["scheduledtasks"],
        "verbs": ["create", "get", "list", "watch", "update", "patch"],
    }
    grant(cluster, namespace, "tasks-only", [tasks_rule], user)
    poll(lambda: can(cluster, user, "create", "scheduledtasks.nightshift.dev", namespace),
         timeout=10, what="RBAC to allow the author tasks")  # fmt: skip
    assert not can(cluster, user, "create", "jobs.batch", namespace)

    with webhook(cluster, namespace, tmp_path):
        refused = apply(cluster, task("mine", interval="5m"), namespace, f"--as={user}")
        assert refused.returncode != 0
        assert (
            f"{user} may not create Jobs (batch) in namespace {namespace}: a ScheduledTask "
            "creates Jobs, so writing its spec needs that permission too"
        ) in refused.stderr, refused.stderr
        assert cluster.kubectl("get", "stask", "mine", "-n", namespace, check=False).returncode

        # Given Jobs too, the same author may write the task.
        jobs_rule = {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create"]}
        grant(cluster, namespace, "tasks-and-jobs", [jobs_rule], user)
        poll(lambda: can(cluster, user, "create", "jobs.batch", namespace),
             timeout=10, what="RBAC to allow the author Jobs")  # fmt: skip
        allowed = apply(cluster, task("mine", interval="5m"), namespace, f"--as={user}")
        assert allowed.returncode == 0, allowed.stderr

        # Without Jobs again, annotations (run now) still go through: they change no spec.
        cluster.kubectl("delete", "rolebinding", "tasks-and-jobs", "-n", namespace)
        poll(lambda: not can(cluster, user, "create", "jobs.batch", namespace),
             timeout=10, what="RBAC to refuse the author Jobs")  # fmt: skip
        annotated = cluster.kubectl(
            "annotate", "stask", "mine", "-n", namespace, "nightshift.dev/run-now=t1",
            f"--as={user}", check=False,
        )  # fmt: skip
        assert annotated.returncode == 0, annotated.stderr
        changed = apply(cluster, task("mine", interval="10m"), namespace, f"--as={user}")
        assert changed.returncode != 0
        assert "may not create Jobs" in changed.stderr


# --- Pod Security ---------------------------------------------------------------------------


def test_a_privileged_template_is_refused_at_admission_and_never_run_by_the_operator(
    cluster: Any, crd: None, namespace: str, tmp_path: Path
) -> None:
    bad = task("root", interval="2s", job_template=PRIVILEGED)
    with webhook(cluster, namespace, tmp_path):
        refused = apply(cluster, bad, namespace)
        assert refused.returncode != 0
        for field in (
            f"{TEMPLATE}.containers[0].securityContext.privileged: must not be true",
            f"{TEMPLATE}.volumes[0].hostPath: must not be set",
        ):
            assert field in refused.stderr, refused.stderr
        assert 'Pod Security "baseline" (the operator\'s default)' in refused.stderr

    # The webhook is down (failurePolicy Ignore admits everything): the operator refuses it.
    assert apply(cluster, bad, namespace).returncode == 0
    apply(cluster, task("fine", interval="2s"), namespace)
    op = Operator(cluster.kubeconfig, tmp_path, namespaces=[namespace], name="no-webhook")
    op.start()
    try:

        def refused_by_operator() -> dict[str, Any] | None:
            st = status(cluster, namespace, "root")
            return st if condition(st, "Ready").get("reason") == "PodSecurity" else None

        st = poll(refused_by_operator, timeout=20, what="Ready=False PodSecurity")
        message = condition(st, "Ready")["message"]
        assert f"{TEMPLATE}.containers[0].securityContext.privileged: must not be true" in message
        poll(lambda: len(jobs(cluster, namespace, "fine")) >= 2, timeout=20, what="two Jobs")
        time.sleep(3)  # a few more slots of both
        assert jobs(cluster, namespace, "root") == []
        assert reasons(cluster, namespace, "root") == ["PodSecurity"]
        assert condition(status(cluster, namespace, "fine"), "Ready")["status"] == "True"

        # A namespace its admins label privileged allows it, at once.
        cluster.kubectl(
            "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=privileged"
        )
        poll(lambda: jobs(cluster, namespace, "root"), timeout=20, what="a Job once privileged")
        assert "SpecValid" in reasons(cluster, namespace, "root")
    finally:
        op.stop()


# --- the minimum interval -------------------------------------------------------------------


def test_interval_1s_is_refused_at_admission_and_by_the_operator(
    cluster: Any, crd: None, namespace: str, tmp_path: Path
) -> None:
    fast = task("fast", interval="1s")
    expected = "spec.interval: 1s is below the minimum interval 1m (the operator's limit)"
    # The operator's default floor (1m): no --min-interval.
    with webhook(cluster, namespace, tmp_path, min_interval=None):
        refused = apply(cluster, fast, namespace)
        assert refused.returncode != 0
        assert expected in refused.stderr, refused.stderr
        assert apply(cluster, task("minutely", interval="1m"), namespace).returncode == 0

    assert apply(cluster, fast, namespace).returncode == 0  # no webhook: stored
    op = Operator(
        cluster.kubeconfig, tmp_path, namespaces=[namespace], name="floor", min_interval=None
    )
    op.start()
    try:

        def refused_by_operator() -> dict[str, Any] | None:
            st = status(cluster, namespace, "fast")
            return st if condition(st, "Ready").get("reason") == "IntervalTooShort" else None

        st = poll(refused_by_operator, timeout=20, what="Ready=False IntervalTooShort")
        assert condition(st, "Ready")["message"] == expected
        time.sleep(3)
        assert jobs(cluster, namespace, "fast") == []
        assert reasons(cluster, namespace, "fast") == ["IntervalTooShort"]
    finally:
        op.stop()


def test_an_excluded_namespace_gets_no_jobs(
    cluster: Any, crd: None, namespace: str, tmp_path: Path
) -> None:
    """The chart excludes kube-system and its own namespace: a task there is refused at
    admission, and one stored while the webhook was down gets no Job."""
    hourly = task("sneaky", schedule="* * * * *")
    expected = f"metadata.namespace: {namespace} is excluded from Nightshift"
    exclude = [f"--exclude-namespace={namespace}"]
    with webhook(cluster, namespace, tmp_path, extra_args=exclude):
        refused = apply(cluster, hourly, namespace)
        assert refused.returncode != 0
        assert expected in refused.stderr, refused.stderr

    assert apply(cluster, hourly, namespace).returncode == 0  # no webhook: stored
    cluster.kubectl("annotate", "stask", "sneaky", "-n", namespace, "nightshift.dev/run-now=now-1")
    op = Operator(
        cluster.kubeconfig, tmp_path, namespaces=[namespace], name="exclude", extra_args=exclude
    )
    op.start()
    try:

        def refused_by_operator() -> dict[str, Any] | None:
            st = status(cluster, namespace, "sneaky")
            return st if condition(st, "Ready").get("reason") == "NamespaceExcluded" else None

        st = poll(refused_by_operator, timeout=20, what="Ready=False NamespaceExcluded")
        assert condition(st, "Ready")["message"].startswith(expected)
        time.sleep(3)  # the run-now request and a minutely slot, had it not been refused
        assert jobs(cluster, namespace, "sneaky") == []
        assert reasons(cluster, namespace, "sneaky") == ["NamespaceExcluded"]
    finally:
        op.stop()


# --- the webhook port -----------------------------------------------------------------------


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def _post_reviews(port: int, namespace: str, count: int) -> list[int]:
    """``count`` UPDATE AdmissionReviews of ScheduledTasks that do not exist (a uid each),
    posted to the webhook port without any credentials, as any pod that reaches it could."""
    import http.client
    import ssl
    import uuid

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    codes: list[int] = []
    try:
        for i in range(count):
            uid = str(uuid.uuid4())
            obj = {
                "apiVersion": "nightshift.dev/v1alpha1",
                "kind": "ScheduledTask",
                "metadata": {"name": f"ghost-{i}", "namespace": namespace, "uid": uid},
                "spec": task("ghost")["spec"],
            }
            review = {
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "request": {
                    "uid": str(uuid.uuid4()),
                    "kind": {"group": "nightshift.dev", "version": "v1alpha1",
                             "kind": "ScheduledTask"},
                    "resource": {"group": "nightshift.dev", "version": "v1alpha1",
                                 "resource": "scheduledtasks"},
                    "namespace": namespace,
                    "name": obj["metadata"]["name"],
                    "operation": "UPDATE",
                    "userInfo": {"username": "nobody"},
                    "object": obj,
                    "oldObject": obj,
                },
            }  # fmt: skip
            conn.request(
                "POST", "/validate", json.dumps(review), {"Content-Type": "application/json"}
            )
            response = conn.getresponse()
            response.read()
            codes.append(response.status)
    finally:
        conn.close()
    return codes


def test_admission_reviews_of_made_up_objects_leave_nothing_behind(
    cluster: Any, crd: None, namespace: str, tmp_path: Path
) -> None:
    """Nothing authenticates a caller of the webhook port (the API server is the intended one,
    and the NetworkPolicy is not enforced by every CNI). kopf kept a memory per reviewed object
    until its watch saw the object deleted, and the operator's kopf watches nothing: 20,000
    reviews of made-up objects grew a replica by 20.6 MiB for good (98.4 to 119.0 MiB, measured
    before the fix).
    Now they leave it as it was."""
    with webhook(cluster, namespace, tmp_path) as op:
        assert op.proc is not None
        assert set(_post_reviews(op.webhook_port, namespace, 2000)) == {200}  # warm up
        before = _rss_kib(op.proc.pid)
        assert set(_post_reviews(op.webhook_port, namespace, 20000)) == {200}
        after = _rss_kib(op.proc.pid)
        print(f"\nRSS before {before / 1024:.1f} MiB, after 20,000 reviews {after / 1024:.1f} MiB")
        assert after - before < 8 * 1024, (before, after)


# --- the chart's ValidatingAdmissionPolicy --------------------------------------------------


def job(name: str, pod: dict[str, Any], *, managed: bool = True, **spec: Any) -> dict[str, Any]:
    labels = {"nightshift.dev/managed": "true"} if managed else {}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "registry.invalid/job:1"}],
                    **pod,
                }
            },
            **spec,
        },
    }


HARDENED = {
    "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
    "containers": [
        {
            "name": "main",
            "image": "registry.invalid/job:1",
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]},
            },
        }
    ],
}


def test_the_admission_policy_holds_the_operators_jobs_at_the_api_server(
    cluster: Any, namespace: str, tmp_path: Path
) -> None:
    release = f"p{secrets.token_hex(3)}"
    home = f"{namespace}-h"
    cluster.kubectl("create", "namespace", home)
    rendered = subprocess.run(
        [str(cluster.bin_dir / "helm"), "template", release, str(REPO / "charts" / "nightshift"),
         "--namespace", home, "--set", f"watchNamespaces={{{namespace}}}"],
        capture_output=True, text=True, check=True, env=cluster.env,
    ).stdout  # fmt: skip
    kinds = {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "ServiceAccount"}
    docs = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] in kinds]
    assert len(docs) == 3
    listed = json.dumps({"apiVersion": "v1", "kind": "List", "items": docs})
    operator = f"system:serviceaccount:{home}:{release}-nightshift"
    try:
        cluster.kubectl("apply", "-f", "-", input=listed)
        # The operator may create Jobs there (the chart's Role would grant it, among more).
        rule = {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create"]}
        grant(cluster, namespace, "operator-jobs", [rule], operator)

        def create(manifest: dict[str, Any]) -> str:
            """Why the API server would not create it for the operator (dry run); "": it would."""
            result = cluster.kubectl(
                "create", "-n", namespace, "--dry-run=server", f"--as={operator}",
                "-f", "-", input=json.dumps(manifest), check=False,
            )  # fmt: skip
            return "" if result.returncode == 0 else str(result.stderr)

        privileged = job("p", {"containers": [{
            "name": "main", "image": "registry.invalid/job:1",
            "securityContext": {"privileged": True},
        }]})  # fmt: skip
        # The API server loads a new policy asynchronously.
        poll(lambda: "privileged must not be true" in create(privileged), timeout=30,
             what="the policy to refuse a privileged Job")  # fmt: skip
        assert "securityContext.privileged must not be true" in create(privileged)
        assert create(job("plain", {})) == ""
        # Only the operator's Jobs: not the admin's, not one without the operator's label.
        admin = cluster.kubectl(
            "create", "-n", namespace, "--dry-run=server", "-f", "-",
            input=json.dumps(privileged), check=False,
        )  # fmt: skip
        assert admin.returncode == 0, admin.stderr
        assert create(job("p", privileged["spec"]["template"]["spec"], managed=False)) == ""
        selected = job("m", {}, manualSelector=True, selector={"matchLabels": {"a": "b"}})
        selected["spec"]["template"]["metadata"] = {"labels": {"a": "b"}}
        cases = {
            "hostPath": job("h", {"volumes": [{"name": "r", "hostPath": {"path": "/"}}]}),
            "hostNetwork": job("n", {"hostNetwork": True}),
            "nodeName": job("node", {"nodeName": "kwok-node-0"}),
            "tolerations": job("t", {"tolerations": [{"operator": "Exists"}]}),
            "manualSelector": selected,
        }
        for what, manifest in cases.items():
            assert what in create(manifest), what

        # The namespace's own level: restricted wants hardening, privileged allows it all.
        cluster.kubectl(
            "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
        )
        poll(lambda: "allowPrivilegeEscalation" in create(job("plain", {})), timeout=10,
             what="restricted to apply")  # fmt: skip
        assert create(job("hardened", HARDENED)) == ""
        cluster.kubectl(
            "label", "namespace", namespace,
            "pod-security.kubernetes.io/enforce=privileged", "--overwrite",
        )  # fmt: skip
        poll(lambda: create(privileged) == "", timeout=10, what="privileged to apply")

        # The namespace's ServiceAccount allowlist.
        cluster.kubectl(
            "annotate", "namespace", namespace, "nightshift.dev/allowed-service-accounts=builder"
        )
        deployer = job("d", {"serviceAccountName": "deployer"})
        poll(lambda: "not in the namespace's allowlist" in create(deployer), timeout=10,
             what="the allowlist to apply")  # fmt: skip
        assert create(job("b", {"serviceAccountName": "builder"})) == ""
        assert create(job("default", {})) == ""
    finally:
        cluster.kubectl("delete", "--ignore-not-found", "-f", "-", input=listed, check=False)
        cluster.kubectl("delete", "namespace", home, "--wait=false", check=False)
