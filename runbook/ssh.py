"""The SSH backend: one paramiko connection per host, one session channel per command.

``ssh://[user@]host[:port]`` targets are resolved through the SSH config
(HostName, User, Port, IdentityFile, IdentitiesOnly, ProxyJump), log in with
key files and the agent, and have their host key checked strictly against
known_hosts, like OpenSSH's ``StrictHostKeyChecking=yes`` (``accept-new`` with
``accept_new_host_keys``). paramiko is imported on first use only, so that
loading this plugin keeps ``runbook --help`` fast.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import getpass
import hashlib
import logging
import os
import shlex
import socket
import threading
import time
from collections.abc import Callable
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from runbook.hookspec import hookimpl
from runbook.outcomes import CommandTimeout
from runbook.outcomes import HostUnavailable
from runbook.outcomes import UsageError

if TYPE_CHECKING:
    import paramiko

    from runbook.config import Config
    from runbook.hosts import Backend

DEFAULT_PORT = 22
#: Key files tried when neither the options nor the SSH config name one (OpenSSH's order).
DEFAULT_IDENTITIES = ("id_rsa", "id_ecdsa", "id_ed25519")
#: Commands running at once on one connection: OpenSSH's default ``MaxSessions``.
MAX_SESSIONS = 10
#: Longest ProxyJump chain followed (a loop in the SSH config would never end).
MAX_JUMPS = 8
_CHUNK = 65536
_SPEC_FORM = "expected ssh://[user@]host[:port]"
# Hosts connect in parallel and may record new keys in the same known_hosts file.
_known_hosts_lock = threading.Lock()


@dataclasses.dataclass(frozen=True, slots=True)
class Address:
    """A host as the operator wrote it: ``[user@]host[:port]``."""

    host: str
    user: str | None = None
    port: int | None = None

    @classmethod
    def from_spec(cls, spec: str) -> Address:
        """Parse an ``ssh://[user@]host[:port]`` target; raise ``UsageError`` if malformed."""
        if not spec.startswith("ssh://"):
            raise UsageError(f"invalid SSH target {spec!r}: {_SPEC_FORM}")
        return cls.parse(spec.removeprefix("ssh://").removesuffix("/"), spec)

    @classmethod
    def parse(cls, text: str, spec: str | None = None) -> Address:
        """Parse ``[user@]host[:port]``, IPv6 addresses in brackets (``[::1]:22``)."""

        def invalid(reason: str) -> UsageError:
            return UsageError(f"invalid SSH target {spec or text!r}: {reason} ({_SPEC_FORM})")

        user, at, hostport = text.rpartition("@")
        if at and not user:
            raise invalid("empty user name")
        if ":" in user:
            raise invalid("passwords are not supported, use keys or ssh-agent")
        port_text: str | None = None
        if hostport.startswith("["):
            host, bracket, rest = hostport[1:].partition("]")
            if not bracket or (rest and not rest.startswith(":")):
                raise invalid("bad bracketed address")
            port_text = rest[1:] if rest else None
        elif hostport.count(":") > 1:
            raise invalid("put IPv6 addresses in brackets, as in ssh://[::1]:22")
        else:
            host, colon, after = hostport.partition(":")
            port_text = after if colon else None
        if not host:
            raise invalid("no host")
        if any(c.isspace() or c in "/?#@[]" for c in host):
            raise invalid(f"bad host name {host!r}")
        port = None
        if port_text is not None:
            if not (port_text.isascii() and port_text.isdigit() and 0 < int(port_text) < 65536):
                raise invalid(f"bad port {port_text!r}")
            port = int(port_text)
        return cls(host, user or None, port)

    @property
    def name(self) -> str:
        """The host as written, with ``:port`` if a port was given."""
        if self.port is None:
            return self.host
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclasses.dataclass(frozen=True, slots=True)
class Endpoint:
    """One SSH server to log in to, once the SSH config has been applied."""

    alias: str
    hostname: str
    port: int
    user: str
    identity_files: tuple[Path, ...] = ()
    identities_only: bool = False
    #: Jump hosts to go through, first to last (``ProxyJump``).
    jumps: tuple[Address, ...] = ()

    @property
    def uri(self) -> str:
        """``ssh://user@hostname:port``."""
        host = f"[{self.hostname}]" if ":" in self.hostname else self.hostname
        return f"ssh://{self.user}@{host}:{self.port}"

    @property
    def known_hosts_name(self) -> str:
        """The host's name in known_hosts: ``hostname``, or ``[hostname]:port`` off port 22."""
        if self.port == DEFAULT_PORT:
            return self.hostname
        return f"[{self.hostname}]:{self.port}"

    @property
    def label(self) -> str:
        """How messages name the server: the alias, and where it really is."""
        host = f"[{self.hostname}]" if ":" in self.hostname else self.hostname
        where = f"{host}:{self.port}"
        return where if self.alias in (self.hostname, where) else f"{self.alias} ({where})"


