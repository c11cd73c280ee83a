"""``nightshift.kube``: how the real client's answers become what the controller acts on.

The official client's API objects are replaced by stubs that answer from a script (a JSON body or
an ``ApiException``) and record every request's arguments; no cluster is involved. These are the
issue 12 defects whose origin was this module: an exit code erased by a transient error, a
throttled create recorded as a failed run, status patched without a resourceVersion, and requests
without timeouts.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3
from kubernetes.client.exceptions import ApiException

from nightshift.api import ApiError, Conflict, Unreachable
from nightshift.kube import KubeClient, classify

NS = "school"


class Response:
    def __init__(self, body: Any) -> None:
        self.data = json.dumps(body).encode()

    def release_conn(self) -> None:
        pass


class Stub:
    """Any client API object: every method answers the next scripted answer for its name."""

    def __init__(self, answers: dict[str, list[Any]]) -> None:
        self.answers = answers
        self.requests: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, method: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.requests.append((method, args, kwargs))
            answer = self.answers[method].pop(0)
            if isinstance(answer, BaseException):
                raise answer
            return Response(answer) if kwargs.get("_preload_content") is False else answer

        return call


def refused(status: int, message: str = "", retry_after: str | None = None) -> ApiException:
    error = ApiException(status=status, reason="Refused")
    error.body = json.dumps({"message": message}) if message else None
    error.headers = {"Retry-After": retry_after} if retry_after else None
    return error


@pytest.fixture
def client() -> Iterator[KubeClient]:
    kube = KubeClient(max_workers=2)
    yield kube
    kube.close()


class RawResponse:
    """What the raw requests read: a urllib3 response."""

    def __init__(self, body: Any, status: int = 201) -> None:
        self.status = status
        self.data = json.dumps(body).encode()

    def release_conn(self) -> None:
        pass


def stub(kube: KubeClient, **answers: list[Any]) -> Stub:
    fake = Stub(answers)
    kube._batch = kube._core = kube._custom = kube._coordination = kube._authorization = fake

    def call_api(method: str, url: str, **kwargs: Any) -> Any:
        # A Job is POSTed raw (nightshift.kube._raw): answer it from the same script.
        if method != "POST" or not url.endswith("/jobs"):
            raise AssertionError(f"unexpected raw request {method} {url}")
        fake.requests.append(("create_namespaced_job", (url,), kwargs))
        answer = answers["create_namespaced_job"].pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return type("Answer", (), {"response": RawResponse(answer)})()

    kube._api_client.call_api = call_api  # type: ignore[method-assign]
    return fake


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.mark.parametrize(
    ("status", "message", "retry_after", "transient", "hint"),
    [
        pytest.param(429, "", "3", True, 3.0, id="throttled, with Retry-After"),
        pytest.param(500, "", None, True, None, id="500"),
        pytest.param(503, "", None, True, None, id="503"),
        pytest.param(
            403,
            'jobs.batch is forbidden: User "system:serviceaccount:x:y" cannot create resource',
            None,
            True,
            None,
            id="403 for the operator's own permissions: transient (an admin fixes the role)",
        ),
        pytest.param(403, "exceeded quota: compute", None, False, None, id="403 quota: an answer"),
        pytest.param(422, "Job.batch is invalid", None, False, None, id="422 invalid"),
        pytest.param(429, "", "soon", True, None, id="an unreadable Retry-After is no hint"),
    ],
)
def test_classify(
    status: int, message: str, retry_after: str | None, transient: bool, hint: float | None
) -> None:
    error = classify("create Job school/t-1", refused(status, message, retry_after))
    assert (error.status, error.transient, error.retry_after) == (status, transient, hint)
    assert str(error).startswith("create Job school/t-1: ")


def test_an_unreadable_pod_list_raises_instead_of_answering_no_exit_code(
    client: KubeClient,
) -> None:
    """issue 12: "pod_outcome turns any ApiException into 'no exit code'"."""
    stub(client, list_namespaced_pod=[refused(500)])
    with pytest.raises(ApiError) as error:
        run(client.pod_outcome(NS, "t-1", "job-uid"))
    assert error.value.transient


def test_pod_outcome_reads_only_pods_the_job_controls(client: KubeClient) -> None:
    def pod(created: str, uid: str, code: int) -> dict[str, Any]:
        return {
            "metadata": {
                "creationTimestamp": created,
                "ownerReferences": [{"uid": uid, "controller": True}],
            },
            "status": {"containerStatuses": [{"state": {"terminated": {"exitCode": code}}}]},
        }

    pods = {
        "items": [
            pod("2026-03-01T03:00:01Z", "job-uid", 3),
            pod("2026-03-01T03:00:09Z", "someone-else", 0),  # newer, but not the Job's
        ]
    }
    stub(client, list_namespaced_pod=[pods])
    assert run(client.pod_outcome(NS, "t-1", "job-uid")) == (3, None)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        pytest.param(refused(429, retry_after="3"), ApiError, id="throttled: raised, transient"),
        pytest.param(refused(503), ApiError, id="unavailable: raised, transient"),
        pytest.param(
            refused(422, "Job.batch is invalid"),
            ("error", "Job.batch is invalid", None),
            id="invalid: a permanent refusal, recorded",
        ),
    ],
)
def test_create_job_errors(client: KubeClient, error: ApiException, expected: Any) -> None:
    """issue 12's transient create errors: a 429 says nothing about the run."""
    stub(client, create_namespaced_job=[error])
    manifest = {"metadata": {"name": "t-1"}}
    if expected is ApiError:
        with pytest.raises(ApiError) as raised:
            run(client.create_job(NS, manifest, "task-uid"))
        assert raised.value.transient
    else:
        assert run(client.create_job(NS, manifest, "task-uid")) == expected


