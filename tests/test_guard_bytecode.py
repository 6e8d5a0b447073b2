"""An ``import`` inside a check may cache its bytecode; nothing else gets through that way."""

from __future__ import annotations

import json

LAZY = '''
"""Lazy."""
import sys
from pathlib import Path

from runbook import check

sys.path.insert(0, str(Path(__file__).parent.parent / "lib"))


@check
def imports_lazily(host):
    import helper_module

    assert helper_module.VALUE == 3


@check
def writes_through_the_loader(host):
    from importlib.machinery import SourceFileLoader

    loader = SourceFileLoader("x", str(Path(__file__)))
    target = Path(__file__).parent.parent / "lib" / "__pycache__" / "planted.pyc"
    loader.set_data(str(target), b"not bytecode")


@check
def writes_outside_a_cache_folder(host):
    from importlib.machinery import SourceFileLoader

    loader = SourceFileLoader("x", str(Path(__file__)))
    loader.set_data(str(Path(__file__).parent.parent / "planted.txt"), b"x")
'''


def test_a_lazy_import_caches_bytecode_and_nothing_else_is_written(project):
    project.write("lib/helper_module.py", "VALUE = 3\n")
    project.runbook("lazy", LAZY)
    env = {"PYTHONDONTWRITEBYTECODE": ""}  # empty: Python writes bytecode caches
    done = project.run("run", "lazy", "--json", "-", "--report", "r.md", env=env)
    outcomes = {c["id"]: c["outcome"] for c in json.loads(done.stdout)["checks"]}
    assert outcomes == {
        "imports_lazily": "passed",
        "writes_through_the_loader": "blocked",
        "writes_outside_a_cache_folder": "blocked",
    }, done.stderr
    cache = project.root / "lib" / "__pycache__"
    assert [p.name for p in cache.iterdir()] == [next(cache.glob("helper_module.*.pyc")).name]
    assert not (project.root / "planted.txt").exists()
