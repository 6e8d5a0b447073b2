"""Post-mortem drafts and severity suggestions."""

from __future__ import annotations

import json
import re

import pytest

from runbook.incident.postmortem import context
from runbook.severity import decide
from runbook.severity import most_severe

ERRORS = '''
    """High error rate.

    Symptoms: 5xx responses.
    """
    from runbook import check, hookimpl, hypothesis

    deploy = hypothesis("bad-deploy", "A recent deploy broke requests")

    @check
    def error_rate_is_low(host, params):
        rate = float(host.run("echo 7.5").stdout)
        assert rate <= 5, f"error rate {rate}%"

    @check(tests=deploy)
    def no_recent_deploy(host):
        assert False, "deploy 4711 ten minutes ago"

    @hookimpl
    def runbook_suggest_severity(result):
        symptom = next(c for c in result.checks if c.check == "error_rate_is_low")
        return "P1" if symptom.outcome == "failed" else None
'''

QUIET = '''
    """Quiet.

    Symptoms: none.
    """
    from runbook import check, hypothesis

    h = hypothesis("nothing", "Nothing is wrong")

    @check(tests=h)
    def all_good(host):
        pass

    @check(tests=h)
    def broken_check(host):
        raise RuntimeError("cannot parse")
'''


def test_a_runbook_suggests_severity_from_its_findings(project):
    project.runbook("errors", ERRORS)
    _, data = project.run_json("errors", "--incident", "INC-SEV")
    assert (data["severity"], data["severity_suggested"], data["severity_source"]) == (
        "P1",
        "P1",
        "runbook",
    )
    report = (project.root / "errors.md").read_text()
    assert "| severity    | P1 (set by the runbook, from its findings)" in report
    state = json.loads(project.invoke("incident", "show", "INC-SEV", "--json").output)
    assert (state["severity"], state["severity_set_by"]) == ("P1", "runbook errors")


def test_the_operator_wins_over_the_suggestion_and_both_are_shown(project):
    project.runbook("errors", ERRORS)
    _, data = project.run_json("errors", "--incident", "INC-OP", "--severity", "P3")
    assert (data["severity"], data["severity_suggested"], data["severity_source"]) == (
        "P3",
        "P1",
        "operator",
    )
    report = (project.root / "errors.md").read_text()
    assert "P3 (set by the operator); the findings suggest P1" in report
    shown = project.invoke("incident", "show", "INC-OP").output
    assert "errors suggests P1; the incident stays P3 (set by operator " in shown


def test_a_later_run_does_not_pass_a_suggested_severity_off_as_the_operators(project):
    project.runbook("errors", ERRORS)
    project.runbook("quiet", QUIET)
    project.run_json("errors", "--incident", "INC-LATER")  # the incident takes P1 from it
    _, data = project.run_json("quiet", "--incident", "INC-LATER")
    assert (data["severity"], data["severity_source"]) == (None, None)
    project.invoke("incident", "severity", "INC-LATER", "P2")
    _, data = project.run_json("quiet", "--incident", "INC-LATER")
    assert (data["severity"], data["severity_source"]) == ("P2", "operator")


def test_a_runbook_is_only_asked_about_its_own_runs(project):
    project.runbook("errors", ERRORS)
    project.runbook("quiet", QUIET)
    _, data = project.run_json("quiet")
    assert (data["severity"], data["severity_suggested"], data["severity_source"]) == (
        None,
        None,
        None,
    )


def test_the_severity_constant_is_the_default_of_a_run_that_found_something(project):
    found = QUIET.replace(
        "def all_good(host):\n        pass", "def all_good(host):\n        assert 0, 'x'"
    )
    project.runbook("found", found + '    SEVERITY = "P4"\n')
    _, data = project.run_json("found")
    assert (data["severity"], data["severity_source"]) == ("P4", "default")


def test_a_run_that_found_nothing_does_not_claim_the_default_severity(project):
    project.runbook("quiet", QUIET + '    SEVERITY = "P1"\n')
    _, data = project.run_json("quiet")
    assert (data["severity"], data["severity_suggested"], data["severity_source"]) == (
        None,
        None,
        None,
    )


def test_a_crashing_suggestion_is_a_warning(project):
    project.write(
        "tools/sev.py",
        """
        from runbook import hookimpl

        @hookimpl
        def runbook_suggest_severity(result):
            raise ValueError("no idea")
        """,
    )
    project.write("runbook.toml", 'plugins = ["tools/sev.py"]\n')
    project.runbook("quiet", QUIET)
    result, data = project.run_json("quiet")
    assert result.exit_code == 1  # the broken check, not the plugin
    assert "runbook_suggest_severity failed: ValueError: no idea" in data["warnings"]