def test_a_job_is_posted_as_json_and_only_what_the_controller_reads_is_kept(
    client: KubeClient,
) -> None:
    manifest = {"metadata": {"name": "t-1", "labels": {"a": "b"}}, "spec": {"parallelism": 1}}
    answer = {
        "metadata": {
            "name": "t-1",
            "uid": "job-uid",
            "managedFields": [{"manager": "nightshift"}],
            "annotations": {"nightshift.dev/run": "r"},
        },
        "spec": {"template": {"spec": {"containers": [{"name": "main", "image": "x"}]}}},
    }
    api = stub(client, create_namespaced_job=[answer])
    kind, message, job = run(client.create_job(NS, manifest, "task-uid"))
    (_, (url,), kwargs), *_ = api.requests
    assert url.endswith(f"/apis/batch/v1/namespaces/{NS}/jobs")
    assert kwargs["body"] == manifest
    assert kwargs["header_params"]["Content-Type"] == "application/json"
    assert (kind, message) == ("created", "")
    assert job is not None
    assert job["metadata"]["uid"] == "job-uid"
    assert job["metadata"]["annotations"] == {"nightshift.dev/run": "r"}
    assert "managedFields" not in job["metadata"]
    assert "template" not in job.get("spec", {})


@pytest.mark.parametrize(
    ("owner", "kind"),
    [("task-uid", "adopted"), ("other-uid", "conflict")],
)
def test_create_job_already_exists(client: KubeClient, owner: str, kind: str) -> None:
    existing = {"metadata": {"ownerReferences": [{"uid": owner, "controller": True}]}}
    stub(client, create_namespaced_job=[refused(409)], read_namespaced_job=[existing])
    assert run(client.create_job(NS, {"metadata": {"name": "t-1"}}, "task-uid"))[0] == kind


def test_patch_status_is_conditional_on_the_resource_version(client: KubeClient) -> None:
    """issue 12: "status is merge-patched without a resourceVersion"."""
    api = stub(
        client,
        patch_namespaced_custom_object_status=[
            {"metadata": {"resourceVersion": "43"}},
            refused(409, "the object has been modified"),
            refused(404),
        ],
    )
    assert run(client.patch_status(NS, "t", {"runCount": 2}, "42")) == {
        "metadata": {"resourceVersion": "43"}
    }
    body = api.requests[0][1][-1]
    assert body == {"metadata": {"resourceVersion": "42"}, "status": {"runCount": 2}}
    with pytest.raises(Conflict):
        run(client.patch_status(NS, "t", {"runCount": 2}, "42"))
    assert run(client.patch_status(NS, "t", {"runCount": 2}, "42")) is None


@pytest.mark.parametrize(
    ("uid", "error", "raised"),
    [
        pytest.param("job-uid", refused(409), False, id="a namesake (uid precondition): left"),
        pytest.param(None, refused(404), False, id="already gone: fine"),
        pytest.param(None, refused(500), True, id="500: raised"),
    ],
)
def test_delete_job(client: KubeClient, uid: str | None, error: ApiException, raised: bool) -> None:
    api = stub(client, delete_namespaced_job=[error])
    if raised:
        with pytest.raises(ApiError):
            run(client.delete_job(NS, "t-1", uid))
    else:
        run(client.delete_job(NS, "t-1", uid))
    options = api.requests[0][2]["body"]
    assert options.get("preconditions") == ({"uid": uid} if uid else None)
    assert options["propagationPolicy"] == "Background"


