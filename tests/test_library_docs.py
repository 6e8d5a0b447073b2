"""Every built-in runbook has a reference page in docs/library/, generated from the runbook.

The pages are what ``runbook show NAME --markdown`` prints. After changing a built-in
runbook, regenerate them with ``RUNBOOK_REGENERATE_DOCS=1 python3 -m pytest
tests/test_library_docs.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runbook.authoring.runbookdoc import markdown_page
from runbook.collect import collect
from runbook.collect import library_dir
from runbook.pluginmanager import load_config

LIBRARY = Path(__file__).resolve().parent.parent / "docs" / "library"
REGENERATE = os.environ.get("RUNBOOK_REGENERATE_DOCS") == "1"


def builtin_runbooks():
    # From this checkout, ./runbooks is the library itself: select by folder, not source.
    collection = collect(load_config(start=LIBRARY))
    folder = library_dir().resolve()
    return sorted(
        (rb for rb in collection.runbooks.values() if rb.path.resolve().parent == folder),
        key=lambda rb: rb.name,
    )


def index_page(runbooks) -> str:
    rows = "".join(f"| [{rb.name}]({rb.name}.md) | {rb.title} |\n" for rb in runbooks)
    return (
        "# The built-in runbook library\n\n"
        "Each page is generated from the runbook itself (`runbook show NAME --markdown`).\n\n"
        "| runbook | title |\n|---|---|\n" + rows
    )


def check_or_write(path: Path, text: str) -> None:
    if REGENERATE:
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} is missing: regenerate the library pages"
    assert path.read_text(encoding="utf-8") == text, f"{path} is stale: regenerate it"


@pytest.mark.parametrize("runbook", builtin_runbooks(), ids=lambda rb: rb.name)
def test_each_builtin_runbook_has_an_up_to_date_page(runbook):
    check_or_write(LIBRARY / f"{runbook.name}.md", markdown_page(runbook))


def test_the_library_index_lists_every_page():
    runbooks = builtin_runbooks()
    assert len(runbooks) >= 7
    check_or_write(LIBRARY / "index.md", index_page(runbooks))


def test_show_markdown_prints_the_page(project):
    result = project.invoke("show", "high-cpu", "--markdown")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("# high-cpu: High CPU usage\n")
    assert "## Hypotheses" in result.output and "`runaway-process`" in result.output
