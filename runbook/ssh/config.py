"""Where SSH targets lead: addresses, the run's SSH options, and the user's SSH config.

An ``ssh://[user@]host[:port]`` target becomes an ``Address``; the SSH config
(HostName, User, Port, IdentityFile, IdentitiesOnly, ProxyJump) turns it into
the ``Endpoint``s to log in to in turn, jump hosts first. paramiko is imported
on first use only (its SSH config parser), so that importing this module is cheap.
"""

from __future__ import annotations

import dataclasses
import getpass
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from runbook.outcomes import UsageError

if TYPE_CHECKING:
    import paramiko

    from runbook.config import Config

DEFAULT_PORT = 22
#: Longest ProxyJump chain followed (a loop in the SSH config would never end).
MAX_JUMPS = 8
_SPEC_FORM = "expected ssh://[user@]host[:port]"


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
        raise UsageError(f"cannot read SSH config {path}: {reason(exc)}") from None


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


def reason(exc: BaseException | None) -> str:
    """One line saying what went wrong, for messages."""
    if exc is None:
        return "connection closed"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower() if exc.strerror[1:2].islower() else exc.strerror
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