@pytest.mark.parametrize(
    ("owner", "deleted"),
    [("task-uid", True), ("someone-else", False), (None, False)],
)
def test_delete_job_by_owner_deletes_only_a_job_the_task_controls(
    client: KubeClient, owner: str | None, deleted: bool
) -> None:
    """issue 18: "Replace deletes Jobs by the names in status.active without checking
    ownership": a name without a known uid is read first, and deleted only if the task controls
    it, with its uid as the precondition (so a namesake created in between is spared too)."""
    refs = [{"uid": owner, "controller": True}] if owner else []
    found = {"metadata": {"uid": "job-uid", "ownerReferences": refs}}
    api = stub(client, read_namespaced_job=[found], delete_namespaced_job=[{}])
    run(client.delete_job(NS, "t-1", owner_uid="task-uid"))
    deletes = [r for r in api.requests if r[0] == "delete_namespaced_job"]
    if deleted:
        ((_, _, kwargs),) = deletes
        assert kwargs["body"]["preconditions"] == {"uid": "job-uid"}
    else:
        assert deletes == []
    stub(client, read_namespaced_job=[refused(404)])
    run(client.delete_job(NS, "gone", owner_uid="task-uid"))  # already gone: fine


def test_every_request_has_connect_and_read_timeouts(client: KubeClient) -> None:
    """issue 12: "kube.py passes no _request_timeout"."""
    job = {"metadata": {"name": "t-1"}}
    api = stub(
        client,
        create_namespaced_job=[job],
        delete_namespaced_job=[{}],
        get_namespaced_custom_object=[{}],
        patch_namespaced_custom_object_status=[{}],
        list_namespaced_pod=[{"items": []}],
        list_namespaced_custom_object=[{"items": []}],
        list_namespaced_job=[{"items": []}],
        create_namespaced_event=[{}],
        patch_namespaced_event=[{}],
        create_subject_access_review=[{"status": {"allowed": True}}],
        read_namespaced_lease=[refused(404)],
        create_namespaced_lease=[{}],
        replace_namespaced_lease=[{}],
    )

    async def everything() -> None:
        await client.create_job(NS, job, "u")
        await client.delete_job(NS, "t-1")
        await client.get_task(NS, "t")
        await client.patch_status(NS, "t", {}, "1")
        await client.pod_outcome(NS, "t-1", "u")
        async for _ in client.list_tasks(NS):
            pass
        async for _ in client.list_jobs(NS, "a=b"):
            pass
        await client.post_event({"metadata": {"name": "t", "namespace": NS}}, "Normal", "R", "m")
        await client.patch_event(NS, "t.1", 2, "m")
        await client.may_create_jobs(NS, {"username": "u"})
        await client.read_lease(NS, "l")
        await client.create_lease(NS, {})
        await client.replace_lease(NS, "l", {})

    run(everything())
    assert len(api.requests) == 13
    for method, _, kwargs in api.requests:
        connect, read = kwargs.get("_request_timeout") or (None, None)
        assert connect is not None, method
        assert read is not None, method
        assert 0 < connect <= read <= 30, method


def test_no_answer_is_unreachable_and_reported(client: KubeClient) -> None:
    stub(client, get_namespaced_custom_object=[urllib3.exceptions.ProtocolError("reset")])
    calls: list[int] = []
    client.on_unreachable = lambda: calls.append(1)
    with pytest.raises(Unreachable):
        run(client.get_task(NS, "t"))
    assert calls == [1]


def test_a_list_the_server_is_slow_to_answer_is_not_called_unreachable(client: KubeClient) -> None:
    """At 50,000 tasks an overloaded API server took over 30 s to answer a shard's first list;
    calling that unreachable made every shard of the replica list again and stop syncing
    meanwhile (its other shards fired nothing for minutes). Only a connection that fails is."""
    calls: list[int] = []
    client.on_unreachable = lambda: calls.append(1)
    timed_out = urllib3.exceptions.ReadTimeoutError(None, "/apis", "Read timed out.")  # type: ignore[arg-type]

    def slow(*args: Any, **kwargs: Any) -> Any:
        raise timed_out

    client._api_client.call_api = slow  # type: ignore[method-assign]
    with pytest.raises(ApiError) as raised:
        run(client.list_raw("list_tasks", "/apis/x", {"limit": "500"}, json.loads))
    assert not isinstance(raised.value, Unreachable)
    assert raised.value.transient
    assert "slow" in str(raised.value)
    assert calls == []

    def refused_connection(*args: Any, **kwargs: Any) -> Any:
        raise urllib3.exceptions.NewConnectionError(None, "refused")  # type: ignore[arg-type]

    stub(client, list_namespaced_pod=[timed_out])
    with pytest.raises(ApiError) as raised:
        run(client.pod_outcome(NS, "t-1", "job-uid"))  # a Job's pods: a list too
    assert not isinstance(raised.value, Unreachable)
    assert calls == []

    client._api_client.call_api = refused_connection  # type: ignore[method-assign]
    with pytest.raises(Unreachable):
        run(client.list_raw("list_tasks", "/apis/x", {"limit": "500"}, json.loads))
    assert calls == [1]


