"""Write result files that only their owner can read (reports may hold evidence)."""

from __future__ import annotations

import os
import stat
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
