"""SSH keys both ways: the server's host key against known_hosts, the client's keys to log in.

Host keys are checked strictly, like OpenSSH's ``StrictHostKeyChecking=yes``:
a changed key is always refused, an unknown one is refused unless
``accept_new_host_keys`` records it (``accept-new``). Client keys are offered in
OpenSSH's order: named identity files, then the agent's keys, then the default
``~/.ssh/id_*`` files. paramiko is imported on first use only.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from runbook.outcomes import HostUnavailable
from runbook.ssh.config import DEFAULT_PORT
from runbook.ssh.config import Endpoint
from runbook.ssh.config import SSHOptions
from runbook.ssh.config import reason

if TYPE_CHECKING:
    import paramiko

#: Key files tried when neither the options nor the SSH config name one (OpenSSH's order).
DEFAULT_IDENTITIES = ("id_rsa", "id_ecdsa", "id_ed25519")
# Hosts connect in parallel and may record new keys in the same known_hosts file.
_known_hosts_lock = threading.Lock()
#: Parsed known_hosts files by (path, mtime, size): fifty hosts need one parse, not fifty.
_parsed_known_hosts: dict[tuple[Path, int, int], paramiko.HostKeys] = {}


def prefer_known_key_types(
    transport: paramiko.Transport, endpoint: Endpoint, options: SSHOptions
) -> None:
    """Ask for the host key types known_hosts has for this host first, as OpenSSH does.

    Otherwise a server with several host keys could offer one we never saw,
    and a known host would look unknown.
    """
    known = _load_known_hosts(options.known_hosts).lookup(endpoint.known_hosts_name)
    if not known:
        return
    known_types = set(known.keys())

    def is_known(algorithm: str) -> bool:
        return ("ssh-rsa" if algorithm.startswith("rsa-sha2-") else algorithm) in known_types

    security = transport.get_security_options()
    security.key_types = sorted(security.key_types, key=lambda a: not is_known(a))


def _load_known_hosts(path: Path) -> paramiko.HostKeys:
    """Parse ``path`` once per version of it (the result is shared: do not change it)."""
    import paramiko

    try:
        status = path.stat()
    except FileNotFoundError:
        return paramiko.HostKeys()  # nothing known yet: every host is new
    except OSError as exc:
        raise HostUnavailable("error", f"cannot read known hosts {path}: {reason(exc)}") from None
    key = (path, status.st_mtime_ns, status.st_size)
    host_keys = _parsed_known_hosts.get(key)  # one lookup: another thread may clear the cache
    if host_keys is None:
        host_keys = paramiko.HostKeys()
        try:
            host_keys.load(str(path))
        except (OSError, paramiko.SSHException, ValueError) as exc:
            raise HostUnavailable(
                "error", f"cannot read known hosts {path}: {reason(exc)}"
            ) from None
        _parsed_known_hosts.clear()  # keep only the current version of one file
        _parsed_known_hosts[key] = host_keys
    return host_keys


def verify_host_key(transport: paramiko.Transport, endpoint: Endpoint, options: SSHOptions) -> None:
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
                f"cannot record the host key of {endpoint.label} in {path}: {reason(exc)}",
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


def authenticate(transport: paramiko.Transport, endpoint: Endpoint, options: SSHOptions) -> None:
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
                raise HostUnavailable("error", f"cannot log in as {who}: {reason(exc)}") from None
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
        notes.append(f"ssh-agent: {reason(exc)}")
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
            notes.append(f"ssh-agent: {reason(exc)}")
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
            notes.append(f"cannot load {path}: {reason(exc)}")
    return None
