"""The import contract: layers import downward only, and no module imports its way back.

Every import counts: top-level, inside functions (lazy) and under ``TYPE_CHECKING``.
``docs/architecture.md`` explains the layers; this table is their definition.
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Lowest first. A module may import modules of its own layer or of lower ones.
#: Patterns name a module or, ending in ``.*``, every module of a package.
LAYERS: list[tuple[str, list[str]]] = [
    (
        "leaves",
        [
            "runbook.outcomes",
            "runbook.markers",
            "runbook.steps",
            "runbook.evidence",
            "runbook.files",
            "runbook.importing",
            "runbook.keywords",
            "runbook.timestamps",
            "runbook.optionparser",
        ],
    ),
    (
        "records",
        [
            "runbook.api",
            "runbook.model",
            "runbook.fixtures",
            "runbook.params",
            "runbook.results",
            "runbook.records",
            "runbook.hosts.backend",
            "runbook.verdicts",
            "runbook.severity",
        ],
    ),
    ("configuration", ["runbook.config"]),
    ("hook specifications", ["runbook.hookspecs", "runbook.pluginmanager"]),
    (
        "targets and safety",
        ["runbook.hosts.*", "runbook.ssh.*", "runbook.safety.*", "runbook.collect"],
    ),
    ("engine", ["runbook.engine.*"]),
    ("results and tools", ["runbook.output.*", "runbook.incident.*", "runbook.authoring.*"]),
    ("session", ["runbook.session"]),
    ("front ends", ["runbook.cli.*", "runbook.testing", "runbook.__main__", "runbook"]),
]

#: Shipped in the same distribution, but plugins: the core never imports them.
PLUGIN_PACKAGES = ("runbook.plugins", "runbook.library")


def module_name(path: Path, package_root: Path) -> str:
    parts = list(path.relative_to(package_root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(tree: ast.AST, known: Iterable[str], package: str) -> set[str]:
    """Every module of ``known`` that ``tree`` imports, wherever the import statement is."""
    known = set(known)

    def resolve(name: str) -> str | None:
        if name.startswith(PLUGIN_PACKAGES):
            return name
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if not node.module.startswith(package):
                continue
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                target = submodule if submodule in known else resolve(node.module)
                if target:
                    found.add(target)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(package):
                    target = resolve(alias.name)
                    if target:
                        found.add(target)
    return found


def import_graph(package_root: Path) -> dict[str, set[str]]:
    """Module name -> the package's modules it imports (the package itself left out)."""
    package = package_root.name
    paths = {module_name(p, package_root): p for p in package_root.rglob("*.py")}
    graph = {}
    for name, path in paths.items():
        found = imports_of(ast.parse(path.read_text(encoding="utf-8")), paths, package)
        graph[name] = found - {name, package}
    return graph


def layer_of(module: str, layers: list[tuple[str, list[str]]]) -> int:
    for index, (_, patterns) in enumerate(layers):
        for pattern in patterns:
            if pattern.endswith(".*"):
                if module.startswith(pattern[:-1]) or module == pattern[:-2]:
                    return index
            elif module == pattern:
                return index
    raise LookupError(f"{module} is in no layer: add it to LAYERS in tests/test_architecture.py")


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles of ``graph``: its strongly connected components of 2+ modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for neighbour in graph.get(node, ()):
            if neighbour not in graph:
                continue
            if neighbour not in index:
                visit(neighbour)
                low[node] = min(low[node], low[neighbour])
            elif neighbour in on_stack:
                low[node] = min(low[node], index[neighbour])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def violations(package_root: Path, layers: list[tuple[str, list[str]]]) -> list[str]:
    """Every breach of the contract in ``package_root``, one line each."""
    graph = import_graph(package_root)
    problems = [f"import circle: {' -> '.join(c)}" for c in cycles(graph)]
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            if target.startswith(PLUGIN_PACKAGES):
                problems.append(f"{module} imports the plugin {target}")
                continue
            low, high = layer_of(module, layers), layer_of(target, layers)
            if high > low:
                problems.append(
                    f"{module} ({layers[low][0]}) imports {target} ({layers[high][0]}) upward"
                )
    return problems


def test_the_package_keeps_its_import_contract():
    assert violations(ROOT / "runbook", LAYERS) == []


def test_every_module_is_in_a_layer():
    for module in import_graph(ROOT / "runbook"):
        layer_of(module, LAYERS)


@pytest.fixture
def synthetic(tmp_path):
    """A small package shaped like runbook: a leaf, an engine, a front end."""

    def write(files: dict[str, str]) -> Path:
        for name, text in files.items():
            path = tmp_path / "runbook" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text))
        return tmp_path / "runbook"

    return write


SYNTHETIC_LAYERS = [
    ("leaves", ["runbook.outcomes"]),
    ("engine", ["runbook.engine.*"]),
    ("front ends", ["runbook.cli", "runbook"]),
]
CLEAN = {
    "__init__.py": "",
    "outcomes.py": "class Skipped(Exception): ...\n",
    "engine/__init__.py": "",
    "engine/runner.py": "from runbook.outcomes import Skipped\n",
    "cli.py": "from runbook.engine import runner\n",
}


def test_a_clean_synthetic_tree_passes(synthetic):
    assert violations(synthetic(CLEAN), SYNTHETIC_LAYERS) == []


def test_a_lazy_upward_import_is_caught(synthetic):
    root = synthetic(
        {
            **CLEAN,
            "outcomes.py": """
                def explain():
                    from runbook.engine.runner import Skipped  # lazy, still upward
            """,
        }
    )
    assert violations(root, SYNTHETIC_LAYERS) == [
        "import circle: runbook.engine.runner -> runbook.outcomes",
        "runbook.outcomes (leaves) imports runbook.engine.runner (engine) upward",
    ]


def test_a_type_only_cycle_within_a_layer_is_caught(synthetic):
    root = synthetic(
        {
            **CLEAN,
            "engine/hostrun.py": """
                from typing import TYPE_CHECKING
                if TYPE_CHECKING:
                    from runbook.engine.runner import Run
            """,
            "engine/runner.py": "from runbook.engine.hostrun import HostRun\n",
        }
    )
    assert violations(root, SYNTHETIC_LAYERS) == [
        "import circle: runbook.engine.hostrun -> runbook.engine.runner"
    ]


def test_the_core_importing_a_plugin_is_caught(synthetic):
    root = synthetic({**CLEAN, "engine/runner.py": "from runbook.plugins import system\n"})
    assert violations(root, SYNTHETIC_LAYERS) == [
        "runbook.engine.runner imports the plugin runbook.plugins"
    ]