@dataclasses.dataclass(frozen=True, slots=True)
class SSHOptions:
    """How SSH hosts are reached; ``from_config`` reads them from the run's configuration."""

    known_hosts: Path = dataclasses.field(
        default_factory=lambda: Path.home() / ".ssh" / "known_hosts"
    )
    accept_new_host_keys: bool = False
    #: None: ``~/.ssh/config`` if it exists.
    ssh_config: Path | None = None
    connect_timeout: float = 10.0
    identity_file: Path | None = None

    @classmethod
    def from_config(cls, config: Config) -> SSHOptions:
        """Read ``known_hosts``, ``accept_new_host_keys``, ``ssh_config``, ``connect_timeout``
        and ``identity_file`` from the configuration and the command line."""
        value = config.get("connect_timeout", 10.0)
        try:
            timeout = float(value)
        except (TypeError, ValueError):
            timeout = 0.0
        if not timeout > 0:
            raise UsageError(f"connect_timeout must be a positive number of seconds, not {value!r}")
        return cls(
            known_hosts=config.get_path("known_hosts") or Path.home() / ".ssh" / "known_hosts",
            accept_new_host_keys=bool(config.get("accept_new_host_keys", False)),
            ssh_config=config.get_path("ssh_config"),
            connect_timeout=timeout,
            identity_file=config.get_path("identity_file"),
        )


def read_ssh_config(path: Path | None) -> paramiko.SSHConfig:
    """Parse an SSH config file; None reads ``~/.ssh/config`` if there is one."""
    import paramiko

    if path is None:
        path = Path.home() / ".ssh" / "config"
        if not path.is_file():
            return paramiko.SSHConfig()
    try:
        return paramiko.SSHConfig.from_path(path)
    except (OSError, paramiko.SSHException) as exc:
        raise UsageError(f"cannot read SSH config {path}: {_reason(exc)}") from None


def resolve(address: Address, ssh_config: paramiko.SSHConfig) -> Endpoint:
    """Apply the SSH config to ``address`` as ``ssh`` does: what the address says wins."""
    found = ssh_config.lookup(address.host.lower())
    try:
        port = address.port or int(found.get("port", DEFAULT_PORT))
    except ValueError:
        raise UsageError(
            f"bad Port {found['port']!r} for {address.host} in the SSH config"
        ) from None
    jump = found.get("proxyjump", "none")
    jumps: tuple[Address, ...] = ()
    if jump.lower() != "none":
        try:
            jumps = tuple(
                Address.parse(hop.strip().removeprefix("ssh://")) for hop in jump.split(",")
            )
        except UsageError:
            raise UsageError(
                f"bad ProxyJump {jump!r} for {address.host} in the SSH config "
                f"(expected [user@]host[:port], comma separated)"
            ) from None
    identities: Sequence[str] = found.get("identityfile", [])  # a list, despite the stubs
    return Endpoint(
        alias=address.name,
        hostname=found.get("hostname", address.host),
        port=port,
        user=address.user or found.get("user") or getpass.getuser(),
        identity_files=tuple(Path(p).expanduser() for p in identities),
        identities_only=found.get("identitiesonly", "no").lower() == "yes",
        jumps=jumps,
    )


