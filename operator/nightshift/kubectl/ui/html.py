"""HTML built from Python calls in which every string is escaped unless it is already :class:`Html`.

The UI's pages are small and server-rendered, so a template engine would add a dependency and a
second language for little: here a page is a function, mypy checks it like any other code, and
escaping cannot be forgotten because plain strings are always escaped.
"""

from __future__ import annotations

import html as _stdlib_html
from collections.abc import Iterable, Mapping
from typing import TypeAlias

__all__ = ["Child", "Html", "escape", "join", "tag"]

# Elements that have no closing tag.
_VOID = frozenset({"br", "hr", "img", "input", "link", "meta"})

Child: TypeAlias = "Html | str | int | float | Iterable[Child] | None"


class Html(str):
    """Markup that is safe to send as it is (built here, never from user or API text)."""

    __slots__ = ()


def escape(value: object) -> Html:
    """``value`` as text: ``<``, ``>``, ``&`` and both quotes escaped; Html passes unchanged."""
    if isinstance(value, Html):
        return value
    return Html(_stdlib_html.escape(str(value), quote=True))


def _children(children: Iterable[Child]) -> Iterable[Html]:
    for child in children:
        if child is None:
            continue
        if isinstance(child, str | int | float):
            yield escape(child)
        else:
            yield from _children(child)


def join(*children: Child) -> Html:
    """The children, escaped where needed, one after the other."""
    return Html("".join(_children(children)))


def tag(name: str, attrs: Mapping[str, object] | None = None, *children: Child) -> Html:
    """``<name attrs>children</name>``. An attribute whose value is None or False is left out,
    True writes it bare (``disabled``); names ending in ``_`` lose it (``class_``)."""
    parts = [name]
    for key, value in (attrs or {}).items():
        if value is None or value is False:
            continue
        attr = key.rstrip("_").replace("_", "-")
        parts.append(attr if value is True else f'{attr}="{escape(value)}"')
    opening = f"<{' '.join(parts)}>"
    if name in _VOID:
        return Html(opening)
    return Html(f"{opening}{join(*children)}</{name}>")
