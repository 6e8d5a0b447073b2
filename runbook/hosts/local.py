"""The local backend: runs commands on this machine with subprocess.

With a ``[sandbox]`` table in ``runbook.toml`` the commands of read-only checks
run inside an OS-level sandbox (see ``runbook.hosts.sandbox``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Callable
from collections.abc import Sequence
from typing import TYPE_CHECKING

from runbook.hosts.sandbox import Sandbox
from runbook.markers import hookimpl
from runbook.outcomes import CommandTimeout
from runbook.outcomes import HostUnavailable
from runbook.outcomes import UsageError
from runbook.safety.audithooks import guarded_step
from runbook.steps import current_step

if TYPE_CHECKING:
    from runbook.config import Config
    from runbook.hosts.backend import Backend


#: The PATH the commands of read-only steps find their programs in, whatever the
#: process's own PATH says: a directory put first in it would decide what ``cat`` runs.
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class LocalBackend:
    """Run commands on the local machine; shell strings go through ``sh -c``."""

    def __init__(self, name: str = "local", sandbox: Sandbox | None = None) -> None:
        self.name = name
        self.uri = f"local://{socket.gethostname()}"
        self.sandbox = sandbox or Sandbox()
        self._confinement: list[str] | None = None  # the sandbox's words, once checked
        # Taken before any check runs: a check may edit os.environ's mapping unaudited.
        self._read_only_environment = {**os.environ, "PATH": SAFE_PATH}

    def execute(
        self,
        command: str | Sequence[str],
        timeout: float,
        on_cancel: Callable[[Callable[[], None]], Callable[[], None]] | None,
    ) -> tuple[str, str, int]:
        """Run ``command`` in its own process group, killed as a group on timeout or cancel."""
        argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
        step = guarded_step() or current_step.get()  # a check may reset current_step
        read_only = step is not None and step.read_only
        if self.sandbox.is_enabled and read_only:
            argv = [*self._confine(), *argv]
        try:
            process = subprocess.Popen(
                argv,
                env=self._read_only_environment if read_only else None,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except FileNotFoundError:
            return "", f"{argv[0]}: command not found", 127
        except PermissionError:
            return "", f"{argv[0]}: permission denied", 126
        forget = on_cancel(lambda: _kill_group(process)) if on_cancel else None
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            process.communicate()
            raise CommandTimeout(f"command timed out after {timeout:g}s") from None
        finally:
            if forget is not None:
                forget()
            _kill_group(process)  # nothing a command started (`cmd &`) outlives it
        return (
            stdout.decode("utf-8", "replace"),
            stderr.decode("utf-8", "replace"),
            process.returncode,
        )

    def connect(self) -> None:
        """Check the sandbox works here, if one is configured; the machine is always there."""
        if self.sandbox.is_enabled:
            try:
                self._confine()
            except UsageError as exc:
                raise HostUnavailable("error", str(exc)) from None

    def _confine(self) -> list[str]:
        if self._confinement is None:
            self._confinement = self.sandbox.prefix()
        return self._confinement

    def close(self) -> None:
        """Nothing to release for the local machine."""


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    # The command ran in its own session, so its children die with it.
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # already gone: nothing to stop


@hookimpl(trylast=True)
def runbook_make_host(spec: str, config: Config) -> Backend | None:
    """Handle the ``local`` target."""
    if spec in ("local", "local://"):
        return LocalBackend(sandbox=Sandbox.from_config(config.values))
    return None
