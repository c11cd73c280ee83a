"""Leader election on a coordination.k8s.io/v1 Lease: only the holder fires Jobs and writes status.

Expiry is judged by how long *this* process has watched the record stay unchanged (as client-go
does), not by comparing another replica's clock with ours. A leader that cannot renew within the
renew deadline steps down before the lease can expire for anyone else (renew deadline < duration).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nightshift.api import ApiError, KubeApi
from nightshift.threads import call_soon, in_thread

__all__ = ["LeaderElector", "LeaseTiming", "lease_body", "may_acquire"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LeaseTiming:
    """Lease duration > renew deadline > retry period, as in client-go."""

    duration: float = 10.0
    renew_deadline: float = 7.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not self.duration > self.renew_deadline > self.retry_period > 0:
            raise ValueError("need lease duration > renew deadline > retry period > 0")


def may_acquire(holder: str | None, me: str, unchanged_for: float, timing: LeaseTiming) -> bool:
    """Whether ``me`` may take (or keep) a lease last seen held by ``holder``."""
    return not holder or holder == me or unchanged_for > timing.duration


def _micro(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_body(
    name: str,
    namespace: str,
    me: str,
    timing: LeaseTiming,
    *,
    now: datetime,
    previous: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The Lease object after ``me`` acquires or renews it at ``now``."""
    spec = dict((previous or {}).get("spec") or {})
    taking_over = spec.get("holderIdentity") != me
    if taking_over:
        spec["acquireTime"] = _micro(now)
        spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if previous else 0)
    spec["holderIdentity"] = me
    spec["leaseDurationSeconds"] = int(timing.duration)
    spec["renewTime"] = _micro(now)
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if previous is not None:
        metadata["resourceVersion"] = previous["metadata"]["resourceVersion"]
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": metadata,
        "spec": spec,
    }


class LeaderElector:
    """Keeps trying to hold the Lease; ``is_leader`` is what the controller consults."""

    def __init__(
        self,
        api: KubeApi,
        *,
        namespace: str,
        name: str,
        identity: str,
        timing: LeaseTiming | None = None,
        on_started: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.timing = timing or LeaseTiming()
        self.on_started = on_started
        self.clock = clock
        self._leader = False
        self._renewed_at = float("-inf")
        self._seen: tuple[str | None, str | None] = (None, None)  # (holder, renewTime)
        self._seen_at = clock()
        self._main: asyncio.AbstractEventLoop | None = None  # where on_started is called

    @property
    def is_leader(self) -> bool:
        """True while we hold the lease and renewed it within the renew deadline."""
        return self._leader and self.clock() - self._renewed_at < self.timing.renew_deadline

    async def run(self) -> None:
        """Acquire and renew until cancelled, from a thread of its own: the controller's event
        loop can be busy for longer than the renew deadline (a first look at many tasks), and
        a renewal waiting behind it would make the leader step down for nothing."""
        self._main = asyncio.get_running_loop()
        await in_thread(self.keep, name="leader-election")

    async def keep(self) -> None:
        """Acquire and renew until cancelled (on the running loop)."""
        while True:
            started = self.clock()
            try:
                await self._attempt()
            except ApiError as error:
                log.warning("leader election: %s", error)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Never let the election loop die: a dead loop would silently stop renewals.
                log.exception("leader election: unexpected error")
            if self._leader and not self.is_leader:
                log.error(
                    "leader election: could not renew within %ss; stepping down",
                    self.timing.renew_deadline,
                )
                self._leader = False
            elapsed = self.clock() - started
            await asyncio.sleep(max(0.0, self.timing.retry_period - elapsed))

    async def release(self) -> None:
        """Give the lease up (on a clean shutdown) so another replica takes over at once."""
        was_leader, self._leader = self._leader, False
        if not was_leader:
            return
        try:
            current = await self.api.read_lease(self.namespace, self.name)
            if (
                current is None
                or (current.get("spec") or {}).get("holderIdentity") != self.identity
            ):
                return
            body = dict(current)
            body["spec"] = {**(current.get("spec") or {}), "holderIdentity": ""}
            await self.api.replace_lease(self.namespace, self.name, body)
            log.info("leader election: released lease %s/%s", self.namespace, self.name)
        except ApiError as error:
            log.warning("leader election: could not release the lease: %s", error)

    async def _attempt(self) -> None:
        current = await self.api.read_lease(self.namespace, self.name)
        now_wall = datetime.now(UTC)
        if current is None:
            body = lease_body(self.name, self.namespace, self.identity, self.timing, now=now_wall)
            if await self.api.create_lease(self.namespace, body):
                self._won()
            return
        spec = current.get("spec") or {}
        observed = (spec.get("holderIdentity"), spec.get("renewTime"))
        if observed != self._seen:
            self._seen, self._seen_at = observed, self.clock()
        holder = observed[0]
        if not may_acquire(holder, self.identity, self.clock() - self._seen_at, self.timing):
            if self._leader:
                log.warning("leader election: lease taken by %s", holder)
            self._leader = False
            return
        body = lease_body(
            self.name, self.namespace, self.identity, self.timing, now=now_wall, previous=current
        )
        if await self.api.replace_lease(self.namespace, self.name, body):
            self._won()
        else:
            self._leader = False  # someone else wrote first; look again next period

    def _won(self) -> None:
        self._renewed_at = self.clock()
        if not self._leader:
            self._leader = True
            log.info(
                "leader election: %s now holds lease %s/%s",
                self.identity,
                self.namespace,
                self.name,
            )
            call_soon(self._main, self.on_started)
