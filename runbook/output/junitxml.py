"""JUnit XML for CI (``run --junit-xml PATH``): one testcase per check and host.

A default plugin: with the option set, ``runbook_configure`` registers a
``JUnitXml`` writer that turns each finished run into a ``<testsuite>`` and
rewrites the file after every runbook, so one ``run`` of several runbooks gives
one file, and an interrupted run still leaves the suites it finished. Results
arrive already redacted.
"""

from __future__ import annotations

import re
import socket
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING

from runbook.files import check_writable
from runbook.files import write_private
from runbook.markers import hookimpl
from runbook.outcomes import UsageError
from runbook.timestamps import isotime

if TYPE_CHECKING:
    from runbook.config import Config
    from runbook.optionparser import OptionParser
    from runbook.results import CheckResult
    from runbook.results import RunResult

#: Check outcomes that JUnit calls errors (``failed`` is a failure, ``skipped`` skipped).
ERROR_OUTCOMES = ("error", "timeout", "blocked")

# Characters XML 1.0 cannot hold at all (command output may carry them).
_NOT_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


class JUnitXml:
    """Collect a ``<testsuite>`` per runbook run and write them under ``<testsuites>``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.suites: list[ET.Element] = []

    @hookimpl
    def runbook_run_finished(self, result: RunResult) -> None:
        """Add the run's suite and write the file again."""
        self.suites.append(testsuite(result))
        write_private(self.path, self.dumps())

    def dumps(self) -> str:
        """Return the XML document of every suite so far."""
        root = ET.Element("testsuites", name="runbook")
        for key in ("tests", "failures", "errors", "skipped"):
            root.set(key, str(sum(int(s.get(key, "0")) for s in self.suites)))
        root.set("time", f"{sum(float(s.get('time', '0')) for s in self.suites):.3f}")
        root.extend(self.suites)
        ET.indent(root)
        return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, "unicode") + "\n"


@hookimpl
def runbook_addoption(parser: OptionParser) -> None:
    """``runbook run --junit-xml PATH``."""
    parser.addoption(
        "--junit-xml",
        metavar="PATH",
        help="Also write JUnit XML: a testcase per check and host (for CI).",
    )


@hookimpl
def runbook_configure(config: Config) -> None:
    """Register the writer when ``--junit-xml PATH`` was given."""
    path = config.options.get("junit_xml")
    if path and config.options.get("dry_run"):
        raise UsageError("--junit-xml holds check results, and a --dry-run runs no check")
    if path:
        config.pluginmanager.register(
            JUnitXml(check_writable(Path(path), "--junit-xml")), "junitxml-writer"
        )


def testsuite(result: RunResult) -> ET.Element:
    """Return the ``<testsuite>`` of one run: its checks, and its unreachable hosts."""
    name = str(result.runbook.get("name", "runbook"))
    suite = ET.Element(
        "testsuite",
        name=name,
        timestamp=isotime(result.started_at).removesuffix("Z"),  # JUnit's has no zone
        hostname=socket.gethostname(),
        time=f"{result.finished_at - result.started_at:.3f}",
    )
    properties = ET.SubElement(suite, "properties")
    for key, value in (("mode", result.mode), ("exit_code", str(result.exit_code))):
        ET.SubElement(properties, "property", name=key, value=value)
    for hypothesis in result.hypotheses:
        ET.SubElement(
            properties, "property", name=f"hypothesis:{hypothesis.id}", value=hypothesis.status
        )
    for host in result.hosts:
        if host.status != "ok":  # its checks never ran: the host itself is the error
            case = ET.SubElement(suite, "testcase", classname=f"{name}.{host.name}", name="connect")
            case.set("time", "0.000")
            error = ET.SubElement(case, "error", type=host.status, message=_xml(host.error or ""))
            error.text = _xml(f"{host.name} ({host.uri}): {host.status}: {host.error or ''}")
    for check in result.checks:
        suite.append(testcase(name, check))
    cases = suite.findall("testcase")
    suite.set("tests", str(len(cases)))
    for key in ("failures", "errors", "skipped"):
        tag = {"failures": "failure", "errors": "error", "skipped": "skipped"}[key]
        suite.set(key, str(sum(1 for case in cases if case.find(tag) is not None)))
    return suite


def testcase(runbook: str, check: CheckResult) -> ET.Element:
    """Return the ``<testcase>`` of one check on one host."""
    case = ET.Element(
        "testcase",
        classname=f"{runbook}.{check.host}",
        name=check.check,
        time=f"{check.duration_s:.3f}",
    )
    message = _xml(check.message or check.outcome)
    if check.outcome == "failed":
        failure = ET.SubElement(case, "failure", type="ruled_in", message=message)
        failure.text = _details(check)
    elif check.outcome in ERROR_OUTCOMES:
        error = ET.SubElement(case, "error", type=check.outcome, message=message)
        error.text = _details(check)
    elif check.outcome == "skipped":
        ET.SubElement(case, "skipped", message=message)
    if check.evidence:
        out = ET.SubElement(case, "system-out")
        out.text = _xml("\n\n".join(f"{item.title}\n{item.body}" for item in check.evidence))
    return case


def _details(check: CheckResult) -> str:
    tests = ", ".join(check.tests) or "symptom check"
    lines = [f"{check.check} on {check.host} [{tests}]: {check.outcome}", check.message]
    if check.traceback:
        lines.append(check.traceback)
    return _xml("\n".join(line for line in lines if line))


def _xml(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)
