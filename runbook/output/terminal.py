"""The terminal reporter: a line per check as it finishes, then a summary of hypotheses."""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
import threading
from typing import TYPE_CHECKING
from typing import Any
from typing import TextIO

import click
from tabulate import tabulate

from runbook.markers import hookimpl
from runbook.output.templating import ACTION_WORDS
from runbook.output.templating import STATUS_WORDS

if TYPE_CHECKING:
    from runbook.config import Config
    from runbook.records import RunStart
    from runbook.results import ActionResult
    from runbook.results import CheckResult
    from runbook.results import HostResult
    from runbook.results import RunResult

OUTCOME_COLOURS = {
    "passed": "green",
    "failed": "red",
    "error": "red",
    "timeout": "yellow",
    "blocked": "magenta",
    "skipped": "cyan",
}
STATUS_COLOURS = {
    "ruled_in": "red",
    "ruled_out": "green",
    "inconclusive": "yellow",
    "untested": "cyan",
}


def use_colour(stream: TextIO) -> bool:
    """Colour only a real terminal, and never when ``NO_COLOR`` is set."""
    if os.environ.get("NO_COLOR"):
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


class TerminalReporter:
    """Print live progress and the closing summary."""

    def __init__(self, verbosity: int = 0, stream: TextIO | None = None) -> None:
        self.verbosity = verbosity
        self.stream = stream or sys.stdout
        self.colour = use_colour(self.stream)
        self._total = 0
        self._done = 0
        self._hosts_total = 0
        self._hosts_done = 0
        self._lock = threading.Lock()  # targets run in parallel: one line at a time

    def write(self, text: str = "", **style: Any) -> None:
        """Write one line (or several, together), styled when colour is on."""
        if style and self.colour:
            text = click.style(text, **style)
        with self._lock:
            self.stream.write(text + "\n")
            self.stream.flush()

    @hookimpl
    def runbook_run_started(self, run: RunStart) -> None:
        """Announce what is about to run."""
        hosts = run.hosts
        self._total = len(run.checks) * len(hosts)
        self._done = 0
        self._hosts_total, self._hosts_done = len(hosts), 0
        if self.verbosity < 0:
            return
        shown = ", ".join(hosts) if len(hosts) <= 5 else f"{len(hosts)} hosts"
        noun = "check" if len(run.checks) == 1 else "checks"
        self.write(f"runbook {run.runbook.name}: {run.runbook.title}", bold=True)
        mode = f"replay of {run.info.replay}" if run.info.replay else run.mode
        self.write(f"{mode} · {len(run.checks)} {noun} on {shown} · operator {run.info.operator}")

    @hookimpl
    def runbook_check_finished(self, result: CheckResult) -> None:
        """Print one line per check: progress, outcome, name, hypotheses, message."""
        with self._lock:
            self._done += 1
            done = self._done
        if self.verbosity < 0:
            return
        outcome = result.outcome.upper().ljust(7)
        if self.colour:
            outcome = click.style(outcome, fg=OUTCOME_COLOURS[result.outcome], bold=True)
        tests = ", ".join(result.tests) or "symptom"
        width = len(str(self._total))
        line = (
            f"[{done:>{width}}/{self._total}] {outcome} {result.check} [{tests}]"
            f" {result.host} {result.duration_s:.2f}s"
        )
        if result.message and (result.outcome != "passed" or not result.tests or self.verbosity):
            line += f"\n      {result.message}"
        if result.traceback and self.verbosity > 0:
            line += "\n" + "\n".join("      " + row for row in result.traceback.splitlines())
        self.write(line)

    @hookimpl
    def runbook_host_finished(self, result: HostResult) -> None:
        """Say when a target could not be used, and how many targets are done."""
        with self._lock:
            self._hosts_done += 1
            done = self._hosts_done
        if result.status != "ok":
            status = result.status.replace("_", " ").upper()
            self.write(f"  host {result.name}: {status}: {result.error}", fg="red", bold=True)
        if self._hosts_total > 1 and self.verbosity >= 0:
            self.write(f"  hosts done: {done}/{self._hosts_total} ({result.name} {result.status})")

    @hookimpl
    def runbook_action_finished(self, result: ActionResult) -> None:
        """Print one line per action with its status and the reason."""
        if self.verbosity < 0 and result.status not in ("executed", "failed", "declined"):
            return  # -q keeps what changed, failed or was refused by the operator
        status = ACTION_WORDS[result.status].upper()
        self.write(f"  action {result.action} on {result.host}: {status}: {result.message}")

    @hookimpl(trylast=True)
    def runbook_run_finished(self, result: RunResult) -> None:
        """Print the hypotheses table, where the report went and the verdict line."""
        if result.interrupted:
            self.write("interrupted: writing a partial report", fg="yellow", bold=True)
        if result.hypotheses:
            self.write()
            self.write(self._hypotheses_table(result))
        for warning in result.warnings:  # -q too: a lost status update must not go unseen
            self.write(f"warning: {warning}", fg="yellow")
        self.write()
        if result.report and result.report != "-":
            self.write(f"report: {result.report}")
        if result.json and result.json != "-":
            self.write(f"json:   {result.json}")
        self.write(self._verdict_line(result), bold=True)

    def _hypotheses_table(self, result: RunResult) -> str:
        """The hypotheses, their status and evidence, cut to fit the terminal's width."""
        id_width = max(len("hypothesis"), *(len(h.id) for h in result.hypotheses))
        room = max(shutil.get_terminal_size().columns - id_width - len("inconclusive") - 4, 30)
        rows = [
            [
                h.id,
                self._status(h.status),
                textwrap.shorten("; ".join(h.evidence), room, placeholder="...")
                if h.evidence
                else "",
            ]
            for h in result.hypotheses
        ]
        return str(tabulate(rows, headers=["hypothesis", "status", "evidence"]))

    def _status(self, status: str) -> str:
        word = STATUS_WORDS[status]
        return click.style(word, fg=STATUS_COLOURS[status]) if self.colour else word

    def _verdict_line(self, result: RunResult) -> str:
        counts: dict[str, int] = {}
        for item in result.hypotheses:
            counts[item.status] = counts.get(item.status, 0) + 1
        outcomes: dict[str, int] = {}
        for check in result.checks:
            outcomes[check.outcome] = outcomes.get(check.outcome, 0) + 1
        hypotheses = ", ".join(f"{n} {STATUS_WORDS[s]}" for s, n in counts.items()) or "none"
        checks = ", ".join(f"{n} {o}" for o, n in outcomes.items()) or "none"
        seconds = result.finished_at - result.started_at
        return (
            f"hypotheses: {hypotheses} · checks: {checks} · "
            f"exit {result.exit_code} in {seconds:.2f}s"
        )


@hookimpl
def runbook_configure(config: Config) -> None:
    """Register the terminal reporter with the verbosity and stream from the command line.

    The stream is standard output, standard error when standard output carries the
    report or JSON (``-``), or the ``stream`` option (the pytest plugin captures it).
    """
    stream = config.options.get("stream") or (
        sys.stderr if config.options.get("stdout_is_data") else sys.stdout
    )
    reporter = TerminalReporter(config.options.get("verbosity", 0), stream)
    config.pluginmanager.register(reporter, "terminalreporter")
