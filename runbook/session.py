"""What every command starts with: configuration, plugins and runbooks, and name lookups."""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING
from typing import Any

import click

from runbook.outcomes import UsageError

if TYPE_CHECKING:
    from runbook.collect import Collection
    from runbook.config import Config
    from runbook.model import Runbook


def setup(**options: Any) -> tuple[Config, Collection]:
    from runbook.collect import collect
    from runbook.pluginmanager import load_config

    config = load_config(options)
    collection = collect(config)
    context = click.get_current_context(silent=True)
    if context is not None:
        context.call_on_close(lambda: config.hook.runbook_unconfigure(config=config))
    return config, collection


def warn_errors(collection: Collection) -> None:
    for error in collection.errors:
        click.echo(f"runbook: error: cannot load {error}", err=True)


def lookup(collection: Collection, name: str) -> Runbook:
    from runbook.collect import broken_runbook_names

    if name in collection.runbooks:
        return collection.runbooks[name]
    broken = broken_runbook_names(collection).get(name)
    if broken is not None:
        raise UsageError(f"runbook {name!r} cannot be loaded: {broken}")
    close = difflib.get_close_matches(name, list(collection.runbooks), n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise UsageError(f"unknown runbook {name!r}.{hint} (`runbook list` shows them all)")
