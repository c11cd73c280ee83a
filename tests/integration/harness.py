"""Moved to tests/support: the operator process is ``support.operator.Operator``, polling
``support.wait.poll``, ``support.ports.free_port`` and ``support.certs.self_signed``. These
re-exports only keep code written against the old place working; import from ``support``."""

from __future__ import annotations

from support.certs import self_signed
from support.operator import Operator
from support.ports import free_port
from support.wait import poll

__all__ = ["Operator", "free_port", "poll", "self_signed"]
