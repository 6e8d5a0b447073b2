"""``Host`` in front of the local backend: quoting, shells, exit status, timeouts, files."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from runbook.hosts.host import CommandResult
from runbook.hosts.host import Host
from runbook.hosts.host import interpolate
from runbook.hosts.local import LocalBackend
from runbook.hosts.sandbox import Sandbox
from runbook.outcomes import CommandTimeout
from runbook.outcomes import HostUnavailable
from runbook.outcomes import ReadOnlyViolation
from runbook.outcomes import UsageError
from runbook.steps import Step
from runbook.steps import current_step

HOSTILE = [
    "; rm -rf /",
    "$(id)",
    "`id`",
    "it's",
    '"double"',
    "a b",
    "x' ; touch /tmp/pwned ; '",
    "*",
    "~",
    "$HOME",
    "a\nb",
    "-rf",
    "",
    "%s",
    "100%",
]


@pytest.mark.parametrize(
    ("command", "args", "expected"),
    [
        ("tail -n 50 %s", ("/var/log/app.log",), "tail -n 50 /var/log/app.log"),
        ("tail -n 50 %s", ("/var/log/my app.log",), "tail -n 50 '/var/log/my app.log'"),
        ("grep -c %s %s", ("ERROR", "/var/log/x"), "grep -c ERROR /var/log/x"),
        ("ps -p %s", (4242,), "ps -p 4242"),
        ("echo %s", ("; rm -rf /",), "echo '; rm -rf /'"),
        ("echo %s", ("$(id)",), "echo '$(id)'"),
        ("echo %s", ("it's",), "echo 'it'\"'\"'s'"),
        ("echo %s", ("",), "echo ''"),
        ("echo %s", ("%s",), "echo %s"),  # an argument is never expanded again
        ("ps -o %%cpu -p %s", (1,), "ps -o %cpu -p 1"),
        ("df --output=pcent %s | tr -d %%", ("/",), "df --output=pcent / | tr -d %"),
        ("ps -o %cpu,%mem", (), "ps -o %cpu,%mem"),  # no arguments: left as it is
        ("printf '%s\\n' x", (), "printf '%s\\n' x"),
    ],
)
def test_interpolate(command, args, expected):
    assert interpolate(command, args) == expected


@pytest.mark.parametrize(
    ("command", "args", "message"),
    [
        ("echo %s %s", ("one",), "more %s than arguments"),
        ("echo %s", ("one", "two"), "1 %s placeholder(s) but got 2 argument(s)"),
        ("echo %%s", ("one",), "0 %s placeholder(s) but got 1 argument(s)"),
        ("echo", ("one",), "0 %s placeholder(s)"),
    ],
)
def test_interpolate_placeholder_count_mismatch(command, args, message):
    with pytest.raises(TypeError) as info:
        interpolate(command, args)
    assert message in str(info.value)


@pytest.fixture
def host():
    return Host(LocalBackend())


@pytest.mark.parametrize("argument", HOSTILE)
def test_hostile_argument_reaches_the_command_as_one_literal_word(host, argument):
    result = host.run("printf '[%%s]' %s", argument)
    assert result.stdout == f"[{argument}]"
    assert result.exit_status == 0


def test_hostile_arguments_run_nothing(host, tmp_path):
    marker = tmp_path / "pwned"
    for argument in (f"; touch {marker}", f"$(touch {marker})", f"`touch {marker}`"):
        host.run("echo %s", argument)
        host.run(["echo", argument])
    assert not marker.exists()


def test_string_commands_run_through_a_shell(host):
    result = host.run("echo $((6 * 7)) | tr 4 x; echo second >&2; exit 3")
    assert result.stdout == "x2\n"
    assert result.stderr == "second\n"
    assert result.exit_status == 3
    assert not result.succeeded
    assert result.command == "echo $((6 * 7)) | tr 4 x; echo second >&2; exit 3"


def test_list_commands_run_without_a_shell(host, tmp_path):
    marker = tmp_path / "marker"
    result = host.run(["echo", "a;", "touch", str(marker), "$(id)", "|", "cat"])
    assert result.stdout == f"a; touch {marker} $(id) | cat\n"
    assert not marker.exists()
    assert result.command == f"echo 'a;' touch {marker} '$(id)' '|' cat"


def test_list_items_are_turned_into_strings(host):
    assert host.run(["printf", "%s-%s", 1, 2.5]).stdout == "1-2.5"


def test_arguments_after_a_list_are_a_mistake(host):
    with pytest.raises(TypeError, match="inside the list"):
        host.run(["echo"], "x")


def test_result_of_a_successful_command(host):
    result = host.run("echo %s", "hello")
    assert isinstance(result, CommandResult)
    assert (result.stdout, result.stderr, result.exit_status) == ("hello\n", "", 0)
    assert result.succeeded
    assert str(result) == "hello\n"
    assert result.duration_s > 0
    assert host.name == "local"
    assert host.uri.startswith("local://")


@pytest.mark.parametrize(
    ("argv", "status"),
    [
        (["/nonexistent/command"], 127),
        (["false"], 1),
        (["sh", "-c", "exit 42"], 42),
    ],
)
def test_exit_status_is_returned_not_raised(host, argv, status):
    assert host.run(argv).exit_status == status


def _is_gone(pid):
    # Killed children are reparented and reaped by init; in a container whose
    # init does not reap, a zombie is as dead as it gets.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def test_timeout_raises_and_kills_the_whole_process_group(host, tmp_path):
    pids = tmp_path / "pids"
    started = time.monotonic()
    with pytest.raises(CommandTimeout, match=r"timed out after 0\.5s"):
        host.run("echo $$ > %s; sleep 30 & echo $! >> %s; wait", pids, pids, timeout=0.5)
    assert time.monotonic() - started < 5
    shell, child = (int(line) for line in pids.read_text().split())
    deadline = time.monotonic() + 5
    while not (_is_gone(shell) and _is_gone(child)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _is_gone(shell), f"the shell (pid {shell}) survived its timeout"
    assert _is_gone(child), f"the shell's child (pid {child}) survived its timeout"


def test_host_default_timeout_applies_when_the_call_sets_none(tmp_path):
    host = Host(LocalBackend(), command_timeout=0.3)
    with pytest.raises(CommandTimeout):
        host.run(["sleep", "10"])
    assert host.run(["sleep", "0.6"], timeout=5).succeeded


def test_cancelling_the_step_stops_its_running_command(host):
    step = Step("hangs", "check", "local", read_only=False)
    outcome = {}

    def run_in_step():
        current_step.set(step)
        outcome["result"] = host.run(["sleep", "30"])

    thread = threading.Thread(target=run_in_step)
    started = time.monotonic()
    thread.start()
    deadline = time.monotonic() + 5
    while not step._cancels and time.monotonic() < deadline:
        time.sleep(0.01)
    step.cancel()
    thread.join(5)
    assert not thread.is_alive()
    assert time.monotonic() - started < 5
    assert outcome["result"].exit_status == -9
    assert [(c.command, c.exit_status) for c in step.commands] == [("sleep 30", -9)]


def test_read_text_and_exists(host, tmp_path):
    path = tmp_path / "odd; name $(id) 'quoted'.txt"
    path.write_text("line one\nline two\n")
    dashed = tmp_path / "-n"
    dashed.write_text("dash\n")
    assert host.read_text(str(path)) == "line one\nline two\n"
    assert host.read_text(str(dashed)) == "dash\n"
    assert host.exists(str(path))
    assert host.exists(str(tmp_path))
    assert not host.exists(str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="missing"):
        host.read_text(str(tmp_path / "missing"))


def test_policy_is_asked_only_for_read_only_steps(tmp_path):
    asked = []

    def policy(command, argv, step):
        asked.append((command, argv, step.id))
        if command.startswith("touch"):
            return ReadOnlyViolation(command, "touch writes")
        return None

    host = Host(LocalBackend(), policy=policy)
    marker = tmp_path / "marker"
    host.run("touch %s", marker)  # no running step (a unit test calling a check): not asked
    assert marker.exists() and asked == []
    marker.unlink()

    check = Step("probe", "check", "local", read_only=True)
    token = current_step.set(check)
    try:
        assert host.run(["echo", "x"]).stdout == "x\n"
        with pytest.raises(ReadOnlyViolation, match="touch writes"):
            host.run("touch %s", marker)
    finally:
        current_step.reset(token)
    assert not marker.exists()
    assert asked == [("echo x", ["echo", "x"], "probe"), (f"touch {marker}", None, "probe")]
    assert [(c.command, c.blocked, c.reason) for c in check.commands] == [
        ("echo x", False, ""),
        (f"touch {marker}", True, "touch writes"),
    ]

    action = Step("fix", "action", "local", read_only=False)
    token = current_step.set(action)
    try:
        host.run("touch %s", marker)
    finally:
        current_step.reset(token)
    assert marker.exists()
    assert len(asked) == 2
    assert [(c.step, c.exit_status, c.blocked) for c in action.commands] == [("fix", 0, False)]


def test_a_timed_out_command_is_recorded_without_exit_status():
    host = Host(LocalBackend())
    step = Step("slow", "check", "local", read_only=False)
    token = current_step.set(step)
    try:
        with pytest.raises(CommandTimeout):
            host.run(["sleep", "10"], timeout=0.2)
    finally:
        current_step.reset(token)
    (record,) = step.commands
    assert (record.command, record.exit_status, record.blocked) == ("sleep 10", None, False)
    assert 0.2 <= record.duration_s < 5


def test_a_local_command_leaves_no_background_process_behind(tmp_path):
    import os
    import subprocess

    marker = f"sleep 4{os.getpid() % 1000}.5"
    host = Host(LocalBackend())
    result = host.run(f"{marker} >/dev/null 2>&1 & echo started")
    assert result.stdout.strip() == "started"
    time.sleep(0.2)
    assert subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode == 1


# The opt-in OS-level sandbox ([sandbox] in runbook.toml) for the commands of checks.


def _sandbox_or_skip(sandbox):
    """Return ``sandbox`` if this machine can provide it; skip (fail in CI) otherwise."""
    try:
        sandbox.prefix()
    except UsageError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    return sandbox


def _in_step(host, read_only, command, *args):
    step = Step("probe", "check" if read_only else "action", "local", read_only=read_only)
    token = current_step.set(step)
    try:
        return host.run(command, *args)
    finally:
        current_step.reset(token)


@pytest.mark.parametrize(
    "sandbox",
    [Sandbox(read_only=True), Sandbox(user="nobody"), Sandbox(read_only=True, user="nobody")],
    ids=["read-only mounts", "unprivileged user", "both"],
)
def test_sandbox_stops_a_check_command_that_writes(tmp_path, sandbox):
    """No policy here: the sandbox alone must stop the write the guard would have allowed."""
    host = Host(LocalBackend(sandbox=_sandbox_or_skip(sandbox)))
    target = tmp_path / "written"
    result = _in_step(host, True, "touch %s", target)
    assert result.exit_status != 0
    assert not target.exists()
    shell = _in_step(host, True, f"echo lost > {target}")
    assert shell.exit_status != 0 and not target.exists()
    # Reading still works, which is all a check needs (as another user: what it may read).
    assert _in_step(host, True, ["cat", "/proc/loadavg"]).exit_status == 0
    assert _in_step(host, True, "ls %s", "/etc").exit_status == 0


def test_sandbox_read_only_mounts_cover_every_mount(tmp_path):
    host = Host(LocalBackend(sandbox=_sandbox_or_skip(Sandbox(read_only=True))))
    # Field 6 of mountinfo holds each mount's own options: ro everywhere. Of mounts
    # stacked on one point only the last, on top, can be reached.
    program = "{ top[$5] = $6 } END { for (p in top) if (top[p] !~ /^ro(,|$)/) print p }"
    awk = ["awk", program, "/proc/self/mountinfo"]
    result = _in_step(host, True, awk)
    assert result.exit_status == 0 and result.stdout == "", result.stdout


def test_sandbox_user_cannot_signal_other_users_processes():
    host = Host(LocalBackend(sandbox=_sandbox_or_skip(Sandbox(user="nobody"))))
    victim = subprocess.Popen(["sleep", "60"])
    try:
        result = _in_step(host, True, ["kill", "-TERM", str(victim.pid)])
        assert result.exit_status != 0
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


def test_sandbox_leaves_actions_and_plain_calls_unconfined(tmp_path):
    host = Host(LocalBackend(sandbox=_sandbox_or_skip(Sandbox(read_only=True))))
    _in_step(host, False, "touch %s", tmp_path / "by-action")
    host.run("touch %s", tmp_path / "outside-a-step")
    assert (tmp_path / "by-action").exists() and (tmp_path / "outside-a-step").exists()


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"read_only": "yes"}, "[sandbox] read_only must be true or false"),
        ({"user": 5}, "[sandbox] user must be a user name"),
        ({"readonly": True}, "[sandbox] has unknown keys: readonly"),
    ],
)
def test_sandbox_configuration_mistakes_are_one_line_errors(section, message):
    with pytest.raises(UsageError) as info:
        Sandbox.from_config({"sandbox": section})
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("sandbox", "message"),
    [
        (Sandbox(user="no-such-user-here"), "[sandbox] user 'no-such-user-here' does not exist"),
        (Sandbox(user="root"), "[sandbox] user 'root' is root: choose an unprivileged user"),
    ],
)
def test_unusable_sandbox_makes_the_host_unavailable(sandbox, message):
    """Never run a check unconfined when a sandbox was asked for."""
    backend = LocalBackend(sandbox=sandbox)
    with pytest.raises(HostUnavailable) as info:
        backend.connect()
    assert info.value.message == message
    assert "\n" not in info.value.message


def test_switching_users_without_root_is_refused_in_one_line(monkeypatch):
    """As an unprivileged operator, [sandbox] user cannot work: say so, in one line."""
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(UsageError) as info:
        Sandbox(user="nobody").prefix()
    assert str(info.value) == (
        "[sandbox] user = 'nobody' needs root to switch users (runbook runs as uid 1000); "
        "use read_only alone, or run as root"
    )


def test_read_only_sandbox_works_for_an_unprivileged_operator(monkeypatch, tmp_path):
    """Without root, read_only uses a user namespace: a write the user could make fails."""
    if os.geteuid() != 0:
        pytest.skip("needs root to start a process as nobody")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    prefix = _sandbox_or_skip(Sandbox(read_only=True)).prefix()
    assert "--map-root-user" in prefix
    as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]
    shared = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        shared.chmod(0o1777)  # a folder nobody may write to
        subprocess.run([*as_nobody, "touch", str(shared / "control")], check=True)
        assert (shared / "control").exists()  # unconfined, the write happens
        result = subprocess.run(
            [*as_nobody, *prefix, "touch", str(shared / "confined")], capture_output=True
        )
        assert result.returncode != 0 and b"Read-only file system" in result.stderr
        assert not (shared / "confined").exists()
    finally:
        shutil.rmtree(shared)


def test_configured_sandbox_holds_where_the_guard_was_told_to_allow(project, tmp_path):
    """runbook.toml's [sandbox] confines a real run: a write an allowlist let through fails."""
    _sandbox_or_skip(Sandbox(read_only=True))
    project.write("runbook.toml", "[sandbox]\nread_only = true\n")
    target = tmp_path / "written-by-a-check"
    project.runbook(
        "confined",
        f'''
        """Confined."""
        from runbook import check, hypothesis

        h = hypothesis("h", "H")

        @check(tests=h, allow_commands=["touch"])
        def writes(host):
            host.run("touch %s", "{target}")
        ''',
    )
    _, data = project.run_json("confined")
    [command] = data["commands"]
    assert command["blocked"] is False and command["exit_status"] != 0
    assert not target.exists()


