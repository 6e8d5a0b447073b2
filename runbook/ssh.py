"""The SSH backend: one paramiko connection per host, one session channel per command.

``ssh://[user@]host[:port]`` targets are resolved through the SSH config
(``runbook.sshconfig``), reached through their jump hosts and logged in to
(``runbook.sshconnect``) with their host key checked strictly against
known_hosts (``runbook.sshkeys``). This module is the plugin: it makes the
backend and runs commands on it. paramiko is imported on first use only, so
that loading this plugin keeps ``runbook --help`` fast.
"""

from __future__ import annotations

import functools
import logging
import shlex
import threading
import time
from collections.abc import Callable
from collections.abc import Sequence
from typing import TYPE_CHECKING

from runbook.hookspec import hookimpl
from runbook.outcomes import CommandTimeout
from runbook.outcomes import HostUnavailable
from runbook.sshconfig import Address as Address
from runbook.sshconfig import SSHOptions as SSHOptions
from runbook.sshconfig import plan_route
from runbook.sshconfig import read_ssh_config
from runbook.sshconfig import reason
from runbook.sshconnect import open_transport
from runbook.sshconnect import quiet_paramiko

if TYPE_CHECKING:
    import paramiko

    from runbook.config import Config
    from runbook.hosts import Backend

#: Commands running at once on one connection: OpenSSH's default ``MaxSessions``.
MAX_SESSIONS = 10
_CHUNK = 65536


class SSHBackend:
    """Run commands on one host over a single SSH connection, a session channel each.

    Commands from several threads share the connection (up to ``MAX_SESSIONS``
    at once, more wait their turn).
    """

    def __init__(self, address: Address, options: SSHOptions | None = None) -> None:
        self.options = options or SSHOptions()
        #: The servers logged in to in turn: jump hosts, then the target.
        self.route = plan_route(address, read_ssh_config(self.options.ssh_config))
        self.name = address.name
        self.uri = self.route[-1].uri
        self._transports: list[paramiko.Transport] = []
        self._lock = threading.Lock()
        self._sessions = threading.BoundedSemaphore(MAX_SESSIONS)

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
        on_cancel: Callable[[Callable[[], None]], Callable[[], None]] | None,
    ) -> tuple[str, str, int]:
        """Run ``command`` in a new session channel; return (stdout, stderr, exit status).

        sshd hands every command to the user's login shell, so a list is joined
        with ``shlex.join`` to keep each element literal. On timeout or cancel the
        command's process group gets SIGKILL (an RFC 4254 signal request, which
        OpenSSH honours since 7.9) and the channel is closed. The exit status is
        -9 after a cancel and -1 when the server reports none (killed by a signal).
        """
        import paramiko

        text = command if isinstance(command, str) else shlex.join(command)
        started = time.monotonic()
        transport = self._transport()
        if not self._sessions.acquire(timeout=timeout):
            raise CommandTimeout(f"command timed out after {timeout:g}s waiting for a free session")
        try:
            try:
                channel = transport.open_session(timeout=self.options.connect_timeout)
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise self._failure(transport, exc) from None
            remaining = timeout - (time.monotonic() - started)
            try:
                stdout, stderr, stopped = _run(channel, text, remaining, on_cancel)
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


def _run(
    channel: paramiko.Channel,
    text: str,
    timeout: float,
    on_cancel: Callable[[Callable[[], None]], Callable[[], None]] | None,
) -> tuple[str, str, str | None]:
    """Run ``text`` on ``channel``; return stdout, stderr, and why it was stopped (if it was).

    One thread reads both streams (they share the channel's window: a command
    that fills one while we wait on the other would stall) and keeps the time.
    Only the exec request itself is not timed: sshd answers it at once, and a
    cancel closes the channel, which ends that wait too.
    """
    import paramiko

    deadline = time.monotonic() + timeout
    stopper = _Stopper(channel)
    wakeup = _Wakeup()
    channel.in_buffer.set_event(wakeup)
    channel.in_stderr_buffer.set_event(wakeup)
    forget = on_cancel(functools.partial(stopper.stop, "cancel")) if on_cancel else None
    stdout: list[bytes] = []
    stderr: list[bytes] = []
    try:
        channel.exec_command(text)
        while True:
            wakeup.reset()
            ended = channel.eof_received or channel.closed  # then all output is buffered
            while channel.recv_ready():
                stdout.append(channel.recv(_CHUNK))
            while channel.recv_stderr_ready():
                stderr.append(channel.recv_stderr(_CHUNK))
            if ended:
                break
            if not wakeup.wait(deadline - time.monotonic()):
                stopper.stop("timeout")
        if not channel.status_event.wait(max(deadline - time.monotonic(), 0.0)):
            stopper.stop("timeout")  # it closed its output but runs on
    except (paramiko.SSHException, OSError, EOFError):
        if stopper.reason is None:  # else a cancel closed the channel
            raise
    finally:
        if forget is not None:
            forget()
        channel.close()
    return (
        b"".join(stdout).decode("utf-8", "replace"),
        b"".join(stderr).decode("utf-8", "replace"),
        stopper.reason,
    )


class _Wakeup(threading.Event):
    """Set when either output stream of a channel gets data or ends.

    paramiko clears a stream's event when a read empties that stream, though
    the other one may hold data: those clears are ignored, and the reader
    resets the event itself before it drains both streams.
    """

    def clear(self) -> None:
        """Ignore paramiko's clear (see the class docstring)."""

    def reset(self) -> None:
        """Clear the event, before draining both streams."""
        super().clear()


class _Stopper:
    """Stop one running command, at most once: SIGKILL its process group, close its channel."""

    def __init__(self, channel: paramiko.Channel) -> None:
        self.channel = channel
        self.reason: str | None = None
        self._lock = threading.Lock()

    def stop(self, reason: str) -> None:
        """Stop the command, giving ``reason`` ("timeout" or "cancel")."""
        with self._lock:
            if self.reason is not None:
                return
            self.reason = reason
        _send_signal(self.channel, "KILL")
        self.channel.close()


def _send_signal(channel: paramiko.Channel, signal_name: str) -> None:
    """Ask sshd to signal the command (RFC 4254 section 6.9).

    Without a PTY, closing the channel leaves the command running on the host.
    paramiko has no public call for this request, so the message is built here.
    """
    import paramiko
    from paramiko.common import cMSG_CHANNEL_REQUEST

    transport = channel.transport
    if transport is None or channel.closed:
        return
    message = paramiko.Message()
    message.add_byte(cMSG_CHANNEL_REQUEST)
    message.add_int(channel.remote_chanid)
    message.add_string("signal")
    message.add_boolean(False)
    message.add_string(signal_name)
    try:
        transport._send_user_message(message)  # type: ignore[attr-defined]
    except (paramiko.SSHException, OSError, EOFError) as exc:
        # The connection is gone, and the command's session with it.
        logging.getLogger(__name__).debug("cannot signal the command: %s", exc)


@hookimpl
def runbook_make_host(spec: str, config: Config) -> Backend | None:
    """Handle ``ssh://[user@]host[:port]`` targets."""
    if not spec.startswith("ssh://"):
        return None
    return SSHBackend.from_spec(spec, config)
