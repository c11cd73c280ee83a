"""``nightshift run``: wire kopf's watches to the controller and run until interrupted.

kopf gives us watch streams with reconnects, 410 handling and server-side label selectors; the
handlers only hand bodies to the controller. No finalizers, no progress annotations, no per-object
daemons: one scheduler serves every task.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
from typing import Any

import kopf
from prometheus_client import start_http_server

from nightshift import memory
from nightshift.controller import Controller
from nightshift.jobs import LABEL_MANAGED
from nightshift.kube import KubeApi, load_config
from nightshift.leader import LeaderElector
from nightshift.models import GROUP, PLURAL, VERSION, SpecError, parse_spec

__all__ = ["run"]

log = logging.getLogger("nightshift")
_controller: Controller | None = None
_args: argparse.Namespace | None = None


def _get() -> Controller:
    assert _controller is not None, "the controller starts before the watches"
    return _controller


@kopf.on.startup()
async def _startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Our own Events describe transitions; kopf's handler-log Events would be noise.
    settings.posting.enabled = False
    # Only Jobs we labelled are streamed: the filter runs in the API server, not here.
    settings.watching.label_selectors["batch", "jobs"] = f"{LABEL_MANAGED}=true"
    # Lists come in pages: one response with every task is a memory peak that never goes away.
    settings.watching.chunk_size = 500
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # Resolve our two resources from API discovery once instead of watching CRDs and namespaces
    # cluster-wide, which would need RBAC we do not otherwise use. A CRD installed after start-up
    # (crds.enabled=false in the chart) is picked up on the next restart.
    settings.scanning.disabled = True
    # No kopf state is stored on our objects: handlers are event handlers only.
    settings.persistence.finalizer = "nightshift.dev/unused"
    # kopf deep-copies every object on every event to diff it for change handlers; we have none.
    settings.persistence.diffbase_storage = _NoDiffBase()
    args = _args
    if args is not None and args.webhook_port:
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


class _NoDiffBase(kopf.DiffBaseStorage):
    """No "last handled state": on.event handlers never read it (on.update/on.field would)."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


@kopf.on.event(GROUP, VERSION, PLURAL)
async def _task_event(*, type: str | None, body: kopf.Body, **_: Any) -> None:
    # async: kopf runs sync handlers in a thread pool, and the controller's queue is not
    # thread-safe; on the event loop a wake-up cannot be lost.
    _get().task_event(type, dict(body))


@kopf.on.event("batch", "v1", "jobs", labels={LABEL_MANAGED: "true"})
async def _job_event(*, type: str | None, body: kopf.Body, **_: Any) -> None:
    _get().job_event(type, dict(body))


def _validate(*, spec: kopf.Spec, operation: str | None = None, **_: Any) -> None:
    if operation == "DELETE":
        return
    try:
        parse_spec(dict(spec))
    except SpecError as error:
        raise kopf.AdmissionError(str(error), code=422) from None


@kopf.on.probe(id="scheduler")
def _probe(**_: Any) -> dict[str, int]:
    controller = _get()
    return {"tasks": len(controller.entries), "queue": controller.queue_depth}


async def _main(args: argparse.Namespace) -> None:
    global _controller, _args  # noqa: PLW0603 - kopf handlers are module-level functions
    _args = args
    if args.webhook_port:
        # Registered only with a webhook server (kopf refuses admission handlers without one).
        # failurePolicy Ignore: while the operator is down, writes are not blocked; what slips
        # through is caught by the operator itself (Ready=False, one Warning Event, no Jobs).
        kopf.on.validate(GROUP, VERSION, PLURAL, id="validate", ignore_failures=True)(_validate)
    load_config(args.kubeconfig)
    identity = os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
    api = KubeApi(identity=identity)
    elector: LeaderElector | None = None
    if args.leader_elect:
        elector = LeaderElector(
            api,
            namespace=args.leader_election_namespace,
            name=args.leader_election_name,
            identity=identity,
        )
        _controller = Controller(
            api,
            is_leader=lambda: elector is not None and elector.is_leader,
            namespaces=args.namespaces or (),
        )
        elector.on_started = _controller.resync_all
    else:
        _controller = Controller(api, namespaces=args.namespaces or ())
    if args.metrics_port:
        start_http_server(args.metrics_port, addr="0.0.0.0")  # noqa: S104 - scraped in-cluster
    scheduler = asyncio.create_task(_controller.run(), name="nightshift-controller")
    election = asyncio.create_task(elector.run(), name="nightshift-leader") if elector else None
    try:
        await kopf.operator(
            clusterwide=not args.namespaces,
            namespaces=args.namespaces,
            standalone=True,
            liveness_endpoint=f"http://0.0.0.0:{args.health_port}/healthz"
            if args.health_port
            else None,
        )
    finally:
        scheduler.cancel()
        if election is not None:
            election.cancel()
        if elector is not None:
            await elector.release()
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
