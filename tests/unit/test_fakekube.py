"""The in-memory API server (``fakekube.FakeKube``) keeps the API server's promises the operator
relies on: the other tests are only as good as it is."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from fakekube import FakeClock, FakeKube

from nightshift.api import ApiError, Conflict, KubeApi, Unreachable

NS = "school"
SPEC: dict[str, Any] = {"schedule": "0 * * * *"}


def manifest(name: str, owner_uid: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "labels": {"nightshift.dev/managed": "true"},
            "ownerReferences": [
                {"kind": "ScheduledTask", "name": "t", "uid": owner_uid, "controller": True}
            ],
        },
        "spec": {},
    }


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_it_is_a_kube_api() -> None:
    api: KubeApi = FakeKube()  # mypy checks this line when run on tests/unit/test_fakekube.py
    assert callable(api.on_unreachable)


def test_resource_versions_grow_across_objects_and_uids_are_unique() -> None:
    fake = FakeKube(FakeClock("2026-03-01T03:00:00Z"))
    a = fake.create_task(NS, "a", SPEC)
    b = fake.create_task(NS, "b", SPEC)
    c = fake.write_status(NS, "a", {"runCount": 1})
    assert [int(o["metadata"]["resourceVersion"]) for o in (a, b, c)] == [100, 101, 102]
    assert a["metadata"]["uid"] != b["metadata"]["uid"]
    assert a["metadata"]["creationTimestamp"] == "2026-03-01T03:00:00Z"


@pytest.mark.parametrize(
    ("rv", "expected"),
    [
        pytest.param("100", {"runCount": 2, "schedule": "hourly"}, id="current rv: merged"),
        pytest.param("", {"runCount": 2, "schedule": "hourly"}, id="no rv: no precondition"),
        pytest.param("99", Conflict, id="stale rv: Conflict"),
    ],
)
def test_patch_status_precondition(rv: str, expected: Any) -> None:
    fake = FakeKube()
    fake.create_task(NS, "t", SPEC, status={"runCount": 1, "schedule": "hourly"})
    if expected is Conflict:
        with pytest.raises(Conflict):
            run(fake.patch_status(NS, "t", {"runCount": 2}, rv))
        assert fake.task(NS, "t")["status"] == {"runCount": 1, "schedule": "hourly"}
        return
    updated = run(fake.patch_status(NS, "t", {"runCount": 2}, rv))
    assert updated["status"] == expected
    assert updated["metadata"]["resourceVersion"] == "101"


def test_patch_status_is_a_merge_patch_nulls_pruned_and_none_when_gone() -> None:
    fake = FakeKube()
    fake.create_task(NS, "t", SPEC, status={"a": {"b": 1, "c": 2}, "d": [1, 2]})
    updated = run(fake.patch_status(NS, "t", {"a": {"b": None}, "d": [{"e": 3, "f": None}]}, ""))
    assert updated["status"] == {"a": {"c": 2}, "d": [{"e": 3}]}
    assert run(fake.patch_status(NS, "gone", {}, "")) is None


def test_a_recreated_namesake_refuses_the_old_resource_version() -> None:
    fake = FakeKube()
    old = fake.create_task(NS, "t", SPEC)
    fake.delete_task(NS, "t")
    fake.create_task(NS, "t", SPEC)
    with pytest.raises(Conflict):
        run(fake.patch_status(NS, "t", {"runCount": 9}, old["metadata"]["resourceVersion"]))


@pytest.mark.parametrize(
    ("owner", "expected"),
    [
        pytest.param("uid-task", "adopted", id="our Job: adopted"),
        pytest.param("uid-other", "conflict", id="someone else's Job: conflict"),
    ],
)
def test_create_job_already_exists(owner: str, expected: str) -> None:
    fake = FakeKube()
    fake.put_job(NS, manifest("j", owner))
    kind, _, body = run(fake.create_job(NS, manifest("j", "uid-task"), "uid-task"))
    assert kind == expected
    assert (body is not None) == (expected == "adopted")
    assert fake.job_names(NS) == ["j"]


def test_faults_transient_raise_permanent_refuse_unreachable_reports() -> None:
    fake = FakeKube()
    unreachable: list[int] = []
    fake.on_unreachable = lambda: unreachable.append(1)
    fake.fail("create_job", ApiError("throttled", status=429, transient=True))
    fake.fail("create_job", ApiError("invalid", status=422, transient=False))
    fake.fail("get_task", Unreachable("no answer"), times=None)
    with pytest.raises(ApiError, match="throttled"):
        run(fake.create_job(NS, manifest("a", "u"), "u"))
    assert run(fake.create_job(NS, manifest("a", "u"), "u")) == ("error", "invalid", None)
    assert run(fake.create_job(NS, manifest("a", "u"), "u"))[0] == "created"
    for _ in range(2):
        with pytest.raises(Unreachable):
            run(fake.get_task(NS, "a"))
    assert unreachable == [1, 1]
    fake.heal("get_task")
    assert run(fake.get_task(NS, "a")) is None
    assert fake.verbs() == ["create_job"] * 3 + ["get_task"] * 3


def test_delete_with_uid_leaves_a_namesake_and_takes_the_pods() -> None:
    fake = FakeKube()
    first = fake.put_job(NS, manifest("j", "u"))
    fake.remove_job(NS, "j")
    fake.put_job(NS, manifest("j", "u"))
    fake.add_pod(NS, "j", exit_code=0)
    run(fake.delete_job(NS, "j", first["metadata"]["uid"]))
    assert fake.job_names(NS) == ["j"]
    run(fake.delete_job(NS, "j"))
    assert fake.job_names(NS) == []
    assert fake.pods == {}


def test_pod_outcome_reads_only_pods_the_job_controls() -> None:
    fake = FakeKube()
    job = fake.put_job(NS, manifest("j", "u"))
    uid = job["metadata"]["uid"]
    assert run(fake.pod_outcome(NS, "j", uid)) == (None, None)
    fake.add_pod(NS, "j", exit_code=3, message="bad input")
    fake.add_pod(NS, "j", exit_code=9, owner_uid="uid-impostor")
    assert run(fake.pod_outcome(NS, "j", uid)) == (3, "bad input")


def test_lists_are_paged_from_one_snapshot() -> None:
    path = f"/apis/nightshift.dev/v1alpha1/namespaces/{NS}/scheduledtasks"

    async def scenario() -> list[list[str]]:
        fake = FakeKube(page_size=2)
        for name in "abc":
            fake.create_task(NS, name, SPEC)
        pages: list[list[str]] = []
        token = ""
        while True:
            params = {"limit": "500", **({"continue": token} if token else {})}
            page = await fake.list_raw("list_tasks", path, params, json.loads)
            pages.append([o["metadata"]["name"] for o in page["items"]])
            if len(pages) == 1:
                fake.delete_task(NS, "c")  # after the first page: the snapshot still has it
            token = page["metadata"].get("continue", "")
            if not token:
                return pages

    assert run(scenario()) == [["a", "b"], ["c"]]


def test_leases_conflict_on_a_stale_resource_version() -> None:
    fake = FakeKube()
    body = {"metadata": {"name": "l", "namespace": "ops"}, "spec": {"holderIdentity": "a"}}
    assert run(fake.create_lease("ops", body)) is True
    assert run(fake.create_lease("ops", body)) is False
    lease = run(fake.read_lease("ops", "l"))
    taken = {**lease, "spec": {"holderIdentity": "b"}}
    assert run(fake.replace_lease("ops", "l", taken)) is True
    assert run(fake.replace_lease("ops", "l", {**lease, "spec": {"holderIdentity": "c"}})) is False
    assert run(fake.read_lease("ops", "l"))["spec"] == {"holderIdentity": "b"}


def test_hold_keeps_a_call_in_flight_until_released() -> None:
    async def scenario() -> None:
        fake = FakeKube()
        fake.create_task(NS, "t", SPEC)
        hold = fake.hold("patch_status")
        write = asyncio.create_task(fake.patch_status(NS, "t", {"runCount": 1}, "100"))
        await hold.arrived.wait()
        fake.write_status(NS, "t", {"runCount": 5})  # lands while ours is in flight
        hold.release()
        with pytest.raises(Conflict):
            await write

    run(scenario())
