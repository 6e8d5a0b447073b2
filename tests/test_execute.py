"""Execute mode end to end: confirmation on a terminal, and the verify step."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time

FLAG_RUNBOOK = '''
    """Stuck flag."""
    from pathlib import Path
    from runbook import action, check, evidence, hypothesis

    FLAG = Path({flag!r})
    stuck = hypothesis("stuck", "A stuck flag file blocks the service")

    @check(tests=stuck)
    def no_stuck_flag(host):
        evidence("Flag", str(FLAG))
        assert not FLAG.exists(), f"{{FLAG}} is still there"

    @action(mitigates=stuck)
    def clear_flag(host):
        """Remove the stuck flag file."""
        {body}
'''


def write(project, flag, body):
    project.runbook("flag", FLAG_RUNBOOK.format(flag=str(flag), body=body))


def test_verify_step_reruns_the_checks_and_reports_resolved(project):
    flag = project.root / "stuck.flag"
    flag.write_text("")
    write(project, flag, "host.run(['rm', '-f', str(FLAG)])")
    result, data = project.run_json("flag", "--execute", "--yes")
    assert not flag.exists()
    action = data["actions"][0]
    assert action["status"] == "executed"
    assert action["verification"]["status"] == "resolved"
    assert [c["outcome"] for c in action["verification"]["checks"]] == ["passed"]
    assert "verified: stuck now ruled out" in action["message"]
    # The diagnosis stands: the hypothesis was ruled in before the mitigation.
    assert data["hypotheses"][0]["status"] == "ruled_in"
    assert result.exit_code == 1
    report = (project.root / "flag.md").read_text()
    assert "verified: stuck now ruled out" in report


def test_verify_step_says_when_the_mitigation_did_not_work(project):
    flag = project.root / "stuck.flag"
    flag.write_text("")
    write(project, flag, "pass  # does nothing")
    _, data = project.run_json("flag", "--execute", "--yes")
    action = data["actions"][0]
    assert action["verification"]["status"] == "still_ruled_in"
    assert "not verified: stuck still ruled in" in action["message"]


def test_an_action_that_skips_is_not_needed_and_one_that_raises_failed(project):
    flag = project.root / "stuck.flag"
    flag.write_text("")
    write(project, flag, "from runbook import skip; skip('the flag belongs to a live deploy')")
    _, data = project.run_json("flag", "--execute", "--yes")
    action = data["actions"][0]
    assert (action["status"], action["message"]) == (
        "not_needed",
        "the flag belongs to a live deploy",
    )
    assert action["verification"] is None
    write(project, flag, "raise RuntimeError('permission denied')")
    _, data = project.run_json("flag", "--execute", "--yes")
    action = data["actions"][0]
    assert (action["status"], action["message"]) == ("failed", "RuntimeError: permission denied")


def test_planned_and_declined_actions_are_not_verified(project):
    flag = project.root / "stuck.flag"
    flag.write_text("")
    write(project, flag, "host.run(['rm', '-f', str(FLAG)])")
    _, data = project.run_json("flag")
    assert data["actions"][0]["status"] == "planned"
    assert data["actions"][0]["verification"] is None
    assert flag.exists()


def _converse(argv, cwd, answer):
    """Run argv on a pseudo-terminal; answer the first confirmation prompt."""
    leader, follower = os.openpty()
    process = subprocess.Popen(
        argv,
        cwd=cwd,
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env={**os.environ, "NO_COLOR": "1"},
        close_fds=True,
    )
    os.close(follower)
    output, answered, deadline = b"", False, time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closed: the process ended
                break
            if not chunk:
                break
            output += chunk
        if not answered and b"[y/N]" in output:
            os.write(leader, answer + b"\n")
            answered = True
        if process.poll() is not None and not ready:
            break
    process.wait(timeout=10)
    os.close(leader)
    return process.returncode, output.decode(errors="replace")


def test_confirmation_on_a_terminal_shows_evidence_and_docstring(project):
    flag = project.root / "stuck.flag"
    flag.write_text("")
    write(project, flag, "host.run(['rm', '-f', str(FLAG)])")
    argv = [sys.executable, "-m", "runbook", "run", "flag", "--execute"]
    code, output = _converse(argv, project.root, b"n")
    assert "Remove the stuck flag file." in output
    assert "stuck ruled in" in output and "is still there" in output
    assert "declined" in output
    assert flag.exists()
    assert code == 1

    code, output = _converse(argv, project.root, b"y")
    assert not flag.exists()
    assert "verified: stuck now ruled out" in output


def test_the_prompt_shows_the_runs_values_and_quiet_still_shows_the_decline(project):
    project.runbook(
        "restart",
        '''
        """Restart."""
        from runbook import action, check, hypothesis

        PARAMS = {"service": "worker", "token": "s3cr3t-t0ken-value"}
        stuck = hypothesis("stuck", "The worker is stuck")

        @check(tests=stuck)
        def worker_moves(host):
            assert False, "no progress for 10 minutes"

        @action(mitigates=stuck)
        def restart(host, params):
            """Restart ``service`` with ``token``; ``nothing`` is no parameter."""
        ''',
    )
    argv = [sys.executable, "-m", "runbook", "run", "restart", "--execute", "-q"]
    argv += ["--param", "service=checkout-7"]
    code, output = _converse(argv, project.root, b"n")
    assert "Restart checkout-7 with ***; ``nothing`` is no parameter." in output
    assert "s3cr3t" not in output
    assert "action restart on local: DECLINED: declined by the operator" in output
    assert code == 1
