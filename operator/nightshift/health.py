"""The liveness and readiness endpoints: ``/healthz`` and ``/readyz`` on the health port.

Liveness answers 500 with the reasons when the controller reports problems (a crash loop, a timer
that stopped beating, queued work no worker takes), so the kubelet restarts a wedged operator; a
blocked event loop cannot answer at all, which fails the probe too. Readiness answers 200 once the
controller runs (a replica that is not the leader is ready: it serves the webhook).
"""

from __future__ import annotations

from typing import Protocol

from aiohttp import web

__all__ = ["serve"]


class _Checked(Protocol):
    def problems(self) -> list[str]: ...

    @property
    def running(self) -> bool: ...


async def serve(port: int, controller: _Checked, host: str = "0.0.0.0") -> web.AppRunner:  # noqa: S104
    """Start serving; the caller calls ``cleanup()`` on the result to stop."""

    async def healthz(_: web.Request) -> web.Response:
        problems = controller.problems()
        if problems:
            return web.json_response({"status": "unhealthy", "problems": problems}, status=500)
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        if controller.running:
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "starting"}, status=503)

    app = web.Application()
    app.add_routes([web.get("/healthz", healthz), web.get("/readyz", readyz)])
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
