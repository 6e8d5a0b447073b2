"""Write result files that only their owner can read (reports may hold evidence)."""

from __future__ import annotations

import os
import stat
from pathlib import Path


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
