"""The YAML form of Ansible inventories, read into the same model as the INI form.

Composed YAML nodes (not Python objects) are walked, so that every problem is
reported with its line. PyYAML is imported only when a YAML inventory is read.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import yaml

    from runbook.hosts.inventory.model import Builder


def parse_yaml(text: str, builder: Builder) -> None:
    import yaml  # only YAML inventories pay for the import

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "syntax error"
        raise builder.error(mark.line + 1 if mark else None, f"invalid YAML: {problem}") from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow
        line = text[: exc.position].count("\n") + 1
        raise builder.error(line, f"invalid YAML: {exc.reason}") from None
    except yaml.YAMLError as exc:
        raise builder.error(None, f"invalid YAML: {str(exc).splitlines()[0]}") from None
    if root is not None:
        _YamlReader(builder).groups(root, None)


class _YamlReader:
    """Walk composed YAML nodes (not Python objects) so every problem has a line number."""

    def __init__(self, builder: Builder) -> None:
        import yaml

        self.builder = builder
        self.scalar = yaml.ScalarNode
        self.mapping_node = yaml.MappingNode
        self.loader = yaml.SafeLoader("")
        self.walking: set[int] = set()

    def groups(self, node: yaml.Node, parent: str | None) -> None:
        what = "the top level" if parent is None else f"children of {parent!r}"
        for name, line, value in self.mapping(node, what):
            if parent is not None:
                self.builder.add_child(parent, name, line)
            self.group(name, line, value)

    def group(self, name: str, line: int, node: yaml.Node) -> None:
        self.builder.group(name, line)
        if id(node) in self.walking:
            raise self.builder.error(line, f"group {name!r} contains itself")
        self.walking.add(id(node))
        for key, key_line, value in self.mapping(node, f"group {name!r}"):
            if key == "hosts":
                for pattern, host_line, host_vars in self.mapping(value, f"hosts of {name!r}"):
                    for host in self.builder.add_hosts(name, pattern, host_line):
                        self.variables(host_vars, self.builder.hosts[host], f"host {host!r}")
            elif key == "vars":
                self.variables(value, self.builder.groups[name].vars, f"vars of {name!r}")
            elif key == "children":
                self.groups(value, name)
            else:
                expected = "expected hosts, vars or children"
                raise self.builder.error(key_line, f"unknown key {key!r} in {name!r} ({expected})")
        self.walking.discard(id(node))

    def variables(self, node: yaml.Node, target: dict[str, tuple[str, int]], what: str) -> None:
        for key, line, value in self.mapping(node, what):
            self.builder.set_var(target, key, self.text(value), line)

    def mapping(self, node: yaml.Node, what: str) -> Iterator[tuple[str, int, yaml.Node]]:
        """Yield (key, key line, value node) of a mapping; null counts as an empty mapping."""
        if isinstance(node, self.scalar) and node.tag == _NULL:
            return
        if not isinstance(node, self.mapping_node):
            raise self.builder.error(_line(node), f"{what} must be a mapping")
        self.loader.flatten_mapping(node)  # apply '<<' merge keys
        for key, value in node.value:
            if not isinstance(key, self.scalar) or key.tag == _NULL or not key.value:
                raise self.builder.error(_line(key), f"bad name in {what}")
            yield str(key.value), _line(key), value

    def text(self, node: yaml.Node) -> str:
        if isinstance(node, self.scalar):
            return "" if node.tag == _NULL else str(node.value)
        # Lists and mappings stay usable by runbooks as JSON text.
        return json.dumps(self.loader.construct_object(node, deep=True), default=str)


_NULL = "tag:yaml.org,2002:null"


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1
