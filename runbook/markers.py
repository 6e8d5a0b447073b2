"""The pluggy markers of the ``runbook`` project: ``hookspec`` and ``hookimpl``.

A leaf module, so that any layer can mark hook implementations without importing
the hook specifications (``runbook.hookspecs``) or anything above them.
"""

from __future__ import annotations

import pluggy

#: Marks a function as a hook specification (only ``runbook.hookspecs`` uses it).
hookspec = pluggy.HookspecMarker("runbook")
#: Marks a function of a plugin as the implementation of a ``runbook_*`` hook.
hookimpl = pluggy.HookimplMarker("runbook")
