"""The secure metrics endpoint: ``/metrics`` over TLS, served only to a caller the API server
vouches for, as controller-runtime's secure metrics serving does.

A request must carry a bearer token; the API server authenticates it (TokenReview), then says
whether that user may ``get`` the non-resource URL ``/metrics`` (SubjectAccessReview). No token,
or one the API server does not accept: 401. A user without that grant: 403. The grant is what
the chart's ``<fullname>-metrics-reader`` ClusterRole holds, for Prometheus' ServiceAccount.

The metrics name every task (``nightshift_active_runs{namespace,task}``), so without this any pod
that can reach the port learns every tenant's task names.

Answers are cached by the token's SHA-256 (allowed for a minute, refused for ten seconds, at most
CACHE_SIZE tokens), and at most REVIEWS_AT_ONCE reviews run at a time: a scraper every few seconds
costs the API server a review a minute, and a flood of made-up tokens costs it a few at a time,
not one per request.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from nightshift.api import ApiError

__all__ = ["Authorizer", "serve"]

log = logging.getLogger(__name__)

PATH = "/metrics"
ALLOWED_SECONDS = 60.0
REFUSED_SECONDS = 10.0
CACHE_SIZE = 256
REVIEWS_AT_ONCE = 4


class Reviews(Protocol):
    """What the endpoint asks the API server (``nightshift.kube.KubeClient`` does both)."""

    async def review_token(self, token: str) -> dict[str, Any]: ...

    async def review_access(
        self, user: Mapping[str, Any], *, non_resource_attributes: Mapping[str, str]
    ) -> tuple[bool, str]: ...


class Authorizer:
    """Decides, from a request's Authorization header, whether it may read the metrics:
    (HTTP status, why) with 200, 401 or 403, or 503 when the API server did not answer."""

    def __init__(self, api: Reviews, clock: Callable[[], float] = time.monotonic) -> None:
        self.api = api
        self.clock = clock
        self._answers: OrderedDict[str, tuple[float, int, str]] = OrderedDict()
        self._reviews = asyncio.Semaphore(REVIEWS_AT_ONCE)

    async def check(self, authorization: str | None) -> tuple[int, str]:
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return 401, "a bearer token is required"
        key = hashlib.sha256(token.encode()).hexdigest()
        cached = self._answers.get(key)
        if cached is not None and cached[0] > self.clock():
            return cached[1], cached[2]
        async with self._reviews:
            try:
                status, why = await self._review(token)
            except ApiError as error:
                log.warning("metrics: cannot review a scraper's token: %s", error)
                return 503, "the API server did not answer"
        ttl = ALLOWED_SECONDS if status == 200 else REFUSED_SECONDS
        self._answers[key] = (self.clock() + ttl, status, why)
        self._answers.move_to_end(key)
        while len(self._answers) > CACHE_SIZE:
            self._answers.popitem(last=False)
        return status, why

    async def _review(self, token: str) -> tuple[int, str]:
        review = await self.api.review_token(token)
        user = review.get("user") or {}
        if not review.get("authenticated") or not user.get("username"):
            return 401, "the token was not accepted"
        allowed, reason = await self.api.review_access(
            user, non_resource_attributes={"path": PATH, "verb": "get"}
        )
        if not allowed:
            name = user.get("username")
            return 403, f'user "{name}" may not get {PATH}' + (f": {reason}" if reason else "")
        return 200, ""


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


async def serve(
    port: int,
    api: Reviews,
    cert: str,
    key: str,
    host: str = "0.0.0.0",  # noqa: S104 - scraped in-cluster, guarded by the reviews
) -> web.AppRunner:
    """Serve ``/metrics`` over TLS on ``port``; the caller calls ``cleanup()`` on the result."""
    authorizer = Authorizer(api)

    async def metrics(request: web.Request) -> web.Response:
        status, why = await authorizer.check(request.headers.get("Authorization"))
        if status != 200:
            headers = {"WWW-Authenticate": 'Bearer realm="nightshift"'} if status == 401 else {}
            return web.Response(status=status, text=why + "\n", headers=headers)
        # Rendering every series (one per task) takes a while with many tasks: not on the loop.
        body = await asyncio.get_running_loop().run_in_executor(None, generate_latest, REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.add_routes([web.get(PATH, metrics)])
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, ssl_context=tls_context(cert, key)).start()
    return runner
