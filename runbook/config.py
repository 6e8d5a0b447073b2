"""Configuration: ``runbook.toml`` or ``[tool.runbook]``, and the command line's options.

The plugin manager that a ``Config`` carries is built by ``runbook.pluginmanager``.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from pathlib import Path
from typing import Any

import pluggy

from runbook.outcomes import UsageError

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
        paths += [self.path(p) for p in strings(self.values.get("paths", []), "paths")]
        return paths

    @property
    def report_dir(self) -> Path:
        """Where timestamped reports go."""
        return self.path(self.get("report_dir", "runbook-reports"))

    @property
    def read_only_allow(self) -> tuple[str, ...]:
        """Commands the configuration adds to the read-only allowlist."""
        section = self.values.get("read_only", {})
        return tuple(strings(section.get("allow", []), "read_only.allow"))


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


def strings(value: Any, key: str) -> list[str]:
    """Return a configuration value that must be a string or a list of strings."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise UsageError(f"configuration key {key!r} must be a list of strings")
    return value
