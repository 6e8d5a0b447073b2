"""The click commands: parse options, call the Session API, print."""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any

import click

from runbook.session import Session

if TYPE_CHECKING:
    from runbook.collect import Collection


def open_session(**options: Any) -> Session:
    """Start a ``Session`` for the current command; it is closed when the command ends."""
    session = Session.start(options)
    context = click.get_current_context(silent=True)
    if context is not None:
        context.call_on_close(session.close)
    return session


def warn_errors(collection: Collection) -> None:
    """Name every runbook file that failed to load, one line each, on standard error."""
    for error in collection.errors:
        click.echo(f"runbook: error: cannot load {error}", err=True)
