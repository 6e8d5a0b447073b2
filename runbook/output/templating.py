"""Templating shared by every text runbook writes: reports, plans, post-mortems, updates.

The vocabulary (status words) and the Markdown helpers live here too, so the
terminal, the report and the authoring tools say things the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from tabulate import tabulate

if TYPE_CHECKING:
    import jinja2

#: How a hypothesis status reads in text.
STATUS_WORDS = {
    "ruled_in": "ruled in",
    "ruled_out": "ruled out",
    "inconclusive": "inconclusive",
    "untested": "untested",
}
#: How an action status reads in text.
ACTION_WORDS = {
    "planned": "planned",
    "not_needed": "not needed",
    "executed": "executed",
    "failed": "failed",
    "declined": "declined",
}


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\r", "").replace("\n", "<br>")


def markdown_table(rows: list[list[Any]], headers: list[str]) -> str:
    """Render rows as a GitHub-flavoured Markdown table with cells escaped."""
    cells = [[_cell(value) for value in row] for row in rows]
    return tabulate(cells, headers=headers, tablefmt="github", disable_numparse=True)


def fence(text: str) -> str:
    """Wrap text in a code fence longer than any backtick run inside it."""
    longest = run = 0
    for char in text:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    marks = "`" * max(3, longest + 1)
    return f"{marks}text\n{text}\n{marks}"


def load_template(custom: Path | None, default: str) -> jinja2.Template:
    """Return the template ``custom`` (a file), or the built-in one named ``default``.

    Every template renders Markdown or plain text (no HTML escaping), fails on an
    undefined name, and has the ``table`` and ``fence`` filters.
    """
    import jinja2  # imported here: keeps `runbook --help` fast

    if custom is not None:
        loader: jinja2.BaseLoader = jinja2.FileSystemLoader(str(custom.parent))
        name = custom.name
    else:
        loader = jinja2.PackageLoader("runbook", "templates")
        name = default
    environment = jinja2.Environment(
        loader=loader,
        autoescape=False,  # Markdown, not HTML
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    environment.filters["table"] = markdown_table
    environment.filters["fence"] = fence
    return environment.get_template(name)
