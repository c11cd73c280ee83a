"""``kubectl nightshift ui``: a web view of tasks, their timeline and runs, served on loopback.

The server (``server``) uses the plugin's session, so every page and action is made with the
user's own credentials and RBAC; it checks each request (``guard``) and renders pages (``pages``)
from views of the task objects (``views``, ``timeline``), which take their rules from the core.
The stylesheet, script and icon in ``static/`` ship in the package: nothing is fetched at run time.
"""

from __future__ import annotations

from nightshift.kubectl.ui.command import cmd_ui

__all__ = ["cmd_ui"]
