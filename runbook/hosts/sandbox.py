"""An opt-in OS-level sandbox for the commands read-only checks run on this machine.

The read-only guard judges each command before it runs, in this process; the
sandbox is a second, independent wall that holds even where the guard's
judgement is wrong. Configured in ``runbook.toml``::

    [sandbox]
    read_only = true     # a private mount namespace in which every mount is read-only
    user = "nobody"      # run as this unprivileged user (needs root)

``read_only`` wraps each command in ``unshare --mount`` (with ``--user
--map-root-user`` when runbook does not run as root) and remounts every mount
read-only before the command starts; a mount that cannot be made read-only
stops the command (exit 126). ``user`` runs the command through ``setpriv`` as
that user, without supplementary groups, capabilities or a way to regain them.
Both apply to read-only checks only: actions run as configured, unconfined.
"""

from __future__ import annotations

import dataclasses
import os
import pwd
import shutil
import subprocess
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

from runbook.outcomes import UsageError

#: Remounts every mount of the new namespace read-only, then runs the command.
#: ``mount`` fails on a mount point it cannot name (mountinfo escapes spaces as
#: \\040), which stops the command: the sandbox fails closed.
_REMOUNT = (
    "while read -r _ _ _ _ point _; do "
    'mount -o remount,bind,ro "$point" 2>/dev/null || '
    '{ echo "runbook sandbox: cannot make $point read-only" >&2; exit 126; }; '
    'done < /proc/self/mountinfo; exec "$@"'
)


@dataclasses.dataclass(frozen=True, slots=True)
class Sandbox:
    """How the local backend confines the commands of read-only checks."""

    read_only: bool = False  #: every mount read-only, in a private mount namespace
    user: str | None = None  #: an unprivileged user to run as

    @property
    def is_enabled(self) -> bool:
        """True when check commands are confined at all."""
        return self.read_only or self.user is not None

    @classmethod
    def from_config(cls, values: Mapping[str, Any]) -> Sandbox:
        """Read the ``[sandbox]`` table; a bad value is a one-line ``UsageError``."""
        section = values.get("sandbox", {})
        if not isinstance(section, Mapping):
            raise UsageError("[sandbox] in runbook.toml must be a table")
        unknown = sorted(set(section) - {"read_only", "user"})
        if unknown:
            raise UsageError(f"[sandbox] has unknown keys: {', '.join(unknown)}")
        read_only = section.get("read_only", False)
        user = section.get("user")
        if not isinstance(read_only, bool):
            raise UsageError("[sandbox] read_only must be true or false")
        if user is not None and (not isinstance(user, str) or not user):
            raise UsageError("[sandbox] user must be a user name")
        return cls(read_only, user)

    def prefix(self) -> list[str]:
        """Return the words that run a command inside the sandbox (checked to work).

        Raises a one-line ``UsageError`` saying why when this machine cannot
        provide it (a missing tool, not root, user namespaces disabled ...).
        """
        words: list[str] = []
        if self.read_only:
            unshare = _tool("unshare", "read_only")
            userns = ["--user", "--map-root-user"] if os.geteuid() != 0 else []
            words += [unshare, "--mount", "--propagation", "private", *userns, "--"]
            words += ["/bin/sh", "-c", _REMOUNT, "runbook-sandbox"]
        if self.user is not None:
            words += self._setpriv()
        if words:
            _probe(words)
        return words

    def _setpriv(self) -> list[str]:
        setpriv = _tool("setpriv", "user")
        if os.geteuid() != 0:
            raise UsageError(
                f"[sandbox] user = {self.user!r} needs root to switch users "
                f"(runbook runs as uid {os.geteuid()}); use read_only alone, or run as root"
            )
        try:
            entry = pwd.getpwnam(str(self.user))
        except KeyError:
            raise UsageError(f"[sandbox] user {self.user!r} does not exist") from None
        if entry.pw_uid == 0:
            raise UsageError(f"[sandbox] user {self.user!r} is root: choose an unprivileged user")
        return [
            setpriv,
            f"--reuid={entry.pw_uid}",
            f"--regid={entry.pw_gid}",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--no-new-privs",
            "--",
        ]


def _tool(name: str, key: str) -> str:
    path = shutil.which(name, path="/usr/bin:/bin:/usr/sbin:/sbin")
    if path is None:
        raise UsageError(f"[sandbox] {key} needs {name} (util-linux), which is not installed")
    return path


def _probe(prefix: Sequence[str]) -> None:
    """Run ``true`` in the sandbox once, so that an unusable one fails up front."""
    try:
        probe = subprocess.run(
            [*prefix, "true"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"[sandbox] is not available on this machine: {exc}") from None
    if probe.returncode != 0:
        reason = (probe.stderr.strip().splitlines() or [f"exit status {probe.returncode}"])[-1]
        raise UsageError(f"[sandbox] is not available on this machine: {reason}")
