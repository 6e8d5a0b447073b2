"""The pytest plugin (entry point ``pytest11``): teams test their runbooks with it."""

from __future__ import annotations

import textwrap

import pytest

pytest_plugins = ["pytester"]

DISK = '''
"""Disk almost full.

Symptoms: writes fail with "No space left on device".
"""
from runbook import check, evidence, hypothesis

PARAMS = {"path": "/", "max_used_percent": 90.0}

full = hypothesis("filesystem-full", "The filesystem holding path is almost full")


@check(tests=full)
def filesystem_has_room(host, params):
    lines = host.run("df -P -k %s", params.path).stdout.splitlines()
    used = int(lines[1].split()[4].rstrip("%"))
    evidence("df", "\\n".join(lines))
    assert used < params.max_used_percent, f"{params.path} is {used}% full"
'''

DF = "Filesystem 1024-blocks Used Available Capacity Mounted on\n/dev/sda1 100 {used} 0 {used}% /\n"


@pytest.fixture
def team_repo(pytester: pytest.Pytester) -> pytest.Pytester:
    """A team's repository: runbooks/ and tests/ (runbook's plugin comes from its entry point)."""
    pytester.makepyfile(**{"runbooks/disk_almost_full": textwrap.dedent(DISK)})
    pytester.mkdir("tests")
    return pytester


def _test_file(pytester: pytest.Pytester, source: str) -> None:
    pytester.makepyfile(**{"tests/test_disk": textwrap.dedent(source)})


def test_canned_outputs_rule_a_hypothesis_in_and_out(team_repo):
    _test_file(
        team_repo,
        f"""
        DF = {DF!r}

        def test_full(runbook_runner):
            result = runbook_runner.run(
                "disk-almost-full", outputs={{"df -P -k /": DF.format(used=97)}}
            )
            result.assert_statuses({{"filesystem-full": "ruled_in"}})
            assert result.exit_code == 1
            assert result.check("filesystem_has_room")["message"] == "/ is 97% full"

        def test_roomy(runbook_runner):
            result = runbook_runner.run(
                "disk-almost-full",
                outputs={{"df -P -k /var": DF.format(used=40)}},
                params={{"path": "/var"}},
            )
            assert result.statuses == {{"filesystem-full": "ruled_out"}}
            assert result.exit_code == 0
        """,
    )
    outcome = team_repo.runpytest("-p", "no:cacheprovider")
    outcome.assert_outcomes(passed=2)


def test_a_wrong_expectation_fails_with_the_checks_that_explain_it(team_repo):
    _test_file(
        team_repo,
        f"""
        def test_expects_ruled_out(runbook_runner):
            result = runbook_runner.run(
                "disk-almost-full", outputs={{"df -P -k /": {DF.format(used=99)!r}}}
            )
            result.assert_statuses({{"filesystem-full": "ruled_out"}})
        """,
    )
    outcome = team_repo.runpytest("-p", "no:cacheprovider")
    outcome.assert_outcomes(failed=1)
    outcome.stdout.fnmatch_lines(
        [
            "*hypotheses filesystem-full differ:*",
            "*filesystem-full: expected ruled_out, got ruled_in*",
            "*filesystem_has_room on local: failed (/ is 99% full)*",
        ]
    )


def test_a_command_without_a_canned_output_is_named(team_repo):
    _test_file(
        team_repo,
        """
        def test_missing(runbook_runner):
            result = runbook_runner.run("disk-almost-full", outputs={"uptime": "up"})
            check = result.check("filesystem_has_room")
            assert check["outcome"] == "error"
            assert "command not in cassette" in check["message"]
            assert "df -P -k /" in check["message"]
            assert result.statuses == {"filesystem-full": "inconclusive"}
        """,
    )
    team_repo.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_a_recorded_cassette_replays_in_a_team_test(team_repo, monkeypatch):
    monkeypatch.chdir(team_repo.path)
    from click.testing import CliRunner

    from runbook.cli.main import cli

    done = CliRunner().invoke(
        cli,
        ["run", "disk-almost-full", "--record", "tests/disk.yaml", "--report", "r.md"],
        catch_exceptions=False,
    )
    assert (team_repo.path / "tests" / "disk.yaml").exists(), done.output
    recorded = "ruled_in" if done.exit_code == 1 else "ruled_out"
    _test_file(
        team_repo,
        f"""
        from pathlib import Path

        def test_replay(runbook_runner):
            cassette = Path(__file__).parent / "disk.yaml"
            result = runbook_runner.run("disk-almost-full", cassette=cassette)
            result.assert_statuses({{"filesystem-full": {recorded!r}}})
            assert result.data["hosts"][0]["name"] == "local"
        """,
    )
    team_repo.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_the_runner_needs_outputs_or_a_cassette(team_repo):
    _test_file(
        team_repo,
        """
        import pytest

        def test_neither(runbook_runner):
            with pytest.raises(TypeError, match="either outputs= or cassette="):
                runbook_runner.run("disk-almost-full")

        def test_unknown_hypothesis(runbook_runner):
            result = runbook_runner.run("disk-almost-full", outputs={"df -P -k /": "x"})
            with pytest.raises(KeyError, match="no hypothesis 'nope'"):
                result.hypothesis("nope")
        """,
    )
    team_repo.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_canned_outputs_run_in_process_and_write_no_file(team_repo):
    # The run goes through the Session API: no CliRunner, no cassette file for the
    # canned outputs, no report or JSON to read back; only the audit log is kept.
    _test_file(
        team_repo,
        f"""
        from pathlib import Path

        import click.testing

        def test_no_files(runbook_runner, tmp_path_factory, monkeypatch):
            def no_cli(*args, **kwargs):
                raise AssertionError("the runner went through the command line")

            monkeypatch.setattr(click.testing.CliRunner, "invoke", no_cli)
            result = runbook_runner.run(
                "disk-almost-full", outputs={{"df -P -k /": {DF.format(used=97)!r}}}
            )
            assert result.statuses == {{"filesystem-full": "ruled_in"}}
            files = [p for p in tmp_path_factory.getbasetemp().rglob("*") if p.is_file()]
            assert [p.name for p in files] == ["audit.jsonl"]
            assert not Path("runbook-reports").exists()
        """,
    )
    outcome = team_repo.runpytest("-p", "no:cacheprovider")
    outcome.assert_outcomes(passed=1)
