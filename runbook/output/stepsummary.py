"""GitHub Actions job summaries: append Markdown to ``$GITHUB_STEP_SUMMARY`` when set.

The Markdown report plugin and the dry-run plan call this with what they have
already rendered, so a CI job shows each report (or plan) on its summary page.
"""

from __future__ import annotations

import os
import sys

#: The variable GitHub Actions sets to the file of the step's job summary.
VARIABLE = "GITHUB_STEP_SUMMARY"


def append_step_summary(markdown: str) -> bool:
    """Append ``markdown`` to the job summary file, if there is one; return True if so."""
    path = os.environ.get(VARIABLE)
    if not path:
        return False
    try:
        with open(path, "a", encoding="utf-8") as stream:
            stream.write(markdown if markdown.endswith("\n") else markdown + "\n")
            stream.write("\n")
    except OSError as exc:  # a CI quirk must not cost the report that was already written
        sys.stderr.write(f"runbook: warning: cannot append to ${VARIABLE} ({path}): {exc}\n")
        return False
    return True
