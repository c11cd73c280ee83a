"""What each namespace allows its tasks' pods, kept current by watching the namespaces.

The operator holds every Job to its namespace's Pod Security level and ServiceAccount allowlist
(:mod:`nightshift.guard`), which live in the namespace's labels and annotations. An informer keeps
them in memory (a few dozen bytes per namespace: only the level and the allowlist are kept), so
a sync reads no namespace and a changed label re-judges that namespace's tasks at once. Watching
all namespaces needs ``list``/``watch`` on namespaces; with ``--namespace`` it watches only those,
each by name (a field selector), which a ClusterRole with ``resourceNames`` allows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from nightshift.api import KubeApi
from nightshift.guard import NamespacePolicy
from nightshift.guard import namespace_policy as policy_of
from nightshift.informer import NAMESPACES, Informer
from nightshift.podsecurity import Level

__all__ = ["Namespaces"]

log = logging.getLogger(__name__)


class _Feed:
    """One informer's namespaces (all, or one by name)."""

    def __init__(self, owner: Namespaces) -> None:
        self.owner = owner
        self.synced = False

    def listing(self) -> int:
        return 0

    def event(self, kind: str, body: dict[str, Any]) -> None:
        self.owner.seen(kind, body)

    def listed(self, mark: int, seen: set[tuple[str, str, str]]) -> None:
        self.owner.listed(self, {name for _, name, _ in seen})


class Namespaces:
    """The policy of every namespace the operator watches (``names``; empty: all)."""

    def __init__(
        self,
        api: KubeApi,
        *,
        names: Sequence[str] = (),
        default: Level = "baseline",
        enabled: bool = True,
    ) -> None:
        """``default`` is the level of a namespace without a Pod Security label. Not
        ``enabled``: no namespace is read and every namespace is "privileged" (no Pod Security
        checks, no allowlist)."""
        self.default = default
        self.enabled = enabled
        self._policies: dict[str, NamespacePolicy] = {}
        self._watchers: list[Callable[[str], None]] = []
        self._feeds: list[_Feed] = []
        self.informers: list[Informer] = []
        self.synced = asyncio.Event()
        if not enabled:
            self.synced.set()
            return
        for name in tuple(names) or (None,):
            feed = _Feed(self)
            self._feeds.append(feed)
            self.informers.append(
                Informer(api, NAMESPACES, feed, fields=f"metadata.name={name}" if name else "")
            )

    def policy(self, namespace: str) -> NamespacePolicy:
        """What ``namespace`` allows (one not seen, e.g. being deleted: the default level)."""
        if not self.enabled:
            return NamespacePolicy("privileged", "disabled")
        found = self._policies.get(namespace)
        return found if found is not None else policy_of({}, {}, self.default)

    def watch(self, changed: Callable[[str], None]) -> None:
        """Call ``changed(namespace)`` whenever a namespace's policy changes."""
        self._watchers.append(changed)

    def unwatch(self, changed: Callable[[str], None]) -> None:
        if changed in self._watchers:
            self._watchers.remove(changed)

    def seen(self, kind: str, body: dict[str, Any]) -> None:
        meta = body.get("metadata") or {}
        name = str(meta.get("name") or "")
        if kind == "DELETED":
            self._set(name, None)
            return
        self._set(name, policy_of(meta.get("labels"), meta.get("annotations"), self.default))

    def _set(self, name: str, policy: NamespacePolicy | None) -> None:
        before = self._policies.get(name)
        if policy is None:
            self._policies.pop(name, None)
        else:
            self._policies[name] = policy
        if before != policy and self.synced.is_set():
            log.info("namespace %s: %s", name, policy.describe() if policy else "deleted")
            for changed in list(self._watchers):
                changed(name)

    def listed(self, feed: _Feed, names: set[str]) -> None:
        for gone in [n for n in self._policies if n not in names and self._mine(feed, n)]:
            self._set(gone, None)
        feed.synced = True
        if all(f.synced for f in self._feeds) and not self.synced.is_set():
            log.info("namespaces listed: %d", len(self._policies))
            self.synced.set()

    def _mine(self, feed: _Feed, name: str) -> bool:
        index = self._feeds.index(feed)
        selector = self.informers[index].params.get("fieldSelector", "")
        return not selector or selector == f"metadata.name={name}"
