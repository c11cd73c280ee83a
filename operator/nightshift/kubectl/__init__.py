"""``kubectl nightshift``: run, suspend, resume and inspect ScheduledTasks in a cluster.

A separate program from the operator, in four modules along its own seams: ``parser`` (the command
line and ``main``), ``commands`` (one function per verb), ``session`` (the API server and its
errors; the only module here that imports the Kubernetes client) and ``render`` (what is printed).
The schedule, token and naming rules it shows come from the core, so it agrees with the operator.
Only the names below are meant for use outside the package.
"""

from __future__ import annotations

from nightshift.kubectl.parser import help_texts, main
from nightshift.kubectl.session import PluginError

__all__ = ["PluginError", "help_texts", "main"]
