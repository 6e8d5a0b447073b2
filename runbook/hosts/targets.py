"""Targets from ``--host``: ``local``, SSH addresses, plugin schemes, inventory names."""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from runbook.outcomes import UsageError
from runbook.records import Target

if TYPE_CHECKING:
    from runbook.hosts.inventory.model import Inventory

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_-]+")
# Whitespace and shell metacharacters: no target spec needs them, and some backends
# end up in a command line (ssh, docker exec, kubectl exec).
_UNSAFE = re.compile(r"[\s;&|`$<>(){}'\"\\*!]")


def parse_targets(values: Sequence[str], inventory: Inventory | None = None) -> list[Target]:
    """Turn ``--host`` values (each may be a comma list) into targets, without duplicates.

    Inventory hosts and groups expand to their hosts; a plain word that is not
    in a given inventory is an error rather than a host name. A target whose
    spec was already seen is dropped (the first one wins).
    """
    targets: dict[str, Target] = {}
    for value in values:
        for part in value.split(","):
            part = part.strip()
            for target in _resolve(part, inventory) if part else ():
                targets.setdefault(target.spec, target)
    return list(targets.values())


def _resolve(value: str, inventory: Inventory | None) -> list[Target]:
    if inventory is not None:
        hosts = inventory.resolve(value)
        if hosts == ():
            raise UsageError(f"group {value!r} in inventory {inventory.path} has no hosts")
        if hosts is not None:
            return [Target(host.name, host.spec) for host in hosts]
    if value == "local":
        return [Target("local", "local")]
    bad = _UNSAFE.search(value)
    if bad:
        what = "whitespace" if bad[0].isspace() else f"the character {bad[0]!r}"
        raise _invalid(value, f"contains {what}")
    scheme, separator, rest = value.partition("://")
    if separator:
        if not _SCHEME.fullmatch(scheme):
            raise _invalid(value, f"bad scheme {scheme!r}")
        if not rest:
            raise _invalid(value, f"nothing after {scheme}://")
        if scheme.lower() != "ssh":
            return [Target(value, value)]  # a plugin transport parses its own spec
        name, _ = _ssh_address(value, rest, bare_ipv6=False)
        return [Target(name, value)]
    if inventory is not None and _PLAIN_NAME.fullmatch(value):
        hint = difflib.get_close_matches(value, inventory.names(), n=1)
        did_you_mean = f"; did you mean {hint[0]!r}?" if hint else ""
        raise UsageError(
            f"unknown host or group {value!r} in inventory {inventory.path}{did_you_mean}"
        )
    name, spec = _ssh_address(value, value, bare_ipv6=True)
    return [Target(name, spec)]


def _ssh_address(value: str, address: str, *, bare_ipv6: bool) -> tuple[str, str]:
    """Parse ``[user@]host[:port]``; return the report name and the ``ssh://`` spec."""
    user, at, hostport = address.rpartition("@")
    if at and not _USER.fullmatch(user):
        raise _invalid(value, f"bad user {user!r}" if user else "empty user before '@'")
    port_text: str | None = None
    if hostport.startswith("["):
        host, bracket, rest = hostport[1:].partition("]")
        if not bracket or not _is_ipv6(host):
            raise _invalid(value, "expected an IPv6 address in brackets, e.g. [2001:db8::1]:22")
        if rest:
            if not rest.startswith(":"):
                raise _invalid(value, f"unexpected {rest!r} after the address")
            port_text = rest[1:]
    elif hostport.count(":") > 1:
        if not (bare_ipv6 and _is_ipv6(hostport)):
            raise _invalid(value, "put an IPv6 address in brackets, e.g. ssh://[2001:db8::1]:22")
        host = hostport
    else:
        host, colon, written_port = hostport.partition(":")
        port_text = written_port if colon else None
        if not host:
            raise _invalid(value, "empty host")
        if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in host.split(".")):
            raise _invalid(value, f"bad host name {host!r}")
    shown = f"[{host}]" if ":" in host else host
    if port_text is None:
        return host, f"ssh://{user}{at}{shown}"
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise _invalid(value, f"bad port {port_text!r} (expected 1-65535)")
    port = int(port_text)
    return f"{shown}:{port}", f"ssh://{user}{at}{shown}:{port}"


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _invalid(value: str, problem: str) -> UsageError:
    return UsageError(f"invalid target {value!r}: {problem}")
