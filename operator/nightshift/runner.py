"""``nightshift run``: start the controller, its probes and metrics, and kopf for admission.

The controller watches tasks and Jobs with informers of its own (``nightshift.informer``): kopf
handed every watched object to per-object queues, which kept the start-up list of 10,000 tasks in
memory and spent a third of the main thread on the events of the Jobs the operator creates. kopf
serves the validating webhook, when one is asked for. No finalizers, no progress annotations, no
per-object daemons: one scheduler serves every task. The liveness and readiness endpoints are our
own (``nightshift.health``): liveness reports the scheduler's heartbeat.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
from collections.abc import Callable, Iterator
from typing import Any

import kopf
from aiohttp import web
from kopf._cogs.structs.ephemera import AnyMemo  # not re-exported
from kopf._core.reactor.inventory import ResourceMemories, ResourceMemory  # not re-exported
from prometheus_client import start_http_server

from nightshift import faults, health, memory, metrics, metrics_server
from nightshift.admission import Denied, Reviewer
from nightshift.controller import Controller
from nightshift.guard import Limits
from nightshift.kube import KubeClient, load_config
from nightshift.leader import LeaderElector
from nightshift.models import (
    BACKFILL_KIND,
    CALENDAR_KIND,
    GROUP,
    VERSION,
    SpecError,
    parse_backfill,
    parse_calendar,
)
from nightshift.namespaces import Namespaces
from nightshift.shards import ShardManager
from nightshift.supervise import Supervisor

__all__ = ["registry", "run"]

log = logging.getLogger("nightshift")

# Timeouts of kopf's own requests (seconds).
CONNECT_TIMEOUT = 5.0
REQUEST_TIMEOUT = 30.0


class _Backoffs:
    """kopf's delays between retries of a failed request, for ever: its default gives up after
    about a minute, and a watch that gives up ends the operator (e.g. RBAC removed for a while).
    A fresh iterator per request, so that every request starts from the short delays."""

    def __iter__(self) -> Iterator[float]:
        yield from (1, 2, 4, 8)
        while True:
            yield 15


class _NoDiffBase(kopf.DiffBaseStorage):
    """No "last handled state": on.event handlers never read it (on.update/on.field would)."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


# What the webhook checks of the other kinds, beyond the CRD schema and CEL rules (a
# ScheduledTask goes to the Reviewer: it is a workload).
_PARSERS: dict[str, Callable[[Any], object]] = {
    CALENDAR_KIND: parse_calendar,
    BACKFILL_KIND: parse_backfill,
}


class _NoMemories(ResourceMemories):
    """kopf remembers every object an admission review names, by uid, and forgets it only when
    its watch sees the object deleted. Its watches are off here (the informers watch), so every
    UPDATE review (a CREATE's memory is not kept) would stay for the life of the process, and
    anyone who can reach the webhook port could post reviews with made-up uids until the replica
    runs out of memory. No handler here keeps anything in kopf's memos: keep nothing."""

    async def recall(
        self,
        raw_body: kopf.RawBody,
        *,
        memobase: AnyMemo | None = None,
        noticed_by_listing: bool = False,
        ephemeral: bool = False,
    ) -> ResourceMemory:
        return await super().recall(
            raw_body, memobase=memobase, noticed_by_listing=noticed_by_listing, ephemeral=True
        )