def test_unavailable_sandbox_fails_the_host_not_the_operator(project):
    project.write("runbook.toml", '[sandbox]\nuser = "no-such-user-here"\n')
    project.runbook(
        "confined",
        '''
        """Confined."""
        from runbook import check, hypothesis

        h = hypothesis("h", "H")

        @check(tests=h)
        def reads(host):
            host.run("cat /proc/loadavg")
        ''',
    )
    result, data = project.run_json("confined")
    [host] = data["hosts"]
    assert host["status"] == "error"
    assert host["error"] == "[sandbox] user 'no-such-user-here' does not exist"
    assert data["commands"] == []
    assert result.exit_code != 0


def test_read_only_commands_find_programs_in_a_fixed_path(tmp_path, monkeypatch):
    """A directory first in the process's PATH does not decide what a check's ``cat`` runs."""
    from runbook.hosts.local import SAFE_PATH

    (tmp_path / "cat").write_text("#!/bin/sh\necho hijacked\n")
    (tmp_path / "cat").chmod(0o755)
    (tmp_path / "real").write_text("real\n")
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    host = Host(LocalBackend())
    for read_only, expected in ((True, "real\n"), (False, "hijacked\n")):
        token = current_step.set(Step("c", "check", "local", read_only))
        try:
            assert host.run(["cat", str(tmp_path / "real")]).stdout == expected
            assert host.run("cat %s", str(tmp_path / "real")).stdout == expected
            path = host.run("printenv PATH").stdout.strip()
        finally:
            current_step.reset(token)
        assert (path == SAFE_PATH) is read_only  # actions keep the operator's PATH


def test_a_host_keeps_no_collaborator_a_caller_could_reach_or_replace():
    from runbook.steps import CommandRecord

    def policy(display, argv, step):
        return None

    def on_record(record: CommandRecord) -> CommandRecord:
        return record

    backend = LocalBackend()
    host = Host(backend, name="web1", policy=policy, on_record=on_record)
    assert (host.name, host.uri) == ("web1", backend.uri)
    reachable = [getattr(host, name, None) for name in dir(host)]
    reachable += [getattr(value, "__self__", None) for value in reachable]
    for value in list(reachable):
        function = getattr(value, "__func__", value)
        reachable += [cell.cell_contents for cell in getattr(function, "__closure__", None) or ()]
    assert not any(value is backend or value is policy or value is on_record for value in reachable)
    assert not hasattr(host, "__dict__")
    with pytest.raises(AttributeError):
        host.backend = LocalBackend()  # type: ignore[attr-defined]
