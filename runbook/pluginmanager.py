"""The plugin manager: hook specifications, built-in plugins and configured ones.

Built-in plugins are named here as data (two lists, as pytest keeps them) and
imported by name, so this module sits below every plugin it registers.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from runbook import hookspecs
from runbook.config import Config
from runbook.config import find_config
from runbook.config import strings
from runbook.importing import import_file
from runbook.outcomes import CollectionError
from runbook.outcomes import UsageError

#: Plugins that cannot be disabled: without them runbook would not be safe or would not run.
ESSENTIAL_PLUGINS = (
    "runbook.safety.guard",
    "runbook.hosts.local",
    "runbook.ssh.backend",
    "runbook.collect",
    "runbook.safety.audit",
)

#: Plugins registered by default: reporters and the built-in check libraries.
DEFAULT_PLUGINS = (
    "runbook.output.terminal",
    "runbook.output.report",
    "runbook.output.jsonresult",
    "runbook.output.junitxml",
    "runbook.incident.recorder",
    "runbook.incident.notify",
    "runbook.plugins.memory",
    "runbook.plugins.storage",
    "runbook.plugins.network",
    "runbook.plugins.http",
    "runbook.plugins.postgres",
    "runbook.plugins.logs",
)


def make_pluginmanager() -> pluggy.PluginManager:
    """Create the plugin manager with the hook specifications and built-in plugins."""
    pm = pluggy.PluginManager("runbook")
    pm.add_hookspecs(hookspecs)
    for name in (*ESSENTIAL_PLUGINS, *DEFAULT_PLUGINS):
        pm.register(importlib.import_module(name), name)
    return pm


def load_config(options: Mapping[str, Any] | None = None, start: Path | None = None) -> Config:
    """Load the configuration from ``start`` (default: the working directory)."""
    rootdir, inifile, values = find_config((start or Path.cwd()).resolve())
    config = Config(rootdir, inifile, values, make_pluginmanager(), dict(options or {}))
    for name in strings(values.get("plugins", []), "plugins"):
        if config.pluginmanager.has_plugin(name):
            continue  # a built-in plugin named again: it is already there
        config.pluginmanager.register(_load_plugin(config, name), name)
    return config


def _load_plugin(config: Config, name: str) -> ModuleType:
    """Import a plugin named in the configuration: a module name or a ``.py`` path."""
    if name.endswith(".py"):
        try:
            return import_file(config.path(name))
        except CollectionError as exc:
            raise UsageError(f"cannot load plugin {name!r} from configuration: {exc}") from None
    try:
        return importlib.import_module(name)
    except Exception as exc:
        raise UsageError(
            f"cannot load plugin {name!r} from configuration: {type(exc).__name__}: {exc}"
        ) from None