def test_post_mortem_without_a_cause_asks_for_one(project):
    project.runbook("quiet", QUIET)
    project.run_json("quiet", "--incident", "INC-Q")
    done = project.invoke("postmortem", "INC-Q")
    assert done.exit_code == 0
    text = done.output
    assert "No runbook run ruled a cause in." in text
    assert "No hypothesis was ruled in." in text
    assert "`quiet`: check `broken_check` ended error on local: make it conclusive." in text
    assert "No runbook ruled a cause in: add the hypothesis that explains it." in text
    assert "_Not recorded during the incident" in text
    assert re.search(r"\| resolved \(UTC\) +\| not yet +\|", text)


def test_post_mortem_template_can_be_replaced(project):
    project.runbook("errors", ERRORS)
    project.run_json("errors", "--incident", "INC-T")
    project.write(
        "pm.j2",
        "{{ incident.id }} {{ causes | map(attribute='id') | join(',') }} "
        "{{ timeline | length }}\n",
    )
    done = project.invoke("postmortem", "INC-T", "--template", "pm.j2")
    assert done.exit_code == 0
    assert done.output.startswith("INC-T bad-deploy ")
    broken = project.write("bad.j2", "{{ nope.missing }}\n")
    failed = project.run("postmortem", "INC-T", "--template", str(broken))
    assert failed.returncode == 4
    assert "'nope' is undefined" in failed.stderr


@pytest.mark.parametrize(
    ("values", "expected"),
    [(["P3", "P1", None, "P2"], "P1"), ([None, "bogus"], None), ([], None), (["P4"], "P4")],
)
def test_most_severe(values, expected):
    assert most_severe(values) == expected


@pytest.mark.parametrize(
    ("operator", "suggested", "default", "expected"),
    [
        ("P2", "P0", "P4", ("P2", "operator")),
        (None, "P0", "P4", ("P0", "runbook")),
        (None, None, "P4", ("P4", "default")),
        (None, None, None, (None, None)),
    ],
)
def test_decide(operator, suggested, default, expected):
    assert decide(operator, suggested, default) == expected


def test_context_merges_evidence_of_the_same_cause_across_runs():
    def run(evidence: str) -> dict:
        return {
            "runbook": {"name": "disk"},
            "started_at": "2026-11-24T00:00:00Z",
            "hypotheses": [
                {
                    "id": "full",
                    "statement": "Full",
                    "status": "ruled_in",
                    "hosts": {"web1": "ruled_in", "web2": "ruled_out"},
                    "evidence": [evidence],
                }
            ],
            "checks": [],
            "actions": [],
        }

    incident = {"id": "INC-1", "severity": None, "opened_at": "2026-11-24T00:00:00.000Z"}
    data = context(incident, [], [run("97%"), run("99%")])
    assert data["causes"] == [
        {
            "id": "full",
            "statement": "Full",
            "runbook": "disk",
            "hosts": ["web1"],
            "evidence": ["97%", "99%"],
            "first_seen": "2026-11-24T00:00:00Z",
        }
    ]
    assert data["duration"] == "ongoing"


def _finding(statuses, symptoms):
    from types import SimpleNamespace

    hypotheses = [SimpleNamespace(id=key, status=value) for key, value in statuses.items()]
    checks = [SimpleNamespace(tests=(), outcome=outcome) for outcome in symptoms]
    return SimpleNamespace(hypotheses=hypotheses, checks=checks)


@pytest.mark.parametrize(
    ("statuses", "symptoms", "also", "expected"),
    [
        ({"a": "ruled_in", "b": "ruled_in"}, ["failed"], [], "P1"),  # the most severe
        ({"a": "ruled_in"}, ["passed"], [], "P2"),  # the symptom is not there: one less
        ({"b": "ruled_in"}, ["passed"], [], "P4"),  # never below P4
        ({"a": "ruled_in"}, [], [], "P1"),  # no symptom check ran
        ({"a": "ruled_out"}, ["failed"], [], "P3"),  # only the symptom
        ({"a": "ruled_out"}, ["passed"], [], None),  # nothing found
        ({"c": "ruled_in"}, ["failed"], ["P0"], "P0"),  # unlisted hypothesis, an extra level
    ],
)
def test_severity_from_findings(statuses, symptoms, also, expected):
    from runbook import severity_from_findings

    result = _finding(statuses, symptoms)
    levels = {"a": "P1", "b": "P4"}
    assert severity_from_findings(result, levels, symptom_only="P3", also=also) == expected
