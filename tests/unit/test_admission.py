"""The webhook's judgement of a task write: one row per situation, whether it is refused, with
which HTTP code, a message naming the field (or the permission), and whether a
SubjectAccessReview was asked."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from fakekube import FakeKube

from nightshift.admission import Denied, Reviewer
from nightshift.api import ApiError
from nightshift.guard import Limits
from nightshift.namespaces import Namespaces

NS = "team"
ALICE = {"username": "alice", "uid": "1", "groups": ["devs", "system:authenticated"]}
POD = {"containers": [{"name": "main", "image": "busybox"}]}


def task(pod: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "t", "namespace": NS},
        "spec": {
            "interval": "5m",
            "jobTemplate": {"spec": {"template": {"spec": {**POD, **(pod or {})}}}},
            **spec,
        },
    }


def review(
    body: dict[str, Any],
    *,
    operation: str = "CREATE",
    old: dict[str, Any] | None = None,
    user: dict[str, Any] = ALICE,
    labels: dict[str, str] | None = None,
    fake: FakeKube | None = None,
    check_access: bool = True,
) -> tuple[Denied | None, list[str]]:
    """(the refusal or None, the users a SubjectAccessReview was asked for)."""
    fake = fake or FakeKube()

    async def run() -> Denied | None:
        policies = Namespaces(fake)
        policies.seen("ADDED", {"metadata": {"name": NS, "labels": labels or {}}})
        policies.synced.set()
        reviewer = Reviewer(
            fake, policies, Limits(min_interval=timedelta(minutes=1)), check_access=check_access
        )
        try:
            await reviewer.review(operation=operation, body=body, old=old, user=user)
        except Denied as denied:
            return denied
        return None

    denied = asyncio.run(run())
    return denied, [c.name or "" for c in fake.calls if c.verb == "may_create_jobs"]


def test_a_valid_task_from_someone_who_may_create_jobs_is_admitted() -> None:
    assert review(task()) == (None, ["alice"])


def test_someone_who_may_create_tasks_but_not_jobs_is_refused() -> None:
    fake = FakeKube()
    fake.no_jobs[NS] = {"alice"}
    denied, asked = review(task(), fake=fake)
    assert denied is not None
    assert denied.code == 403
    assert str(denied) == (
        "alice may not create Jobs (batch) in namespace team: a ScheduledTask creates Jobs, so "
        "writing its spec needs that permission too"
    )
    assert asked == ["alice"]
    # A group is enough to be refused, and the whole userInfo is what is asked about.
    fake.no_jobs[NS] = {"devs"}
    assert review(task(), fake=fake)[0] is not None
    # With the check off, only the spec is judged.
    assert review(task(), fake=FakeKube(), check_access=False) == (None, [])


def test_a_write_that_leaves_the_spec_alone_is_not_judged() -> None:
    """Run-now and resume annotate the task, the shard labeller labels it: they start no Job
    its spec did not allow, and a spec refused since (a namespace relabelled, an older
    operator) must not block them."""
    fake = FakeKube()
    fake.no_jobs[NS] = {"alice"}
    body = task()
    annotated = {**body, "metadata": {**body["metadata"], "annotations": {"a": "b"}}}
    assert review(annotated, operation="UPDATE", old=body, fake=fake) == (None, [])
    stored = task(interval="1s")
    labelled = {**stored, "metadata": {**stored["metadata"], "labels": {"b": "7"}}}
    assert review(labelled, operation="UPDATE", old=stored, fake=fake) == (None, [])
    changed = task(interval="10m")
    denied, asked = review(changed, operation="UPDATE", old=body, fake=fake)
    assert denied is not None
    assert asked == ["alice"]


def test_a_review_that_cannot_be_made_refuses() -> None:
    fake = FakeKube()
    fake.fail(
        "may_create_jobs", ApiError("cannot create resource subjectaccessreviews", status=403)
    )
    denied, _ = review(task(), fake=fake)
    assert denied is not None
    assert denied.code == 403
    assert str(denied).startswith("could not check that alice may create Jobs in team: ")


@pytest.mark.parametrize(
    ("body", "labels", "code", "message"),
    [
        (
            task({"containers": [{"name": "m", "securityContext": {"privileged": True}}]}),
            None,
            403,
            'Pod Security "baseline" (the operator\'s default): spec.jobTemplate.spec.template.'
            "spec.containers[0].securityContext.privileged: must not be true",
        ),
        (
            task({"hostNetwork": True}),
            {"pod-security.kubernetes.io/enforce": "privileged"},
            None,
            "",
        ),
        (
            task(interval="1s"),
            None,
            422,
            "spec.interval: 1s is below the minimum interval 1m (the operator's limit)",
        ),
        (task(interval="1ms"), None, 422, "spec.interval: 1ms is below the minimum interval 1m"),
        (task(timeZone="Mars/Olympus"), None, 422, "spec.timeZone: "),
    ],
)
def test_what_the_operator_would_refuse_is_refused_at_admission_naming_the_field(
    body: dict[str, Any], labels: dict[str, str] | None, code: int | None, message: str
) -> None:
    denied, asked = review(body, labels=labels)
    assert (denied.code if denied else None) == code
    if denied is not None:
        assert str(denied).startswith(message)
        assert asked == []  # refused before asking the API server anything
    else:
        assert asked == ["alice"]


@pytest.mark.parametrize("operation", ["DELETE", "CONNECT"])
def test_other_operations_pass(operation: str) -> None:
    assert review(task(interval="1s"), operation=operation) == (None, [])
