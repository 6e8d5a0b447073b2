"""Ansible-style inventories: hosts and groups read from an INI or YAML file.

Reading a file gives an ``Inventory`` whose hosts know the target spec that is
handed to ``runbook_make_host``. Every problem with the file is a one-line
``UsageError`` of the form ``inventory FILE:LINE: problem``.
"""

from __future__ import annotations

import re
from pathlib import Path

from runbook.hosts.inventory.ini import parse_ini
from runbook.hosts.inventory.model import Builder
from runbook.hosts.inventory.model import Inventory


def load_inventory(path: Path) -> Inventory:
    """Read an INI or YAML (suffix ``.yml``/``.yaml``, or ``all:``-style content) inventory."""
    builder = Builder(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise builder.error(None, "no such file") from None
    except OSError as exc:
        raise builder.error(None, f"cannot read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise builder.error(data[: exc.start].count(b"\n") + 1, "not UTF-8 text") from None
    if path.suffix.lower() in (".yml", ".yaml") or _looks_like_yaml(text):
        from runbook.hosts.inventory.yaml import parse_yaml  # YAML only when the file is YAML

        parse_yaml(text, builder)
    else:
        parse_ini(text, builder)
    return builder.build()


def _looks_like_yaml(text: str) -> bool:
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith(("#", ";")):
            return stripped == "---" or re.fullmatch(r"[\w.-]+:(\s.*)?", stripped) is not None
    return False
