"""Write the machine-readable JSON result (schema ``runbook.result/1``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from runbook.files import write_private
from runbook.markers import hookimpl

if TYPE_CHECKING:
    from runbook.results import RunResult


def dumps(result: RunResult) -> str:
    """Return the JSON result as text."""
    return json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n"


@hookimpl
def runbook_run_finished(result: RunResult) -> None:
    """Write the JSON result where the run says (``-`` for standard output)."""
    if result.json is None:
        return
    if result.json == "-":
        sys.stdout.write(dumps(result))
        sys.stdout.flush()
    else:
        write_private(Path(result.json), dumps(result))