def test_writes_wait_for_the_client_side_limit_and_the_lease_never_does() -> None:
    kube = KubeClient(max_workers=2, qps=20, burst=2)
    job = {"metadata": {"name": "t-1"}}
    stub(
        kube,
        create_namespaced_job=[job] * 4,
        list_namespaced_pod=[{"items": []}] * 4,
        replace_namespaced_lease=[{}] * 4,
    )
    loop_time: list[float] = []

    async def timed(coro: Any) -> None:
        start = asyncio.get_running_loop().time()
        await coro
        loop_time.append(asyncio.get_running_loop().time() - start)

    async def scenario() -> None:
        for _ in range(4):  # two at once, then one every 50 ms
            await timed(kube.create_job(NS, job, "u"))
        for _ in range(4):  # reads are not limited
            await timed(kube.pod_outcome(NS, "t-1", "u"))
        for _ in range(4):  # nor is the Lease
            await timed(kube.replace_lease(NS, "l", {}))

    try:
        run(scenario())
    finally:
        kube.close()
    creates, reads, leases = loop_time[:4], loop_time[4:8], loop_time[8:]
    assert creates[2] >= 0.04
    assert creates[3] >= 0.04
    assert max(reads + leases) < 0.04


def test_a_subject_access_review_asks_for_the_requesting_user_exactly() -> None:
    kube = KubeClient(max_workers=1)
    api = stub(
        kube,
        create_subject_access_review=[
            {"status": {"allowed": False, "reason": "no RBAC policy matched"}},
            {"status": {"allowed": True}},
        ],
    )
    user = {
        "username": "alice",
        "uid": "42",
        "groups": ["dev", "system:authenticated"],
        "extra": {"scopes": ["a", "b"]},
    }
    try:
        assert run(kube.may_create_jobs("team", user)) == (False, "no RBAC policy matched")
        assert run(kube.may_create_jobs("team", {"username": "bob"})) == (True, "")
    finally:
        kube.close()
    method, args, _ = api.requests[0]
    assert method == "create_subject_access_review"
    assert args[0]["spec"] == {
        "user": "alice",
        "uid": "42",
        "groups": ["dev", "system:authenticated"],
        "extra": {"scopes": ["a", "b"]},
        "resourceAttributes": {
            "namespace": "team",
            "verb": "create",
            "group": "batch",
            "resource": "jobs",
        },
    }


def test_an_event_counted_again_is_patched_and_a_gone_one_says_so(client: KubeClient) -> None:
    api = stub(client, patch_namespaced_event=[{}, refused(404)])
    assert run(client.patch_event(NS, "t.1", 3, "m")) is True
    assert run(client.patch_event(NS, "t.1", 4, "m")) is False
    _, args, _ = api.requests[0]
    assert args[:2] == ("t.1", NS)
    patch = args[2]
    assert patch["count"] == 3
    assert patch["series"]["count"] == 3
    assert patch["series"]["lastObservedTime"].endswith("Z")


def test_a_watch_stops_reading_while_the_event_loop_lags_behind(
    client: KubeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Back-pressure: a flood of watch events waits in the socket, not in memory."""
    import threading

    from nightshift import kube

    monkeypatch.setattr(kube, "WATCH_BUFFER", 50)
    read = []
    done = threading.Event()

    class Stream:
        def stream(self, amt: Any = None, decode_content: bool = True) -> Iterator[bytes]:
            for i in range(1000):
                read.append(i)
                yield b'{"n": %d}\n' % i
            done.set()

        def release_conn(self) -> None:
            pass

        def shutdown(self) -> None:
            pass

    monkeypatch.setattr(client, "_raw", lambda *args: Stream())

    async def scenario() -> tuple[int, int]:
        stream = client.watch_raw("watch_x", "/x", {}, json.loads)
        first = await anext(stream)  # the loop takes one batch, then lags behind
        await asyncio.sleep(0.3)
        lagging = len(read)
        taken = len(first)
        async for batch in stream:  # it catches up: everything arrives, in order
            taken += len(batch)
            if taken == 1000:
                break
        await stream.aclose()
        return lagging, taken

    lagging, taken = run(scenario())
    assert lagging <= 2 * 50 + 1
    assert taken == 1000