def registry(args: argparse.Namespace, reviewer: Reviewer) -> kopf.OperatorRegistry:
    """The kopf handlers of one operator: its login, and the validating webhook."""
    reg = kopf.OperatorRegistry()

    @kopf.on.startup(registry=reg)
    async def _startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        # kopf's handler-log Events would be noise; the operator posts its own.
        settings.posting.enabled = False
        settings.networking.connect_timeout = CONNECT_TIMEOUT
        settings.networking.request_timeout = REQUEST_TIMEOUT
        settings.networking.error_backoffs = _Backoffs()
        # kopf watches nothing (the informers do): no CRD or namespace scanning, no RBAC for it.
        settings.scanning.disabled = True
        settings.persistence.finalizer = "nightshift.dev/unused"
        settings.persistence.diffbase_storage = _NoDiffBase()
        settings.admission.server = kopf.WebhookServer(
            addr=args.webhook_addr,
            port=args.webhook_port,
            host=args.webhook_host,
            certfile=args.webhook_cert,
            pkeyfile=args.webhook_key,
            cafile=args.webhook_ca or args.webhook_cert,
        )
        if args.webhook_manage:
            # Development and tests: the operator registers itself (the chart ships its own).
            settings.admission.managed = args.webhook_manage

    @kopf.on.login(registry=reg)
    def _login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # The same credentials as the official client (kubeconfig or in-cluster account); kopf's
        # own registry would add this handler, a registry of our own has to.
        return kopf.login_via_client(**kwargs)

    # failurePolicy Ignore: while the operator is down, writes are not blocked; what slips
    # through is caught by the operator itself (Ready=False, one Warning Event, no Jobs).
    # One handler (one webhook, path /validate) for every kind in the category "nightshift":
    # ScheduledTasks, Calendars and Backfills.
    @kopf.on.validate(
        group=GROUP,
        version=VERSION,
        category="nightshift",
        id="validate",
        ignore_failures=True,
        registry=reg,
    )
    async def _validate(
        *,
        body: kopf.Body,
        userinfo: kopf.UserInfo,
        old: kopf.Body | None = None,
        operation: str | None = None,
        **_: Any,
    ) -> None:
        parse = _PARSERS.get(str(body.get("kind")))
        if parse is None:
            try:
                await reviewer.review(operation=operation, body=body, old=old, user=dict(userinfo))
            except Denied as denied:
                raise kopf.AdmissionError(str(denied), code=denied.code) from None
            return
        if operation == "DELETE":
            return
        try:
            parse(dict(body.get("spec") or {}))
        except SpecError as error:
            raise kopf.AdmissionError(str(error), code=422) from None

    return reg


async def _until_signalled() -> None:
    """Return on SIGTERM or SIGINT (kopf does this itself when it runs)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("signal received; stopping")


class _ShardedHealth:
    """Liveness and readiness of a sharded replica: its own loops and every held shard's."""

    def __init__(self, supervisor: Supervisor, manager: ShardManager) -> None:
        self.supervisor = supervisor
        self.manager = manager

    def problems(self) -> list[str]:
        return self.supervisor.problems() + self.manager.problems()

    @property
    def running(self) -> bool:
        # Ready with no shard too: it serves the webhook and stands by to take shards.
        return True


async def _main(args: argparse.Namespace) -> None:
    load_config(args.kubeconfig)
    identity = os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
    api = KubeClient(identity=identity, qps=args.api_qps, burst=args.api_burst)
    seams = faults.from_env()
    supervisor = Supervisor(faults=seams)
    # One view of the namespaces' policies for the webhook and every controller (shard).
    policies = Namespaces(
        api,
        names=args.namespaces or (),
        default=args.pod_security_default,
        enabled=args.pod_security,
    )
    for i, informer in enumerate(policies.informers):
        supervisor.start(f"informer-namespaces-{i}", informer.run)
    limits = Limits(
        min_interval=args.min_interval,
        max_template_bytes=args.max_template_bytes,
        excluded_namespaces=frozenset(args.exclude_namespaces or ()),
    )
    reviewer = Reviewer(api, policies, limits, check_access=args.check_job_access)
    if args.shards > 1:
        await _sharded(args, api, identity, supervisor, seams, policies, limits, reviewer)
        return
    elector: LeaderElector | None = None
    if args.leader_elect:
        elector = LeaderElector(
            api,
            namespace=args.leader_election_namespace,
            name=args.leader_election_name,
            identity=identity,
        )
    controller = Controller(
        api,
        is_leader=(lambda: elector.is_leader) if elector else (lambda: True),
        namespaces=args.namespaces or (),
        supervisor=supervisor,
        policies=policies,
        limits=limits,
    )
    metrics.track(
        lambda: len(controller.store),
        lambda: controller.queue.scheduled,
        lambda: controller.writer.backlog,
    )
    if elector is not None:
        elector.on_started = controller.resync_all
        supervisor.start("leader-election", elector.run)
    scrapes = await _serve_metrics(args, api)
    probes = await health.serve(args.health_port, controller) if args.health_port else None
    scheduler = asyncio.create_task(controller.run(), name="nightshift-controller")
    try:
        await _serve(args, reviewer)
    finally:
        await controller.wind_down()
        scheduler.cancel()
        await asyncio.gather(scheduler, return_exceptions=True)
        if elector is not None:
            await elector.release()
        for runner in (probes, scrapes):
            if runner is not None:
                await runner.cleanup()
        api.close()


