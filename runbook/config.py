"""Configuration (``runbook.toml`` or ``[tool.runbook]``) and the plugin manager."""

from __future__ import annotations

import dataclasses
import importlib
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from runbook import hookspecs
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
    "runbook.plugins.system",
    "runbook.plugins.memory",
    "runbook.plugins.storage",
    "runbook.plugins.network",
    "runbook.plugins.http",
    "runbook.plugins.postgres",
    "runbook.plugins.logs",
)

CONFIG_FILES = ("runbook.toml", "pyproject.toml")


@dataclasses.dataclass(slots=True)
class Config:
    """Settings from the configuration file and the command line, plus the plugin manager."""

    rootdir: Path
    inifile: Path | None
    values: dict[str, Any]
    pluginmanager: pluggy.PluginManager
    options: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def hook(self) -> Any:
        """The plugin manager's hook relay (``config.hook.runbook_...(...)``)."""
        return self.pluginmanager.hook

    def get(self, key: str, default: Any = None) -> Any:
        """Return an option: the command line wins over the configuration file."""
        value = self.options.get(key)
        if value is not None:
            return value
        return self.values.get(key, default)

    def path(self, value: str | Path) -> Path:
        """Resolve a path from the configuration relative to the file's folder."""
        return (self.rootdir / Path(value).expanduser()).resolve()

    def get_path(self, key: str) -> Path | None:
        """Return a path option: from the command line relative to the working directory,
        from the configuration file relative to its folder."""
        value = self.options.get(key)
        if value is not None:
            return Path(str(value)).expanduser().resolve()
        value = self.values.get(key)
        return None if value is None else self.path(str(value))

    @property
    def runbook_paths(self) -> list[Path]:
        """Local folders to collect runbooks from, closest first."""
        paths = [Path(p) for p in os.environ.get("RUNBOOK_PATH", "").split(os.pathsep) if p]
        paths.append(Path.cwd() / "runbooks")
        paths += [self.path(p) for p in _strings(self.values.get("paths", []), "paths")]
        return paths

    @property
    def report_dir(self) -> Path:
        """Where timestamped reports go."""
        return self.path(self.get("report_dir", "runbook-reports"))

    @property
    def read_only_allow(self) -> tuple[str, ...]:
        """Commands the configuration adds to the read-only allowlist."""
        section = self.values.get("read_only", {})
        return tuple(_strings(section.get("allow", []), "read_only.allow"))


def find_config(start: Path) -> tuple[Path, Path | None, dict[str, Any]]:
    """Walk up from ``start`` to the first ``runbook.toml`` or ``[tool.runbook]``."""
    for folder in (start, *start.parents):
        for name in CONFIG_FILES:
            candidate = folder / name
            if not candidate.is_file():
                continue
            try:
                data = tomllib.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise UsageError(f"{candidate}: invalid configuration: {exc}") from None
            if name == "pyproject.toml":
                tool = data.get("tool", {}).get("runbook")
                if tool is None:
                    continue
                data = tool
            if not isinstance(data, dict):
                raise UsageError(f"{candidate}: [tool.runbook] must be a table")
            return folder, candidate, data
    return start, None, {}


def _strings(value: Any, key: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise UsageError(f"configuration key {key!r} must be a list of strings")
    return value


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
    for name in _strings(values.get("plugins", []), "plugins"):
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
