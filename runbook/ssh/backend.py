"""The SSH backend: one paramiko connection per host, commands through a shell on it.

``ssh://[user@]host[:port]`` targets are resolved through the SSH config
(``runbook.ssh.config``), reached through their jump hosts and logged in to
(``runbook.ssh.connect``) with their host key checked strictly against
known_hosts (``runbook.ssh.keys``). This module is the plugin: it makes the
backend and runs commands on it, one at a time through a long-lived shell
(``runbook.ssh.channel``: no sshd session set-up per command), and others at the
same time in session channels of their own. paramiko is imported on first use only, so
that loading this plugin keeps ``runbook --help`` fast.
"""

from __future__ import annotations

import re
import shlex
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from runbook.markers import hookimpl
from runbook.outcomes import CommandTimeout
from runbook.outcomes import HostUnavailable
from runbook.ssh.channel import OnCancel
from runbook.ssh.channel import Shell
from runbook.ssh.channel import run_channel
from runbook.ssh.config import Address as Address
from runbook.ssh.config import SSHOptions as SSHOptions
from runbook.ssh.config import plan_route
from runbook.ssh.config import read_ssh_config
from runbook.ssh.config import reason
from runbook.ssh.connect import open_transport
from runbook.ssh.connect import quiet_paramiko

if TYPE_CHECKING:
    import paramiko

    from runbook.config import Config
    from runbook.hosts.backend import Backend
    from runbook.optionparser import OptionParser

#: Session channels open at once on one connection: OpenSSH's default ``MaxSessions``.
MAX_SESSIONS = 10
#: A lone ``&`` (not ``&&``, ``>&``, ``&>``) may start a job that outlives its command and
#: writes into the shell's next one: such commands get a channel of their own, which
#: ends only when every process holding its output has. (A ``&`` inside quotes only
#: costs the faster path.)
_BACKGROUND = re.compile(r"(?<![&>|<])&(?![&>])")