async def _serve_metrics(args: argparse.Namespace, api: KubeClient) -> web.AppRunner | None:
    """/metrics on the metrics port: over TLS to callers the API server authenticates and
    authorizes (--metrics-secure), or plain HTTP to anyone who can reach the port."""
    if not args.metrics_port:
        return None
    if args.metrics_secure:
        return await metrics_server.serve(
            args.metrics_port, api, args.metrics_cert, args.metrics_key
        )
    start_http_server(args.metrics_port, addr="0.0.0.0")  # noqa: S104 - scraped in-cluster
    return None


async def _serve(args: argparse.Namespace, reviewer: Reviewer) -> None:
    """The webhook (kopf) until a signal, or just wait for the signal."""
    if args.webhook_port:
        await kopf.operator(
            registry=registry(args, reviewer),
            clusterwide=not args.namespaces,
            namespaces=args.namespaces,
            standalone=True,
            memories=_NoMemories(),
        )
    else:
        await _until_signalled()


async def _sharded(
    args: argparse.Namespace,
    api: KubeClient,
    identity: str,
    supervisor: Supervisor,
    seams: dict[str, faults.Fault],
    policies: Namespaces,
    limits: Limits,
    reviewer: Reviewer,
) -> None:
    """``--shards S`` (S > 1): hold a fair share of the shards, a Controller per shard held."""
    manager = ShardManager(
        api,
        namespace=args.leader_election_namespace,
        name=args.leader_election_name,
        identity=identity,
        shards=args.shards,
        namespaces=args.namespaces or (),
        make_supervisor=lambda: Supervisor(faults=seams),
        mode=None if args.shard_filter == "auto" else args.shard_filter,
        policies=policies,
        limits=limits,
    )
    metrics.track(manager.tasks, manager.queued, manager.writes_pending)
    supervisor.start("shards", manager.run)
    scrapes = await _serve_metrics(args, api)
    target = _ShardedHealth(supervisor, manager)
    probes = await health.serve(args.health_port, target) if args.health_port else None
    try:
        await _serve(args, reviewer)
    finally:
        await supervisor.stop()
        await manager.release_all()
        for runner in (probes, scrapes):
            if runner is not None:
                await runner.cleanup()
        api.close()


def run(args: argparse.Namespace) -> int:
    """Run the operator in this process until SIGINT/SIGTERM."""
    level = logging.DEBUG if args.verbose else logging.INFO
    kopf.configure(verbose=args.verbose, log_format=_log_format(args.log_format))
    logging.getLogger().setLevel(level)
    if not args.verbose:
        # kopf logs every handler call per object; at 10,000 tasks that is noise, not signal.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    # Before any thread exists: a malloc arena per thread multiplies what freed lists leave behind.
    memory.limit_arenas(2)
    asyncio.run(_main(args))
    return 0


def _log_format(name: str) -> kopf.LogFormat:
    return kopf.LogFormat.JSON if name == "json" else kopf.LogFormat.PLAIN
