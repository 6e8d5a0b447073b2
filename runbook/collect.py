"""Collect runbooks from local folders, plugins, entry points and the built-in library.

Every loaded module is registered with the plugin manager; a module that
defines checks is also a runbook. Sources are searched closest first, so a
local runbook shadows a built-in one of the same name.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import importlib.metadata
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import pluggy

from runbook.fixtures import FixtureDef
from runbook.fixtures import fixtures_in
from runbook.importing import import_error
from runbook.importing import import_file
from runbook.markers import hookimpl
from runbook.model import Runbook
from runbook.model import defines_checks
from runbook.model import runbook_name
from runbook.outcomes import CollectionError
from runbook.outcomes import UsageError
from runbook.safety import audithooks

if TYPE_CHECKING:
    from runbook.config import Config

ENTRY_POINT_GROUP = "runbook"
CONFTEST = "runbookconf.py"
LIBRARY_PACKAGE = "runbook.library"
CONFTEST_PREFIX = "runbookconf:"


@dataclasses.dataclass(slots=True)
class Collection:
    """The runbooks found, what failed to load, and what was shadowed."""

    runbooks: dict[str, Runbook] = dataclasses.field(default_factory=dict)
    errors: list[CollectionError] = dataclasses.field(default_factory=list)
    shadowed: list[Runbook] = dataclasses.field(default_factory=list)
    plugin_fixtures: list[FixtureDef] = dataclasses.field(default_factory=list)
    _seen: set[Path] = dataclasses.field(default_factory=set)

    def add(self, runbook: Runbook) -> None:
        """Keep ``runbook`` unless a closer source already provided that name."""
        if runbook.name in self.runbooks:
            self.shadowed.append(runbook)
        else:
            self.runbooks[runbook.name] = runbook

    def lookup(self, name: str) -> Runbook:
        """The runbook called ``name``; a ``UsageError`` that suggests close names if none is."""
        if name in self.runbooks:
            return self.runbooks[name]
        broken = broken_runbook_names(self).get(name)
        if broken is not None:
            raise UsageError(f"runbook {name!r} cannot be loaded: {broken}")
        close = difflib.get_close_matches(name, list(self.runbooks), n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UsageError(f"unknown runbook {name!r}.{hint} (`runbook list` shows them all)")

    def is_new(self, path: Path, real: Path | None = None) -> bool:
        """True the first time a real path is seen: a file reached twice loads once.

        ``real`` is ``path`` already resolved, when the caller knows it.
        """
        real = path.resolve() if real is None else real
        if real in self._seen:
            return False
        self._seen.add(real)
        return True


def library_dir() -> Path:
    """Return the folder of the built-in runbook library."""
    module = importlib.import_module(LIBRARY_PACKAGE)
    return Path(next(iter(module.__path__)))


@hookimpl
def runbook_collect(config: Config) -> list[Path]:
    """Offer the configured local folders (the library is added last by ``collect``)."""
    return config.runbook_paths


def collect(config: Config) -> Collection:
    """Load plugins and runbooks, then configure; never raise for a broken runbook.

    Entry-point plugins load first so that their ``runbook_collect`` and
    ``runbook_configure`` take part; their runbooks rank after local ones.
    """
    audithooks.install()  # before any runbook module is imported
    collection = Collection()
    installed = _load_entry_points(config, collection)
    config.hook.runbook_configure.call_historic(kwargs={"config": config})
    for folder in _ordered(config.hook.runbook_collect(config=config)):
        _collect_path(config, collection, folder)
    for module, path, label in installed:
        _adopt(config, collection, module, path, label)
    _collect_library(config, collection)
    try:
        config.pluginmanager.check_pending()
    except pluggy.PluginValidationError as exc:
        raise UsageError(str(exc)) from None
    collection.plugin_fixtures = list(_plugin_fixtures(config))
    return collection


def _ordered(results: Iterable[Iterable[Path]]) -> list[Path]:
    # pluggy calls later-registered plugins first; the core's own folders
    # (registered first) come back last, but they must be searched first.
    groups = list(results)
    return [Path(path) for group in reversed(groups) for path in group]


def _collect_path(config: Config, collection: Collection, path: Path) -> None:
    cwd = Path.cwd().resolve()
    if path.is_file():
        real = path.resolve()
        _load_file(config, collection, path, real, (), _label(real, cwd))
        return
    if not path.is_dir():
        return
    folder = path.resolve()  # once: resolving each of a thousand files costs ~0.1 s
    shared: tuple[FixtureDef, ...] = ()
    conftest = path / CONFTEST
    if conftest.is_file() and collection.is_new(conftest):
        module = _import_file(collection, conftest)
        if module is not None:
            _register(config, module, f"{CONFTEST_PREFIX}{conftest}")
            shared = tuple(fixtures_in(vars(module), str(conftest)))
    for file in sorted(path.glob("*.py")):
        if _is_runbook_file(file):
            real = file.resolve() if file.is_symlink() else folder / file.name
            _load_file(config, collection, file, real, shared, _label(real, cwd))


def _is_runbook_file(path: Path) -> bool:
    name = path.name
    return not (
        name.startswith(("_", "test_", ".")) or name.endswith("_test.py") or name == CONFTEST
    )


def _label(real: Path, cwd: Path) -> str:
    """Where a runbook comes from, as ``runbook list`` shows it: relative to ``cwd`` if inside."""
    try:
        return str(real.relative_to(cwd))
    except ValueError:
        return str(real)


def _load_file(
    config: Config,
    collection: Collection,
    path: Path,
    real: Path,
    shared: tuple[FixtureDef, ...],
    source: str,
) -> None:
    if not collection.is_new(path, real):
        return
    module = _import_file(collection, path, real)
    if module is not None:
        _adopt(config, collection, module, path, source, shared)


def _import_file(collection: Collection, path: Path, real: Path | None = None) -> ModuleType | None:
    try:
        return import_file(path, real)
    except CollectionError as exc:
        collection.errors.append(exc)
        return None


def _adopt(
    config: Config,
    collection: Collection,
    module: ModuleType,
    path: Path,
    source: str,
    shared: tuple[FixtureDef, ...] = (),
) -> None:
    _register(config, module, f"{source}:{module.__name__}")
    if not defines_checks(module):
        return
    try:
        collection.add(Runbook.from_module(module, path, source, shared))
    except CollectionError as exc:
        collection.errors.append(exc)


def _register(config: Config, module: ModuleType, name: str) -> None:
    """Register ``module`` as a plugin, unless it (or its name) already is."""
    try:
        # pluggy refuses a plugin or a name registered before; asking first
        # (is_registered) scans every plugin in Python: quadratic over many runbooks.
        config.pluginmanager.register(module, name)
    except ValueError:
        pass


def _load_entry_points(
    config: Config, collection: Collection
) -> list[tuple[ModuleType, Path, str]]:
    """Import and register every entry point; return the modules (maybe runbooks)."""
    modules = []
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = entry_point.dist.name if entry_point.dist else "unknown distribution"
        try:
            loaded = entry_point.load()
        except Exception as exc:
            collection.errors.append(
                CollectionError(
                    f"entry point {entry_point.name} ({dist})",
                    None,
                    f"failed to load {entry_point.value}: {type(exc).__name__}: {exc}",
                )
            )
            continue
        if not isinstance(loaded, ModuleType):
            _register(config, loaded, f"entry point {entry_point.name}")
            continue
        _register(config, loaded, f"plugin {dist}:{loaded.__name__}")
        path = Path(loaded.__file__ or entry_point.value)
        if collection.is_new(path):
            modules.append((loaded, path, f"plugin {dist}"))
    return modules


def _collect_library(config: Config, collection: Collection) -> None:
    folder = library_dir()
    for file in sorted(folder.glob("*.py")):
        if not _is_runbook_file(file) or not collection.is_new(file):
            continue
        try:
            module = importlib.import_module(f"{LIBRARY_PACKAGE}.{file.stem}")
        except Exception as exc:
            collection.errors.append(import_error(file, exc))
            continue
        _adopt(config, collection, module, file, "builtin")


def _plugin_fixtures(config: Config) -> Iterable[FixtureDef]:
    for name, plugin in config.pluginmanager.list_name_plugin():
        if name.startswith(CONFTEST_PREFIX):
            continue  # a folder's shared fixtures serve that folder only
        if isinstance(plugin, ModuleType) and not defines_checks(plugin):
            yield from fixtures_in(vars(plugin), name)


def broken_runbook_names(collection: Collection) -> dict[str, CollectionError]:
    """Map the would-be names of runbooks that failed to load to their errors."""
    return {
        runbook_name(Path(error.path)): error
        for error in collection.errors
        if error.path.endswith(".py")
    }