class SSHBackend:
    """Run commands on one host over a single SSH connection.

    A command runs in the connection's shell when the shell is free; commands
    from other threads meanwhile get a session channel each (up to
    ``MAX_SESSIONS`` with the shell's, more wait their turn). A server that
    will not run the shell gets a channel for every command.
    """

    def __init__(self, address: Address, options: SSHOptions | None = None) -> None:
        self.options = options or SSHOptions()
        #: The servers logged in to in turn: jump hosts, then the target.
        self.route = plan_route(address, read_ssh_config(self.options.ssh_config))
        self.name = address.name
        self.uri = self.route[-1].uri
        self._transports: list[paramiko.Transport] = []
        self._lock = threading.Lock()
        self._sessions = threading.BoundedSemaphore(MAX_SESSIONS - 1)  # one is the shell's
        self._shell: Shell | None = None
        self._shell_lock = threading.Lock()
        self._has_shell = True  # until the server would not run one

    @classmethod
    def from_spec(cls, spec: str, config: Config | None = None) -> SSHBackend:
        """Build the backend for an ``ssh://`` target with the run's options."""
        options = SSHOptions.from_config(config) if config is not None else None
        return cls(Address.from_spec(spec), options)

    def __repr__(self) -> str:
        return f"<SSHBackend {self.name} {self.uri}>"

    def connect(self) -> None:
        """Log in (through the jump hosts, if any); raise ``HostUnavailable`` if that fails."""
        quiet_paramiko()
        with self._lock:
            if self._transports and self._transports[-1].is_active():
                return
            self._close_transports()
            transports: list[paramiko.Transport] = []
            try:
                for endpoint in self.route:
                    via = transports[-1] if transports else None
                    transports.append(open_transport(endpoint, via, self.options))
            except HostUnavailable as exc:
                for transport in reversed(transports):
                    transport.close()
                if len(transports) < len(self.route) - 1:
                    exc = HostUnavailable(
                        exc.status,
                        f"{exc.message} (jump host on the way to {self.route[-1].label})",
                    )
                raise exc from None
            self._transports = transports

    def execute(
        self,
        command: str | Sequence[str],
        timeout: float,
        on_cancel: OnCancel | None,
    ) -> tuple[str, str, int]:
        """Run ``command``; return (stdout, stderr, exit status).

        A string runs through a shell, so a list is joined with ``shlex.join`` to
        keep each element literal. On timeout or cancel the command's process
        group gets SIGKILL (an RFC 4254 signal request, which OpenSSH honours
        since 7.9) and its channel is closed. The exit status is -9 after a
        cancel and -1 when the server reports none (killed by a signal).
        """
        text = command if isinstance(command, str) else shlex.join(command)
        transport = self._transport()
        if (
            self._has_shell
            and not _BACKGROUND.search(text)
            and self._shell_lock.acquire(blocking=False)
        ):
            try:
                done = self._in_shell(transport, text, timeout, on_cancel)
            finally:
                self._shell_lock.release()
            if done is not None:
                return done
        return self._in_channel(transport, text, timeout, on_cancel)

    def _in_shell(
        self, transport: paramiko.Transport, text: str, timeout: float, on_cancel: OnCancel | None
    ) -> tuple[str, str, int] | None:
        """Run ``text`` in the connection's shell (started if need be); None if there is none."""
        import paramiko

        shell = self._shell
        if shell is None or not shell.is_open or shell.channel.get_transport() is not transport:
            shell = self._shell = Shell.start(transport, self.options.connect_timeout)
            if shell is None:
                self._has_shell = False
                return None
        try:
            stdout, stderr, status, stopped = shell.run(text, timeout, on_cancel)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self._shell = None
            raise self._failure(transport, exc) from None
        if stopped == "timeout":
            raise CommandTimeout(f"command timed out after {timeout:g}s")
        if stopped == "cancel":
            return stdout, stderr, -9
        if status == -1 and not transport.is_active():
            raise self._failure(transport, transport.get_exception())
        return stdout, stderr, status

    def _in_channel(
        self, transport: paramiko.Transport, text: str, timeout: float, on_cancel: OnCancel | None
    ) -> tuple[str, str, int]:
        """Run ``text`` in a session channel of its own."""
        import paramiko

        started = time.monotonic()
        if not self._sessions.acquire(timeout=timeout):
            raise CommandTimeout(f"command timed out after {timeout:g}s waiting for a free session")
        try:
            try:
                channel = transport.open_session(timeout=self.options.connect_timeout)
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise self._failure(transport, exc) from None
            remaining = timeout - (time.monotonic() - started)
            try:
                stdout, stderr, stopped = run_channel(channel, text, remaining, on_cancel)
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise self._failure(transport, exc) from None
        finally:
            self._sessions.release()
        if stopped == "timeout":
            raise CommandTimeout(f"command timed out after {timeout:g}s")
        if stopped == "cancel" and channel.exit_status == -1:
            return stdout, stderr, -9
        if channel.exit_status == -1 and not transport.is_active():
            raise self._failure(transport, transport.get_exception())
        return stdout, stderr, channel.exit_status

    def close(self) -> None:
        """Close the connection and those to the jump hosts."""
        with self._lock:
            self._close_transports()

    def _close_transports(self) -> None:
        self._shell = None  # its channel closes with the connection
        transports, self._transports = self._transports, []
        for transport in reversed(transports):
            transport.close()

    def _transport(self) -> paramiko.Transport:
        """The connection to the target: opened on first use, reopened if it was lost."""
        transports = self._transports
        if not transports or not transports[-1].is_active():
            self.connect()
            transports = self._transports
        return transports[-1]

    def _failure(self, transport: paramiko.Transport, exc: BaseException | None) -> HostUnavailable:
        if transport.is_active():
            return HostUnavailable("error", f"SSH error on {self.route[-1].label}: {reason(exc)}")
        return HostUnavailable(
            "unreachable", f"lost the SSH connection to {self.route[-1].label}: {reason(exc)}"
        )


@hookimpl
def runbook_addoption(parser: OptionParser) -> None:
    """``runbook run --known-hosts FILE --accept-new-host-keys``."""
    parser.addoption(
        "--known-hosts",
        metavar="FILE",
        help="known_hosts file for SSH host keys (default ~/.ssh/known_hosts).",
    )
    parser.addoption(
        "--accept-new-host-keys",
        is_flag=True,
        default=None,
        help="Trust and record the key of a host never seen before (a changed key is refused).",
    )


@hookimpl
def runbook_make_host(spec: str, config: Config) -> Backend | None:
    """Handle ``ssh://[user@]host[:port]`` targets."""
    if not spec.startswith("ssh://"):
        return None
    return SSHBackend.from_spec(spec, config)
