"""An inventory's hosts and groups, and the builder that INI and YAML readers both fill.

Every problem is a one-line ``UsageError`` of the form ``inventory FILE:LINE: problem``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import string
import types
from collections.abc import Iterator
from collections.abc import Mapping
from pathlib import Path

from runbook.outcomes import UsageError

SSH_CONNECTIONS = frozenset({"ssh", "paramiko", "smart"})

_PORT_VARS = ("ansible_port", "ansible_ssh_port")
_USER_VARS = ("ansible_user", "ansible_ssh_user")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_RANGE = re.compile(r"\[([^\]]*)\]")
# Characters that have no business in a host name, address or user handed to a backend.
_UNSAFE = re.compile(r"[\s;&|`$<>()'\"\\]")


@dataclasses.dataclass(frozen=True, slots=True)
class InventoryHost:
    """A host of an inventory, with its group and host variables merged."""

    name: str
    address: str
    port: int | None
    user: str | None
    vars: Mapping[str, str] = dataclasses.field(hash=False)

    @property
    def spec(self) -> str:
        """Return the target spec: ``local``, or ``ssh://[user@]address[:port]``.

        An ``ansible_connection`` other than local or SSH becomes the scheme
        (``docker://...``), for a plugin transport to answer.
        """
        connection = self.vars.get("ansible_connection", "ssh")
        if connection == "local":
            return "local"
        scheme = "ssh" if connection in SSH_CONNECTIONS else connection
        user = f"{self.user}@" if self.user else ""
        host = f"[{self.address}]" if ":" in self.address else self.address
        port = "" if self.port is None else f":{self.port}"
        return f"{scheme}://{user}{host}{port}"


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class Inventory:
    """Hosts (in file order) and groups (names of their hosts) of one inventory file."""

    path: Path
    hosts: dict[str, InventoryHost]
    groups: dict[str, tuple[str, ...]]

    def resolve(self, name: str) -> tuple[InventoryHost, ...] | None:
        """Return the hosts of the group or host ``name``, or None if it is neither.

        A group wins over a host of the same name, as in Ansible.
        """
        if name in self.groups:
            return tuple(self.hosts[host] for host in self.groups[name])
        if name in self.hosts:
            return (self.hosts[name],)
        return None

    def names(self) -> list[str]:
        """Return every host and group name (for "did you mean" hints)."""
        return list(dict.fromkeys([*self.hosts, *self.groups]))


class Invalid(ValueError):
    """A problem found by a helper that does not know the line; the caller adds it."""


@dataclasses.dataclass(slots=True)
class _Group:
    declared: bool = False
    hosts: list[str] = dataclasses.field(default_factory=list)
    children: list[tuple[str, int]] = dataclasses.field(default_factory=list)
    vars: dict[str, tuple[str, int]] = dataclasses.field(default_factory=dict)
    vars_line: int = 0


class Builder:
    """Collect hosts, groups and variables, then check and merge them into an Inventory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.groups: dict[str, _Group] = {
            "all": _Group(declared=True),
            "ungrouped": _Group(declared=True),
        }
        self.hosts: dict[str, dict[str, tuple[str, int]]] = {}

    def error(self, line: int | None, problem: str) -> UsageError:
        where = f"{self.path}:{line}" if line else str(self.path)
        return UsageError(f"inventory {where}: {problem}")

    def group(self, name: str, line: int, *, declare: bool = True) -> _Group:
        if _UNSAFE.search(name) or not name:
            raise self.error(line, f"bad group name {name!r}")
        group = self.groups.setdefault(name, _Group())
        group.declared = group.declared or declare
        return group

    def add_hosts(self, group: str, pattern: str, line: int) -> list[str]:
        """Add the hosts of ``pattern`` (ranges, ``:port``) to ``group``; return their names."""
        try:
            names, port = _expand_pattern(pattern)
        except Invalid as exc:
            raise self.error(line, str(exc)) from None
        for name in names:
            host_vars = self.hosts.setdefault(name, {})
            if port is not None:
                host_vars["ansible_port"] = (str(port), line)
            if name not in self.groups[group].hosts:
                self.groups[group].hosts.append(name)
        return names

    def set_var(self, target: dict[str, tuple[str, int]], key: str, value: str, line: int) -> None:
        if not key or _UNSAFE.search(key):
            raise self.error(line, f"bad variable name {key!r}")
        try:
            if key in _PORT_VARS:
                _port(value)
            elif key == "ansible_group_priority" and not value.lstrip("-").isdigit():
                raise Invalid(f"bad ansible_group_priority {value!r} (expected an integer)")
            elif key in ("ansible_host", *_USER_VARS) and (not value or _UNSAFE.search(value)):
                raise Invalid(f"bad {key} {value!r}")
            elif key == "ansible_connection" and not _SCHEME.fullmatch(value):
                raise Invalid(f"bad ansible_connection {value!r}")
        except Invalid as exc:
            raise self.error(line, str(exc)) from None
        target[key] = (value, line)

    def add_child(self, parent: str, child: str, line: int) -> None:
        if child == "all":
            raise self.error(line, f"group 'all' cannot be a child of {parent!r}")
        self.group(child, line, declare=False)
        if child not in (name for name, _ in self.groups[parent].children):
            self.groups[parent].children.append((child, line))

    def build(self) -> Inventory:
        self._check_groups()
        grouped = {
            h for n, g in self.groups.items() if n not in ("all", "ungrouped") for h in g.hosts
        }
        self.groups["all"].hosts = list(self.hosts)
        self.groups["ungrouped"].hosts = [h for h in self.hosts if h not in grouped]
        members: dict[str, dict[str, None]] = {}
        for name in self.groups:
            self._members(name, members)
        # Ansible's precedence: all, then parents before children, then priority and name.
        depths = self._depths()
        order = sorted(self.groups, key=lambda n: (depths[n], self._priority(n), n))
        hosts: dict[str, InventoryHost] = {}
        for name, own_vars in self.hosts.items():
            merged: dict[str, tuple[str, int]] = {}
            for group in order:
                if name in members[group]:
                    merged.update(self.groups[group].vars)
            hosts[name] = self._host(name, {**merged, **own_vars})
        return Inventory(self.path, hosts, {name: tuple(members[name]) for name in self.groups})

    def _check_groups(self) -> None:
        for name, group in self.groups.items():
            for child, line in group.children:
                if not self.groups[child].declared:
                    raise self.error(line, f"unknown child group {child!r} of {name!r}")
        for name, group in self.groups.items():
            if not group.declared:
                raise self.error(group.vars_line, f"vars for unknown group {name!r}")
        done: set[str] = set()

        def visit(name: str, path: list[str]) -> None:
            for child, line in self.groups[name].children:
                if child in path:
                    cycle = " -> ".join([*path[path.index(child) :], child])
                    raise self.error(line, f"cyclic children: {cycle}")
                if child not in done:
                    visit(child, [*path, child])
            done.add(name)

        for name in self.groups:
            if name not in done:
                visit(name, [name])

    def _members(self, name: str, members: dict[str, dict[str, None]]) -> dict[str, None]:
        if name not in members:
            found = dict.fromkeys(self.groups[name].hosts)
            for child, _ in self.groups[name].children:
                found.update(self._members(child, members))
            members[name] = found
        return members[name]

    def _depths(self) -> dict[str, int]:
        """Return each group's distance from ``all`` (groups without parents are 1)."""
        parents: dict[str, list[str]] = {name: [] for name in self.groups}
        for name, group in self.groups.items():
            for child, _ in group.children:
                parents[child].append(name)
        depths = {"all": 0}

        def depth(name: str) -> int:  # terminates: _check_groups refused cycles
            if name not in depths:
                depths[name] = 1 + max((depth(p) for p in parents[name]), default=0)
            return depths[name]

        for name in self.groups:
            depth(name)
        return depths

    def _priority(self, name: str) -> int:
        return int(self.groups[name].vars.get("ansible_group_priority", ("1", 0))[0])

    def _host(self, name: str, merged: dict[str, tuple[str, int]]) -> InventoryHost:
        values = {key: value for key, (value, _) in merged.items()}
        port = next((values[k] for k in _PORT_VARS if k in values), None)
        user = next((values[k] for k in _USER_VARS if k in values), None)
        return InventoryHost(
            name=name,
            address=values.get("ansible_host", name),
            port=None if port is None else int(port),
            user=user,
            vars=types.MappingProxyType(values),
        )


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise Invalid(f"bad port {text!r} (expected 1-65535)")
    return int(text)


def _expand_pattern(pattern: str) -> tuple[list[str], int | None]:
    """Split ``host[:port]`` (``[ipv6]:port``) and expand ``[01:20]``, ``[a:c]`` ranges."""
    if pattern.startswith("[") and "]" in pattern and is_ipv6(pattern[1 : pattern.index("]")]):
        address, rest = pattern[1:].split("]", 1)
        if rest and not rest.startswith(":"):
            raise Invalid(f"bad host pattern {pattern!r}")
        return [address], _port(rest[1:]) if rest else None
    outside = _RANGE.sub("", pattern)
    if "[" in outside or "]" in outside:
        raise Invalid(f"bad host pattern {pattern!r} (unbalanced brackets)")
    if outside.count(":") > 1:
        if not is_ipv6(pattern):
            raise Invalid(f"bad host pattern {pattern!r}")
        return [pattern], None
    port = None
    if ":" in outside:
        pattern, _, port_text = pattern.rpartition(":")
        port = _port(port_text)
    names = list(_expand_ranges(pattern))
    for name in names:
        if not name or _UNSAFE.search(name) or "[" in name or "]" in name:
            raise Invalid(f"bad host name {name!r}")
    return names, port


def _expand_ranges(pattern: str) -> Iterator[str]:
    match = _RANGE.search(pattern)
    if match is None:
        yield pattern
        return
    head, tail = pattern[: match.start()], pattern[match.end() :]
    for item in _range(match[1]):
        for rest in _expand_ranges(tail):
            yield f"{head}{item}{rest}"


def _range(spec: str) -> list[str]:
    bounds = spec.split(":")
    if len(bounds) not in (2, 3):
        raise Invalid(f"bad range [{spec}] (expected [start:end] or [start:end:step])")
    start, end = bounds[0] or "0", bounds[1]
    step = bounds[2] if len(bounds) == 3 else "1"
    if not step.isdigit() or int(step) == 0:
        raise Invalid(f"bad range [{spec}]: step must be a positive integer")
    letters = string.ascii_letters
    if len(start) == 1 and len(end) == 1 and start in letters and end in letters:
        first, last = letters.index(start), letters.index(end)
        if first > last:
            raise Invalid(f"bad range [{spec}]: start is after end")
        return list(letters[first : last + 1 : int(step)])
    if not (start.isdigit() and end.isdigit()):
        raise Invalid(f"bad range [{spec}]: expected numbers or single letters")
    if int(start) > int(end):
        raise Invalid(f"bad range [{spec}]: start is after end")
    width = len(start) if start.startswith("0") and len(start) > 1 else 0
    if width and len(end) != width:
        raise Invalid(f"bad range [{spec}]: zero-padded start and end differ in length")
    return [str(i).zfill(width) for i in range(int(start), int(end) + 1, int(step))]


def is_ipv6(text: str) -> bool:
    """True for an IPv6 address (which may stand in brackets where a host name goes)."""
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True
