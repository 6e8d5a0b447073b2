"""Ansible-style INI inventories: ``[group]``, ``[group:children]`` and ``[group:vars]``."""

from __future__ import annotations

import re
import shlex

from runbook.hosts.inventory.model import Builder
from runbook.hosts.inventory.model import is_ipv6

_SECTION = re.compile(r"\[(?P<name>[^:\]\s]+)(?::(?P<kind>[^\]\s]*))?\]\s*(?:[#;].*)?")
_SECTION_KINDS = ("hosts", "children", "vars")


def parse_ini(text: str, builder: Builder) -> None:
    """Read an INI inventory into ``builder``."""
    group, kind = "ungrouped", "hosts"
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        section = _SECTION.fullmatch(line)
        if section and not is_ipv6(line[1:].partition("]")[0]):  # '[::1]' is a host
            group, kind = section["name"], section["kind"]
            kind = "hosts" if kind is None else kind
            if kind not in _SECTION_KINDS:
                raise builder.error(number, f"unknown section kind {kind!r} in [{group}:{kind}]")
            builder.group(group, number, declare=kind != "vars")
            if kind == "vars":
                builder.groups[group].vars_line = builder.groups[group].vars_line or number
        elif _is_header_like(line):
            raise builder.error(number, f"malformed section header {line!r}")
        elif kind == "vars":
            key, equals, value = line.partition("=")
            if not equals:
                raise builder.error(number, f"malformed key=value {line!r}")
            builder.set_var(
                builder.groups[group].vars, key.strip(), _unquote(value.strip()), number
            )
        else:
            tokens = _tokens(line, number, builder)
            if not tokens:
                continue
            if kind == "children":
                if len(tokens) != 1:
                    raise builder.error(number, f"expected one group name, got {line!r}")
                builder.add_child(group, tokens[0], number)
                continue
            for name in builder.add_hosts(group, tokens[0], number):
                for token in tokens[1:]:
                    key, equals, value = token.partition("=")
                    if not equals or not key:
                        raise builder.error(number, f"malformed key=value {token!r}")
                    builder.set_var(builder.hosts[name], key, value, number)


def _is_header_like(line: str) -> bool:
    """Tell a broken ``[section]`` from a host line such as ``[::1]`` or ``[::1]:2222``."""
    text = line.split("#")[0].rstrip()
    return text.startswith("[") and text.endswith("]") and not is_ipv6(text[1:-1])


def _tokens(line: str, number: int, builder: Builder) -> list[str]:
    try:
        tokens = shlex.split(line)
    except ValueError as exc:
        raise builder.error(number, f"cannot split {line!r}: {exc}") from None
    # A '#' starts a comment only at the start of a word: 'url=http://h/#top' keeps its '#'.
    comment = next((i for i, token in enumerate(tokens) if token.startswith("#")), len(tokens))
    return tokens[:comment]


def _unquote(value: str) -> str:
    if value[:1] in ("'", '"'):
        try:
            parts = shlex.split(value)
        except ValueError:
            return value
        if len(parts) == 1:
            return parts[0]
    return value
