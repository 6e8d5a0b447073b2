"""The click commands: parse options, call the Session API, print."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

import click

from runbook.session import Session

if TYPE_CHECKING:
    from runbook.collect import Collection


#: Where a command that built the configuration early (``run``) leaves it for its session.
CONFIG_KEY = "runbook.config"


def open_session(**options: Any) -> Session:
    """Start a ``Session`` for the current command; it is closed when the command ends."""
    context = click.get_current_context(silent=True)
    config = context.meta.get(CONFIG_KEY) if context is not None else None
    session = Session.start(options, config=config)
    if context is not None:
        context.call_on_close(session.close)
    return session


def warn_errors(collection: Collection) -> None:
    """Name every runbook file that failed to load, one line each, on standard error."""
    for error in collection.errors:
        click.echo(f"runbook: error: cannot load {error}", err=True)


def write_rendered(
    render: Callable[[Path | None], str], template: str | None, output: str | None, what: str
) -> None:
    """Render with ``template`` (or the built-in one) to ``output`` or standard output.

    A broken template is a usage error naming it; ``what`` names the document.
    """
    import jinja2

    from runbook.files import write_private
    from runbook.outcomes import UsageError

    try:
        text = render(Path(template) if template else None)
    except jinja2.TemplateError as exc:
        raise UsageError(f"{template or what + ' template'}: {exc}") from None
    if output:
        write_private(Path(output), text)
        click.echo(f"{what}: {output}")
    else:
        click.echo(text, nl=False)
