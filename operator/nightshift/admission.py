"""The validating webhook's judgement of a ScheduledTask write, apart from kopf, which serves it.

A task is a workload: writing one creates Jobs. So besides the spec's validity (the models), a
write is refused when the operator would refuse the task (:mod:`nightshift.guard`: its
namespace's Pod Security level and ServiceAccount allowlist, the minimum interval, the template's
size), and when its author may not create Jobs in that namespace themselves, asked with a
SubjectAccessReview for exactly the requesting user (name, uid, groups, extra). A write that
leaves the spec as it was (an annotation: run-now, resume; a label) is not judged at all: it
starts no Job the spec did not already allow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nightshift.api import ApiError, KubeApi
from nightshift.guard import Limits, judge
from nightshift.models import SpecError, parse_spec
from nightshift.namespaces import Namespaces

__all__ = ["Denied", "Reviewer"]

log = logging.getLogger(__name__)
# How long a write waits, just after the operator started, for the namespaces to be listed;
# after that it is let through, and the operator judges the task before any Job. Both waits stay
# well inside the webhook's timeout (the chart's default 5 s).
POLICIES_WAIT = 2.0
# How long the SubjectAccessReview may take; a slower answer refuses the write, as an error does.
ACCESS_WAIT = 2.0


class Denied(Exception):
    """The write is refused: ``message`` names the field (or the missing permission)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Reviewer:
    """What the webhook asks of every CREATE and UPDATE of a task."""

    api: KubeApi
    policies: Namespaces
    limits: Limits
    check_access: bool = True  # the SubjectAccessReview (webhook.checkJobAccess)

    async def review(
        self,
        *,
        operation: str | None,
        body: Mapping[str, Any],
        old: Mapping[str, Any] | None,
        user: Mapping[str, Any],
    ) -> None:
        """Return if the write may go; raise :class:`Denied` if not."""
        if operation not in ("CREATE", "UPDATE"):
            return
        if operation == "UPDATE" and old is not None and old.get("spec") == body.get("spec"):
            # Metadata only (run now, resume, labels, the shard labeller's): it changes nothing
            # the operator judges, and must not be stuck behind a spec the operator refuses
            # anyway (a task the labeller cannot label would never reach a shard).
            return
        meta = body.get("metadata") or {}
        namespace = str(meta.get("namespace") or "")
        name = str(meta.get("name") or meta.get("generateName") or "")
        raw = body.get("spec")
        try:
            spec = parse_spec(dict(raw) if isinstance(raw, Mapping) else raw)
        except SpecError as error:
            raise Denied(str(error), 422) from None
        assert isinstance(raw, Mapping)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(POLICIES_WAIT):
                await self.policies.synced.wait()
        if self.policies.synced.is_set():
            refused = judge(
                spec,
                raw.get("jobTemplate"),
                namespace=namespace,
                name=name,
                policy=self.policies.policy(namespace),
                limits=self.limits,
            )
            if refused is not None:
                security = refused.reason in (
                    "NamespaceExcluded",
                    "PodSecurity",
                    "ServiceAccountNotAllowed",
                )
                raise Denied(refused.message, 403 if security else 422)
        if self.check_access:
            await self._may_create_jobs(namespace, user)

    async def _may_create_jobs(self, namespace: str, user: Mapping[str, Any]) -> None:
        who = str(user.get("username") or "")
        try:
            async with asyncio.timeout(ACCESS_WAIT):
                allowed, why = await self.api.may_create_jobs(namespace, user)
        except TimeoutError:
            log.warning(
                "SubjectAccessReview for %s in %s: no answer in %s s", who, namespace, ACCESS_WAIT
            )
            raise Denied(
                f"could not check that {who} may create Jobs in {namespace}: the API server did "
                f"not answer in {ACCESS_WAIT:g} s; try again",
                403,
            ) from None
        except ApiError as error:
            # Fail closed: this check is the point of the webhook (failurePolicy is about the
            # webhook being unreachable, not about a check it could not make).
            log.warning("SubjectAccessReview for %s in %s: %s", who, namespace, error)
            raise Denied(
                f"could not check that {who} may create Jobs in {namespace}: {error}", 403
            ) from None
        if not allowed:
            because = f" ({why})" if why else ""
            raise Denied(
                f"{who} may not create Jobs (batch) in namespace {namespace}{because}: a "
                "ScheduledTask creates Jobs, so writing its spec needs that permission too",
                403,
            )
