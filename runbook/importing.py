"""Import Python files by path (local runbooks, ``runbookconf.py``, plugin files)."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import traceback
from pathlib import Path
from types import ModuleType

from runbook.outcomes import CollectionError


def import_file(path: Path, real: Path | None = None) -> ModuleType:
    """Import ``path`` under a name unique to its folder; raise ``CollectionError``.

    ``real`` is ``path`` already resolved, when the caller knows it.
    """
    real = path.resolve() if real is None else real
    digest = hashlib.sha1(str(real.parent).encode()).hexdigest()[:10]
    name = f"runbook_local_{digest}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise CollectionError(str(path), None, "cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise import_error(path, exc) from None
    return module


def import_error(path: Path, exc: BaseException) -> CollectionError:
    """Describe why a module failed to import, naming its file and line."""
    if isinstance(exc, SyntaxError):
        return CollectionError(str(path), exc.lineno, f"{type(exc).__name__}: {exc.msg}")
    lineno = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename).resolve() == path.resolve():
            lineno = frame.lineno
    return CollectionError(str(path), lineno, f"{type(exc).__name__}: {exc}")