def plan_route(address: Address, ssh_config: paramiko.SSHConfig) -> tuple[Endpoint, ...]:
    """Return the servers to log in to in turn: jump hosts first, the target last."""
    route = [resolve(address, ssh_config)]
    while route[0].jumps:
        if len(route) > MAX_JUMPS:
            raise UsageError(
                f"ProxyJump chain to {address.name} is longer than {MAX_JUMPS} hosts "
                f"(a loop in the SSH config?)"
            )
        *before, last = route[0].jumps
        hop = resolve(last, ssh_config)
        if before:  # `ProxyJump a,b`: b is reached through a
            hop = dataclasses.replace(hop, jumps=tuple(before))
        route.insert(0, hop)
    return tuple(route)


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
        _quiet_paramiko()
        with self._lock:
            if self._transports and self._transports[-1].is_active():
                return
            self._close_transports()
            transports: list[paramiko.Transport] = []
            try:
                for endpoint in self.route:
                    via = transports[-1] if transports else None
                    transports.append(_open(endpoint, via, self.options))
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
            return HostUnavailable("error", f"SSH error on {self.route[-1].label}: {_reason(exc)}")
        return HostUnavailable(
            "unreachable", f"lost the SSH connection to {self.route[-1].label}: {_reason(exc)}"
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


def _open(
    endpoint: Endpoint, via: paramiko.Transport | None, options: SSHOptions
) -> paramiko.Transport:
    """Connect to ``endpoint`` (directly, or through the jump host ``via``) and log in."""
    import paramiko

    deadline = time.monotonic() + options.connect_timeout
    transport = paramiko.Transport(_socket(endpoint, via, options, deadline))
    try:
        _handshake(transport, endpoint, options, deadline)
        _verify_host_key(transport, endpoint, options)
        _authenticate(transport, endpoint, options)
    except BaseException:
        transport.close()
        raise
    return transport


def _socket(
    endpoint: Endpoint, via: paramiko.Transport | None, options: SSHOptions, deadline: float
) -> socket.socket | paramiko.Channel:
    """Open the byte stream to the server: a TCP socket, or a channel through a jump host."""
    import paramiko

    address = (endpoint.hostname, endpoint.port)
    if via is not None:
        try:
            return via.open_channel(
                "direct-tcpip", address, ("127.0.0.1", 0), timeout=options.connect_timeout
            )
        except paramiko.ChannelException as exc:
            raise HostUnavailable(
                "unreachable", f"cannot connect to {endpoint.label} from the jump host: {exc.text}"
            ) from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise HostUnavailable(
                "unreachable",
                f"cannot connect to {endpoint.label} through the jump host: {_reason(exc)}",
            ) from None
    try:
        sock = socket.create_connection(address, timeout=max(deadline - time.monotonic(), 0.001))
    except socket.gaierror as exc:
        raise HostUnavailable(
            "unreachable",
            f"cannot connect to {endpoint.label}: "
            f"cannot resolve {endpoint.hostname}: {exc.strerror}",
        ) from None
    except TimeoutError:
        raise HostUnavailable(
            "unreachable",
            f"cannot connect to {endpoint.label}: no answer within {options.connect_timeout:g}s",
        ) from None
    except OSError as exc:
        raise HostUnavailable(
            "unreachable", f"cannot connect to {endpoint.label}: {_reason(exc)}"
        ) from None
    # Without TCP_NODELAY, Nagle's algorithm holds back the small packets of
    # every command (measured: ~48 ms per command instead of ~5 ms).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    return sock


def _handshake(
    transport: paramiko.Transport, endpoint: Endpoint, options: SSHOptions, deadline: float
) -> None:
    """Exchange banners and keys before ``deadline``, preferring host key types we know."""
    known = _load_known_hosts(options.known_hosts).lookup(endpoint.known_hosts_name)
    if known:
        _prefer_key_types(transport, set(known.keys()))
    remaining = max(deadline - time.monotonic(), 0.001)
    # paramiko's own timers are backstops: the wait below decides (and explains).
    transport.banner_timeout = remaining + 1
    transport.handshake_timeout = remaining + 1
    transport.auth_timeout = options.connect_timeout
    transport.channel_timeout = options.connect_timeout
    done = threading.Event()
    transport.start_client(event=done)
    if not done.wait(remaining):
        banner = transport.remote_version
        transport.close()
        timeout = f"{options.connect_timeout:g}s"
        if not banner:
            raise HostUnavailable(
                "unreachable", f"cannot connect to {endpoint.label}: no SSH banner within {timeout}"
            )
        raise HostUnavailable(
            "unreachable",
            f"cannot connect to {endpoint.label}: the SSH handshake stalled after its "
            f"banner ({banner}) for {timeout}",
        )
    if not transport.is_active():
        raise _handshake_failure(transport.get_exception(), endpoint)


def _handshake_failure(exc: Exception | None, endpoint: Endpoint) -> HostUnavailable:
    from paramiko.ssh_exception import IncompatiblePeer

    prefix = f"cannot connect to {endpoint.label}"
    if exc is not None and "banner" in str(exc):
        if isinstance(exc.__context__, TimeoutError):
            return HostUnavailable("unreachable", f"{prefix}: no SSH banner")
        return HostUnavailable(
            "unreachable", f"{prefix}: connection closed before the SSH banner (not an SSH server?)"
        )
    if exc is None or isinstance(exc, EOFError | ConnectionError):
        return HostUnavailable(
            "unreachable", f"{prefix}: connection closed during the SSH handshake"
        )
    if isinstance(exc, IncompatiblePeer):
        return HostUnavailable("error", f"{prefix}: incompatible SSH server: {_reason(exc)}")
    return HostUnavailable("error", f"{prefix}: SSH handshake failed: {_reason(exc)}")


def _prefer_key_types(transport: paramiko.Transport, known: set[str]) -> None:
    """Ask for the host key types known_hosts has for this host first, as OpenSSH does.

    Otherwise a server with several host keys could offer one we never saw,
    and a known host would look unknown.
    """

    def is_known(algorithm: str) -> bool:
        return ("ssh-rsa" if algorithm.startswith("rsa-sha2-") else algorithm) in known

    security = transport.get_security_options()
    security.key_types = sorted(security.key_types, key=lambda a: not is_known(a))


#: Parsed known_hosts files by (path, mtime, size): fifty hosts need one parse, not fifty.
_parsed_known_hosts: dict[tuple[Path, int, int], paramiko.HostKeys] = {}


def _load_known_hosts(path: Path) -> paramiko.HostKeys:
    """Parse ``path`` (call with ``_known_hosts_lock`` held); reparse when it changes."""
    import paramiko

    try:
        status = path.stat()
    except FileNotFoundError:
        return paramiko.HostKeys()  # nothing known yet: every host is new
    except OSError as exc:
        raise HostUnavailable("error", f"cannot read known hosts {path}: {_reason(exc)}") from None
    key = (path, status.st_mtime_ns, status.st_size)
    if key not in _parsed_known_hosts:
        host_keys = paramiko.HostKeys()
        try:
            host_keys.load(str(path))
        except (OSError, paramiko.SSHException, ValueError) as exc:
            raise HostUnavailable(
                "error", f"cannot read known hosts {path}: {_reason(exc)}"
            ) from None
        _parsed_known_hosts.clear()  # keep only the current version of one file
        _parsed_known_hosts[key] = host_keys
    return _parsed_known_hosts[key]


def _verify_host_key(
    transport: paramiko.Transport, endpoint: Endpoint, options: SSHOptions
) -> None:
    """Accept the server's key only if known_hosts has it (or, with accept-new, lacks any)."""
    key = transport.get_remote_server_key()
    kind = key.get_name()
    name = endpoint.known_hosts_name
    path = options.known_hosts
    with _known_hosts_lock:
        known = _load_known_hosts(path).lookup(name)
        if known is not None and kind in known:
            if known[kind] == key:
                return
            raise HostUnavailable(
                "host_key_rejected",
                f"WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED for {endpoint.label}! "
                f"It offers {kind} key {fingerprint(key)}, but {path} has another one: "
                f"someone could be eavesdropping (man-in-the-middle attack), or the host "
                f"key was replaced. Refusing to connect, even with --accept-new-host-keys; "
                f"if the change is expected, remove the old key with "
                f"`ssh-keygen -f {path} -R '{name}'`",
            )
        if not options.accept_new_host_keys:
            others = f" (it has only its {', '.join(known)} key)" if known else ""
            port = f"-p {endpoint.port} " if endpoint.port != DEFAULT_PORT else ""
            raise HostUnavailable(
                "host_key_rejected",
                f"unknown host key for {endpoint.label}: {kind} {fingerprint(key)} is not "
                f"in {path}{others}; if that fingerprint is right, run again with "
                f"--accept-new-host-keys, or add the key with `ssh-keyscan {port}-t "
                f"{_keyscan_type(kind)} {endpoint.hostname} >> {path}`",
            )
        try:
            _append_known_host(path, f"{name} {kind} {key.get_base64()}")
        except OSError as exc:
            raise HostUnavailable(
                "error",
                f"cannot record the host key of {endpoint.label} in {path}: {_reason(exc)}",
            ) from None


def fingerprint(key: paramiko.PKey) -> str:
    """Return the key's fingerprint as OpenSSH shows it: ``SHA256:<base64>``."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _keyscan_type(kind: str) -> str:
    for short in ("ed25519", "ecdsa", "rsa"):
        if short in kind:
            return short
    return kind


def _append_known_host(path: Path, line: str) -> None:
    """Append ``line`` to known_hosts, creating it (mode 0600) and its folder if needed."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(path, "a+b", opener=_open_private) as file:
        if file.tell() > 0:
            file.seek(-1, 2)
            if file.read(1) != b"\n":
                file.write(b"\n")
        file.write(line.encode() + b"\n")


def _open_private(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)


def _authenticate(transport: paramiko.Transport, endpoint: Endpoint, options: SSHOptions) -> None:
    """Offer the keys in OpenSSH's order until the server takes one."""
    import paramiko

    who = f"{endpoint.user}@{endpoint.label}"
    notes: list[str] = []
    agent = None if endpoint.identities_only else _agent(notes)
    try:
        keys = _identities(endpoint, options, agent, notes)
        tried: list[str] = []
        for label, key in keys:
            try:
                further = transport.auth_publickey(endpoint.user, key)
            except paramiko.BadAuthenticationType as exc:
                allowed = ", ".join(exc.allowed_types) or "nothing"
                raise HostUnavailable(
                    "auth_failed", f"cannot log in as {who}: it does not take keys (only {allowed})"
                ) from None
            except paramiko.AuthenticationException:
                tried.append(label)
                if not transport.is_active():
                    notes.append("the server hung up (too many keys offered?)")
                    break
                continue
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise HostUnavailable("error", f"cannot log in as {who}: {_reason(exc)}") from None
            if further:
                raise HostUnavailable(
                    "auth_failed",
                    f"cannot log in as {who}: the key was accepted but the server also "
                    f"wants {', '.join(further)}",
                )
            return
    finally:
        if agent is not None:
            agent.close()
    if tried:
        message = f"cannot log in as {who}: it refused every key offered ({', '.join(tried)})"
    else:
        message = (
            f"cannot log in as {who}: no SSH key to offer (no identity file, "
            f"no IdentityFile in the SSH config, no ~/.ssh/id_* key, no ssh-agent key)"
        )
    raise HostUnavailable("auth_failed", "; ".join([message, *notes]))


def _agent(notes: list[str]) -> paramiko.Agent | None:
    """Connect to ssh-agent (``SSH_AUTH_SOCK``); an agent without keys is harmless."""
    import paramiko

    try:
        return paramiko.Agent()
    except (paramiko.SSHException, OSError) as exc:
        notes.append(f"ssh-agent: {_reason(exc)}")
        return None


def _identities(
    endpoint: Endpoint, options: SSHOptions, agent: paramiko.Agent | None, notes: list[str]
) -> list[tuple[str, paramiko.PKey]]:
    """Return the keys to offer, labelled; note in ``notes`` keys that cannot be used.

    The identity_file option and the SSH config's IdentityFile come first, then
    the agent's keys, then the default ~/.ssh/id_* files if nothing was named.
    """
    import paramiko

    keys: list[tuple[str, paramiko.PKey]] = []
    seen: set[bytes] = set()

    def offer(label: str, key: paramiko.PKey) -> None:
        if key.asbytes() not in seen:
            seen.add(key.asbytes())
            keys.append((label, key))

    named = [*([options.identity_file] if options.identity_file else []), *endpoint.identity_files]
    defaults = [] if named else [Path.home() / ".ssh" / name for name in DEFAULT_IDENTITIES]
    for path in named:
        if (key := _load_key(path, notes, required=True)) is not None:
            offer(str(path), key)
    if agent is not None:
        try:
            for agent_key in agent.get_keys():
                offer(f"agent key {fingerprint(agent_key)}", agent_key)
        except (paramiko.SSHException, OSError) as exc:
            notes.append(f"ssh-agent: {_reason(exc)}")
    for path in defaults:
        if (key := _load_key(path, notes, required=False)) is not None:
            offer(str(path), key)
    return keys


def _load_key(path: Path, notes: list[str], required: bool) -> paramiko.PKey | None:
    """Load a private key file, or note why it cannot be used."""
    import paramiko

    if not path.exists():
        if required:
            notes.append(f"{path} does not exist")
        return None
    try:
        return paramiko.PKey.from_path(path)
    except (paramiko.SSHException, OSError, ValueError, TypeError) as exc:
        # paramiko lets cryptography's TypeError through for encrypted OpenSSH keys.
        if isinstance(exc, paramiko.PasswordRequiredException) or "password" in str(exc):
            notes.append(f"{path} is encrypted: add it to ssh-agent")
        else:
            notes.append(f"cannot load {path}: {_reason(exc)}")
    return None


def _reason(exc: BaseException | None) -> str:
    """One line saying what went wrong, for messages."""
    if exc is None:
        return "connection closed"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower() if exc.strerror[1:2].islower() else exc.strerror
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _quiet_paramiko() -> None:
    """Keep paramiko's tracebacks of failed connections off the terminal.

    Failures are reported as ``HostUnavailable``; without a handler of its own,
    paramiko's error log would reach logging's last-resort stderr handler.
    """
    logger = logging.getLogger("paramiko")
    if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        logger.addHandler(logging.NullHandler())


@hookimpl
def runbook_make_host(spec: str, config: Config) -> Backend | None:
    """Handle ``ssh://[user@]host[:port]`` targets."""
    if not spec.startswith("ssh://"):
        return None
    return SSHBackend.from_spec(spec, config)
