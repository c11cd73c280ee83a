"""The informer (``nightshift.informer``): paged lists fed in with back-pressure, a watch resumed
from the last version, 410 and errors answered by a new list, and the decoders that keep only
what the controller reads. The API is a script: each list page and watch stream is given here as
the bytes the API server would send."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import Any, TypeVar

from nightshift.api import ApiError
from nightshift.informer import JOBS, TASKS, Informer
from nightshift.workqueue import Backoff

T = TypeVar("T")


def task(name: str, rv: int, uid: str | None = None) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": uid or f"u-{name}",
            "resourceVersion": str(rv),
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
        },
        "spec": {"interval": "1h"},
    }


def line(kind: str, obj: dict[str, Any]) -> bytes:
    return json.dumps({"type": kind, "object": obj}).encode()


class Script:
    """Answers list_raw and watch_raw from queues of pages and streams, recording the calls."""

    def __init__(self) -> None:
        self.pages: list[dict[str, Any] | ApiError] = []
        self.streams: list[list[bytes] | ApiError] = []
        self.calls: list[tuple[str, dict[str, str]]] = []
        self.on_unreachable: Callable[[], None] = lambda: None
        self.hang = asyncio.Event()  # an exhausted script: the watch waits here

    async def list_raw(
        self, verb: str, path: str, params: Mapping[str, str], decode: Callable[[bytes], T]
    ) -> T:
        self.calls.append((verb, dict(params)))
        page = self.pages.pop(0)
        if isinstance(page, ApiError):
            raise page
        return decode(json.dumps(page).encode())

    async def watch_raw(
        self, verb: str, path: str, params: Mapping[str, str], decode: Callable[[bytes], T]
    ) -> AsyncGenerator[list[T], None]:
        self.calls.append((verb, dict(params)))
        if not self.streams:
            await self.hang.wait()
            return
        stream = self.streams.pop(0)
        if isinstance(stream, ApiError):
            raise stream
        yield [decode(raw) for raw in stream]


class Sink:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []  # (kind, name, rv)
        self.lists: list[set[tuple[str, str, str]]] = []
        self.marks = 0

    def listing(self) -> int:
        self.marks += 1
        return self.marks

    def event(self, kind: str, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        assert "managedFields" not in meta  # never kept
        self.events.append((kind, meta["name"], meta["resourceVersion"]))

    def listed(self, mark: int, seen: set[tuple[str, str, str]]) -> None:
        self.lists.append(seen)


async def run_until(informer: Informer, done: Callable[[], bool]) -> None:
    runner = asyncio.create_task(informer.run())
    for _ in range(200):
        await asyncio.sleep(0)
        if done():
            break
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    assert done(), "the informer never got there"


def test_a_list_in_pages_then_a_watch_from_its_version() -> None:
    script, sink = Script(), Sink()
    script.pages = [
        {"metadata": {"resourceVersion": "50", "continue": "p2"}, "items": [task("a", 10)]},
        {"metadata": {"resourceVersion": "50"}, "items": [task("b", 11)]},
    ]
    script.streams = [
        [
            line("ADDED", task("c", 51)),
            line("BOOKMARK", {"metadata": {"resourceVersion": "60"}}),
        ]
    ]
    informer = Informer(script, TASKS, sink, namespace="ns", selector="x=y")  # type: ignore[arg-type]

    asyncio.run(run_until(informer, lambda: len(script.calls) >= 4))
    assert sink.events == [("RESYNC", "a", "10"), ("RESYNC", "b", "11"), ("ADDED", "c", "51")]
    assert sink.lists == [{("ns", "a", "u-a"), ("ns", "b", "u-b")}]
    (verb1, first), (verb2, second), (verb3, watch), (verb4, again) = script.calls
    assert (verb1, verb2, verb3, verb4) == (
        "list_tasks",
        "list_tasks",
        "watch_tasks",
        "watch_tasks",
    )
    assert first == {"labelSelector": "x=y", "limit": "500"}
    assert second["continue"] == "p2"
    assert (watch["resourceVersion"], watch["allowWatchBookmarks"]) == ("50", "true")
    assert again["resourceVersion"] == "60"  # resumed after the bookmark, not listed again


def test_410_gone_lists_again() -> None:
    script, sink = Script(), Sink()
    empty = {"metadata": {"resourceVersion": "5"}, "items": []}
    script.pages = [empty, {"metadata": {"resourceVersion": "90"}, "items": [task("a", 80)]}]
    script.streams = [[line("ERROR", {"kind": "Status", "code": 410, "message": "too old"})]]
    informer = Informer(script, TASKS, sink)  # type: ignore[arg-type]

    asyncio.run(run_until(informer, lambda: len(sink.lists) == 2))
    assert [verb for verb, _ in script.calls][:3] == ["list_tasks", "watch_tasks", "list_tasks"]
    assert sink.lists[1] == {("ns", "a", "u-a")}


def test_a_list_again_asks_for_no_older_state_than_last_seen_from_the_watch_cache() -> None:
    """A list after the first shows no state older than what the informer already saw, and a
    first list no older than the version its owner gives (the shard Lease it took): the API
    server serves both from its watch cache. Only an informer that knows no version makes a
    consistent read, which a busy server may serve from etcd (50,000 tasks: over 30 s)."""
    script, sink = Script(), Sink()
    script.pages = [
        {"metadata": {"resourceVersion": "50", "continue": "p2"}, "items": [task("a", 10)]},
        {"metadata": {"resourceVersion": "50"}, "items": [task("b", 11)]},
        {"metadata": {"resourceVersion": "90"}, "items": [task("a", 80)]},
    ]
    script.streams = [
        [
            line("ADDED", task("c", 51)),
            line("BOOKMARK", {"metadata": {"resourceVersion": "70"}}),
            line("ERROR", {"kind": "Status", "code": 410, "message": "too old"}),
        ]
    ]
    informer = Informer(script, TASKS, sink, not_older_than="42")  # type: ignore[arg-type]

    asyncio.run(run_until(informer, lambda: len(sink.lists) == 2))
    lists = [params for verb, params in script.calls if verb == "list_tasks"]
    assert (lists[0]["resourceVersion"], lists[0]["resourceVersionMatch"]) == (
        "42",
        "NotOlderThan",
    )
    # A continue token carries the first page's version; the server refuses both at once.
    assert "resourceVersion" not in lists[1]
    assert "resourceVersionMatch" not in lists[1]
    assert lists[1]["continue"] == "p2"
    assert (lists[2]["resourceVersion"], lists[2]["resourceVersionMatch"]) == (
        "70",
        "NotOlderThan",
    )

    script, sink = Script(), Sink()
    script.pages = [{"metadata": {"resourceVersion": "5"}, "items": []}]
    asyncio.run(run_until(Informer(script, TASKS, sink), lambda: bool(sink.lists)))  # type: ignore[arg-type]
    assert "resourceVersion" not in script.calls[0][1]  # nothing seen, nothing given


def test_an_error_backs_off_and_lists_again() -> None:
    script, sink = Script(), Sink()
    script.pages = [
        ApiError("throttled (HTTP 429)", status=429),
        {"metadata": {"resourceVersion": "5"}, "items": [task("a", 4)]},
    ]
    informer = Informer(script, TASKS, sink, backoff=Backoff(initial=0.001, jitter=0.0))  # type: ignore[arg-type]

    async def go() -> None:
        runner = asyncio.create_task(informer.run())
        for _ in range(100):
            await asyncio.sleep(0.002)
            if sink.lists:
                break
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)

    asyncio.run(go())
    assert sink.lists == [{("ns", "a", "u-a")}]


def test_relist_abandons_the_watch() -> None:
    script, sink = Script(), Sink()
    page = {"metadata": {"resourceVersion": "5"}, "items": [task("a", 4)]}
    script.pages = [page, page]
    informer = Informer(script, TASKS, sink)  # type: ignore[arg-type]

    async def go() -> None:
        runner = asyncio.create_task(informer.run())
        for _ in range(20):
            await asyncio.sleep(0)
        assert [v for v, _ in script.calls] == ["list_tasks", "watch_tasks"]  # hangs in it
        informer.relist()
        for _ in range(20):
            await asyncio.sleep(0)
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)

    asyncio.run(go())
    assert len(sink.lists) == 2


def test_a_job_keeps_only_what_the_controller_reads() -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "t-1",
            "namespace": "ns",
            "uid": "j1",
            "resourceVersion": "7",
            "creationTimestamp": "2026-03-01T03:00:00Z",
            "labels": {"nightshift.dev/task": "t"},
            "annotations": {"nightshift.dev/run": "2026-03-01T03:00:00Z"},
            "ownerReferences": [
                {"apiVersion": "nightshift.dev/v1alpha1", "kind": "ScheduledTask", "name": "t",
                 "uid": "u1", "controller": True, "blockOwnerDeletion": True}
            ],
            "managedFields": [{"manager": "x"}],
        },
        "spec": {"suspend": False, "template": {"spec": {"containers": [{"name": "m"}]}}},
        "status": {
            "conditions": [
                {"type": "Complete", "status": "True", "reason": "Done",
                 "lastTransitionTime": "2026-03-01T03:00:05Z", "message": "long text"}
            ],
            "succeeded": 1,
        },
    }  # fmt: skip
    event = JOBS.decode_event(line("MODIFIED", job))
    assert event.type == "MODIFIED"
    assert event.resource_version == "7"
    assert event.body == {
        "metadata": {
            "name": "t-1",
            "namespace": "ns",
            "uid": "j1",
            "resourceVersion": "7",
            "creationTimestamp": "2026-03-01T03:00:00Z",
            "labels": {"nightshift.dev/task": "t"},
            "annotations": {"nightshift.dev/run": "2026-03-01T03:00:00Z"},
            "ownerReferences": [
                {"apiVersion": "nightshift.dev/v1alpha1", "kind": "ScheduledTask", "name": "t",
                 "uid": "u1", "controller": True}
            ],
        },
        "spec": {"suspend": False},
        "status": {
            "conditions": [
                {"type": "Complete", "status": "True", "reason": "Done",
                 "lastTransitionTime": "2026-03-01T03:00:05Z"}
            ]
        },
    }  # fmt: skip
    page = JOBS.decode_page(
        json.dumps({"metadata": {"resourceVersion": "9"}, "items": [job]}).encode()
    )
    assert page.items == [event.body]
    assert (page.resource_version, page.continue_) == ("9", "")


def test_namespaces_keep_only_their_pod_security_label_and_allowlist() -> None:
    from nightshift.informer import NAMESPACES

    namespace = {
        "metadata": {
            "name": "team",
            "uid": "n1",
            "resourceVersion": "3",
            "labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "kubernetes.io/metadata.name": "team",
            },
            "annotations": {
                "nightshift.dev/allowed-service-accounts": "builder",
                "kubectl.kubernetes.io/last-applied-configuration": "x" * 10_000,
            },
            "managedFields": [{"manager": "x"}],
        },
        "spec": {"finalizers": ["kubernetes"]},
    }
    page = NAMESPACES.decode_page(json.dumps({"metadata": {}, "items": [namespace]}).encode())
    assert page.items == [
        {
            "metadata": {
                "name": "team",
                "uid": "n1",
                "resourceVersion": "3",
                "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
                "annotations": {"nightshift.dev/allowed-service-accounts": "builder"},
            }
        }
    ]
    assert NAMESPACES.path("team") == "/api/v1/namespaces"  # cluster-scoped


def test_watched_namespaces_are_each_listed_by_name() -> None:
    from nightshift.namespaces import Namespaces

    script = Script()
    labelled = {
        "metadata": {
            "name": "a",
            "uid": "n1",
            "resourceVersion": "3",
            "labels": {"pod-security.kubernetes.io/enforce": "privileged"},
        }
    }
    script.pages = [
        {"metadata": {"resourceVersion": "5"}, "items": [labelled]},
        {"metadata": {"resourceVersion": "5"}, "items": []},  # b does not exist (yet)
    ]
    policies = Namespaces(script, names=["a", "b"])  # type: ignore[arg-type]

    async def go() -> None:
        runners = [asyncio.create_task(i.run()) for i in policies.informers]
        for _ in range(50):
            await asyncio.sleep(0)
        for runner in runners:
            runner.cancel()
        await asyncio.gather(*runners, return_exceptions=True)

    asyncio.run(go())
    lists = [params for verb, params in script.calls if verb == "list_namespaces"]
    assert [p["fieldSelector"] for p in lists] == ["metadata.name=a", "metadata.name=b"]
    assert policies.synced.is_set()
    assert policies.policy("a").level == "privileged"
    assert (policies.policy("b").level, policies.policy("b").source) == ("baseline", "default")
