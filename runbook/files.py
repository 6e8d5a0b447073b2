"""Write result files that only their owner can read (reports may hold evidence)."""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from runbook.outcomes import UsageError


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600, creating parent folders (mode 0700).

    A path that is not a regular file (``/dev/null``, a FIFO) is written to as it is:
    its mode belongs to the system, not to this report.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    if stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.fchmod(descriptor, 0o600)  # also when the file existed with wider permissions
    with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
        stream.write(text)


def claim_private(stem: Path, suffixes: Sequence[str]) -> Path:
    """Create an empty private file ``stem + suffix`` for each suffix; return the stem used.

    When one of them exists (another run started in the same second), the next of
    ``stem-2``, ``stem-3``... is taken, so that no run overwrites another's files.
    """
    stem.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    candidate, number = stem, 1
    while not _create_all(candidate, suffixes):
        number += 1
        candidate = stem.with_name(f"{stem.name}-{number}")
    return candidate


def _create_all(stem: Path, suffixes: Sequence[str]) -> bool:
    """Create every ``stem + suffix`` exclusively (0600); none of them if one exists."""
    created: list[Path] = []
    try:
        for suffix in suffixes:
            path = stem.with_name(stem.name + suffix)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            created.append(path)
    except FileExistsError:
        for path in created:
            path.unlink()
        return False
    return True


def release_claim(path: Path) -> None:
    """Remove a file ``claim_private`` created, if nothing was written to it."""
    try:
        if path.stat().st_size == 0:
            path.unlink()
    except FileNotFoundError:
        pass


def check_writable(path: Path, option: str) -> Path:
    """Fail before a run, not after it, when ``path`` cannot be written (``UsageError``).

    Creates the missing parent folders (mode 0700), as writing would.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise UsageError(f"{option} {path}: cannot create its folder: {reason}") from None
    writable = os.access(path, os.W_OK) if path.exists() else os.access(path.parent, os.W_OK)
    if not writable:
        raise UsageError(f"{option} {path}: not writable")
    return path
