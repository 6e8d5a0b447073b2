"""``run --junit-xml PATH``: one testcase per check and host, for CI."""

from __future__ import annotations

import xml.etree.ElementTree as ET

OUTCOMES = '''
    """Every outcome.

    Symptoms: a test of the JUnit writer.
    """
    from runbook import check, evidence, hypothesis, skip

    PARAMS = {"api_token": "tok-0123456789abcdef"}
    a = hypothesis("a", "A")
    b = hypothesis("b", "B")

    @check(tests=a)
    def fails(host, params):
        evidence("Raw output", "colour \\x1b[31mred\\x1b[0m <tag> & more")
        assert False, f"ruled in with {params.api_token} & <angle>"

    @check(tests=b)
    def errors(host):
        raise RuntimeError("oops")

    @check(tests=b)
    def skips(host):
        skip("no queue here")

    @check(tests=b)
    def blocked(host):
        host.run("rm -rf /tmp/nothing-to-remove")

    @check(tests=b, timeout=0.5)
    def hangs(host):
        host.run("sleep 5")

    @check
    def passes(host):
        pass
'''

CALM = '''
    """Calm."""
    from runbook import check, hypothesis

    h = hypothesis("h", "H")

    @check(tests=h)
    def fine(host):
        pass
'''


def cases_by_name(suite: ET.Element) -> dict[str, ET.Element]:
    return {case.get("name"): case for case in suite.iter("testcase")}


def test_outcomes_map_to_failures_errors_and_skips(project):
    project.runbook("outcomes", OUTCOMES)
    result = project.run("run", "outcomes", "-q", "--junit-xml", "ci/junit.xml")
    assert result.returncode == 1, result.stdout + result.stderr
    path = project.root / "ci" / "junit.xml"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    text = path.read_text()
    assert text.startswith('<?xml version="1.0" encoding="utf-8"?>\n<testsuites')
    assert "tok-0123456789abcdef" not in text  # results are redacted before they get here
    root = ET.fromstring(text)  # control characters from output do not break the XML
    [suite] = root.findall("testsuite")
    assert suite.get("name") == "outcomes"
    counts = {key: suite.get(key) for key in ("tests", "failures", "errors", "skipped")}
    assert counts == {"tests": "6", "failures": "1", "errors": "3", "skipped": "1"}
    assert {key: root.get(key) for key in counts} == counts
    cases = cases_by_name(suite)
    assert list(cases) == ["fails", "errors", "skips", "blocked", "hangs", "passes"]
    assert {case.get("classname") for case in cases.values()} == {"outcomes.local"}
    failure = cases["fails"].find("failure")
    assert failure.get("message").startswith("ruled in with ")
    assert failure.get("message").endswith(" & <angle>")
    assert "fails on local [a]: failed" in failure.text
    assert "<tag> & more" in cases["fails"].find("system-out").text
    assert cases["errors"].find("error").get("type") == "error"
    assert "RuntimeError: oops" in cases["errors"].find("error").text
    assert "Traceback" in cases["errors"].find("error").text
    assert cases["blocked"].find("error").get("type") == "blocked"
    assert "'rm' is not on the read-only allowlist" in cases["blocked"].find("error").get("message")
    assert cases["hangs"].find("error").get("type") == "timeout"
    assert cases["skips"].find("skipped").get("message") == "no queue here"
    assert list(cases["passes"]) == []
    assert float(cases["hangs"].get("time")) >= 0.5
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert properties["hypothesis:a"] == "ruled_in"
    assert properties["hypothesis:b"] == "inconclusive"
    assert properties["exit_code"] == "1"


def test_several_runbooks_share_one_file(project):
    project.runbook("outcomes", OUTCOMES)
    project.runbook("calm", CALM)
    result = project.invoke("run", "calm", "outcomes", "-q", "--junit-xml", "junit.xml")
    assert result.exit_code == 1, result.output
    root = ET.parse(project.root / "junit.xml").getroot()
    assert root.tag == "testsuites"
    assert [s.get("name") for s in root.findall("testsuite")] == ["calm", "outcomes"]
    assert root.get("tests") == "7"
    [calm] = [s for s in root.findall("testsuite") if s.get("name") == "calm"]
    assert cases_by_name(calm)["fine"].get("classname") == "calm.local"


def test_one_testcase_per_check_and_host_and_an_error_for_an_unreachable_host(
    project, silent_listener
):
    project.runbook("calm", CALM)
    project.write("known_hosts", "")
    # A closed port: nothing listens there, so the connection is refused at once.
    port = silent_listener.port
    silent_listener.close()
    result = project.run(
        "run",
        "calm",
        "-q",
        "-H",
        f"local,ssh://127.0.0.1:{port}",
        "--known-hosts",
        "known_hosts",
        "--junit-xml",
        "junit.xml",
    )
    assert result.returncode == 1, result.stdout + result.stderr
    [suite] = ET.parse(project.root / "junit.xml").getroot().findall("testsuite")
    cases = [(c.get("classname"), c.get("name")) for c in suite.iter("testcase")]
    assert cases == [(f"calm.127.0.0.1:{port}", "connect"), ("calm.local", "fine")]
    error = suite.find("testcase/error")
    assert error.get("type") == "unreachable"
    assert suite.get("errors") == "1"


def test_no_file_without_the_option(project):
    project.runbook("calm", CALM)
    assert project.invoke("run", "calm", "-q").exit_code == 0
    assert not list(project.root.rglob("*.xml"))


def test_a_path_that_cannot_be_written_or_a_dry_run_is_a_usage_error(project):
    project.runbook("calm", CALM)
    project.write("blocker", "a file, not a folder\n")
    result = project.invoke("run", "calm", "--junit-xml", "blocker/junit.xml")
    assert result.exit_code == 4
    assert "--junit-xml blocker/junit.xml: cannot create its folder" in result.output
    assert not (project.root / "runbook-reports").exists()  # refused before running
    result = project.invoke("run", "calm", "--dry-run", "--junit-xml", "junit.xml")
    assert result.exit_code == 4
    assert "--junit-xml holds check results, and a --dry-run runs no check" in result.output
