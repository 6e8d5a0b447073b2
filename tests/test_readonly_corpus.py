"""Read-only mode end to end: real mutation attempts from check code all end ``blocked``.

Each attempt is one check of a generated runbook, run through the CLI in this
very process, so a mutation that got through would change this machine (or
this pytest process) for real. After the run the scratch folder, a sleeping
victim process, the environment and the working directory must be untouched.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

#: Shell commands a check sends through ``host.run``: each would change something.
SHELL_ATTEMPTS = [
    "rm -f {s}/file",
    "rm -rf {s}",
    "touch {s}/new",
    "echo x > {s}/file",
    "echo x >> {s}/file",
    "cat /etc/hostname >| {s}/file",
    "ps aux &> {s}/file",
    "ps aux | tee {s}/file",
    "ps aux |& tee -a {s}/file",
    "sed -i s/keep/lost/ {s}/file",
    "sed -n 's/keep/lost/w {s}/out' {s}/file",
    "find {s} -delete",
    "find {s} -name file -exec rm {{}} ;",
    "find {s} -fprint {s}/list",
    "dd if=/dev/zero of={s}/file count=1",
    "cp /etc/hostname {s}/copy",
    "mv {s}/file {s}/moved",
    "chmod 777 {s}/file",
    "ln -s /etc/passwd {s}/link",
    "mkdir {s}/dir",
    "truncate -s 0 {s}/file",
    "kill -9 {pid}",
    "pkill -f sleeper",
    "killall sleep",
    "renice -n 19 -p {pid}",
    "systemctl restart cron",
    "sh -c 'rm -f {s}/file'",
    'bash -c "touch {s}/new"',
    "cat $(rm -f {s}/file)",
    "cat `touch {s}/new`",
    "cat <(rm -f {s}/file)",
    "ls {s}\nrm -f {s}/file",
    "ls {s}; rm -f {s}/file",
    "ls {s} && rm -f {s}/file",
    "false || rm -f {s}/file",
    "(rm -f {s}/file)",
    "echo {s}/file | xargs rm -f",
    "env rm -f {s}/file",
    "nice rm -f {s}/file",
    "timeout 5 rm -f {s}/file",
    "sudo cat /etc/shadow",
    "awk 'BEGIN {{ system(\"rm -f {s}/file\") }}'",
    "awk '{{ print > \"{s}/out\" }}' /etc/hostname",
    "sort -o {s}/file /etc/hostname",
    "python3 -c 'import os; os.remove(\"{s}/file\")'",
    "perl -e 'unlink \"{s}/file\"'",
    "git -c core.pager='rm -f {s}/file' log",
    "kubectl delete pod web-1",
    "docker rm -f web",
    "date -s '2020-01-01'",
    "sysctl -w vm.swappiness=1",
    "crontab -r",
]

#: Python statements in a check's body: each would change something without host.run.
PYTHON_ATTEMPTS = [
    "open(S + '/file', 'w').write('lost')",
    "open(S + '/file', 'a').write('lost')",
    "open(S + '/new', 'x')",
    "Path(S, 'file').write_text('lost')",
    "os.remove(S + '/file')",
    "os.unlink(S + '/file')",
    "os.rename(S + '/file', S + '/moved')",
    "os.replace(S + '/file', S + '/moved')",
    "shutil.rmtree(S)",
    "shutil.copy('/etc/hostname', S + '/copy')",
    "shutil.move(S + '/file', S + '/moved')",
    "os.mkdir(S + '/dir')",
    "os.makedirs(S + '/a/b')",
    "os.rmdir(S + '/empty')",
    "os.chmod(S + '/file', 0o777)",
    "os.utime(S + '/file', (0, 0))",
    "os.symlink('/etc/passwd', S + '/link')",
    "os.link(S + '/file', S + '/hard')",
    "os.truncate(S + '/file', 0)",
    "os.mkfifo(S + '/fifo')",
    "os.open(S + '/file', os.O_WRONLY | os.O_TRUNC)",
    "tempfile.mkstemp(dir=S)",
    "sqlite3.connect(S + '/db.sqlite')",
    "subprocess.run(['rm', '-f', S + '/file'])",
    "subprocess.Popen(['touch', S + '/new']).wait()",
    "os.system('rm -f ' + S + '/file')",
    "os.popen('rm -f ' + S + '/file').read()",
    "os.posix_spawn('/bin/rm', ['rm', '-f', S + '/file'], dict(os.environ))",
    "os.kill(PID, signal.SIGKILL)",
    "os.killpg(os.getpgid(PID), signal.SIGKILL)",
    "signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)",
    "os.environ['PATH'] = '/nowhere'",
    "os.chdir('/')",
    "os.nice(5)",
    "resource.setrlimit(resource.RLIMIT_NOFILE, resource.getrlimit(resource.RLIMIT_NOFILE))",
    "ctypes.CDLL(None)",
    "os.write(OPEN_FD, b'lost')",
    "_posixsubprocess.fork_exec",  # marker: replaced by a real call below
    "run_in_thread(lambda: open(S + '/file', 'w').write('lost'))",
    "run_in_pool(lambda: os.remove(S + '/file'))",
    "swallow(lambda: os.remove(S + '/file'))",
]

FORK_EXEC = (
    "_posixsubprocess.fork_exec(['/bin/rm'], [b'/bin/rm'], True, (), None, None, "
    "-1, -1, -1, -1, -1, -1, -1, -1, False, False, False, None, None, None, -1, None, False)"
)

PRELUDE = '''
"""Mutation attempts."""
import concurrent.futures
import ctypes
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading
import _posixsubprocess
from pathlib import Path

from runbook import check, fixture, hypothesis

S = {scratch!r}
PID = {pid}
h = hypothesis("h", "The machine stays as it was")


@fixture(scope="run")
def open_fd():
    # Opened by set-up code, outside any check: writing through it must still be refused.
    fd = os.open(S + "/file", os.O_WRONLY)
    yield fd
    os.close(fd)


def run_in_thread(work):
    errors = []
    thread = threading.Thread(target=lambda: _keep(errors, work))
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def _keep(errors, work):
    try:
        work()
    except BaseException as exc:
        errors.append(exc)


def run_in_pool(work):
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        pool.submit(work).result()


def swallow(work):
    try:
        work()
    except Exception:
        pass  # the check hides the refusal; it is recorded all the same
'''


def _shell_check(index: int, command: str) -> str:
    return f"\n@check(tests=h)\ndef shell_{index:02d}(host):\n    host.run({command!r})\n"


def _python_check(index: int, statement: str) -> str:
    if statement == "_posixsubprocess.fork_exec":
        statement = FORK_EXEC
    statement = statement.replace("OPEN_FD", "open_fd")
    argument = "open_fd" if "open_fd" in statement else "host"
    return f"\n@check(tests=h)\ndef python_{index:02d}({argument}):\n    {statement}\n"


def _snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {
        str(path.relative_to(folder)): (
            path.lstat().st_mode,
            path.read_bytes() if path.is_file() else b"",
        )
        for path in sorted(folder.rglob("*"))
    }


@pytest.fixture
def victim():
    """A process that read-only checks must not be able to signal."""
    process = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True
    )
    yield process
    process.kill()
    process.wait()


def test_every_mutation_attempt_is_blocked_and_nothing_changes(project, tmp_path, victim):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "file").write_text("keep me")
    (scratch / "empty").mkdir()
    shell = [c.format(s=scratch, pid=victim.pid) for c in SHELL_ATTEMPTS]
    source = PRELUDE.format(scratch=str(scratch), pid=victim.pid)
    source += "".join(_shell_check(i, c) for i, c in enumerate(shell))
    source += "".join(_python_check(i, s) for i, s in enumerate(PYTHON_ATTEMPTS))
    (project.runbooks / "mutations.py").write_text(textwrap.dedent(source))
    before = _snapshot(scratch)
    environ, cwd = dict(os.environ), os.getcwd()

    result, data = project.run_json("mutations")

    outcomes = {check["id"]: check["outcome"] for check in data["checks"]}
    assert len(outcomes) == len(SHELL_ATTEMPTS) + len(PYTHON_ATTEMPTS) >= 90
    not_blocked = {
        check["id"]: (check["outcome"], check["message"])
        for check in data["checks"]
        if check["outcome"] != "blocked"
    }
    assert not not_blocked, "\n".join(f"{k}: {v}" for k, v in not_blocked.items())
    assert _snapshot(scratch) == before
    assert victim.poll() is None, "a check signalled the victim process"
    assert dict(os.environ) == environ
    assert os.getcwd() == cwd
    assert data["hypotheses"][0]["status"] == "inconclusive"
    assert result.exit_code == 1


def test_commands_from_threads_a_check_starts_are_classified(project, tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "file").write_text("keep me")
    project.runbook(
        "threaded",
        f'''
        """Threaded."""
        import concurrent.futures
        import threading

        from runbook import check, hypothesis

        h = hypothesis("h", "H")

        @check(tests=h)
        def from_a_thread(host):
            thread = threading.Thread(target=host.run, args=("rm -f {scratch}/file",))
            thread.start()
            thread.join()

        @check(tests=h)
        def from_a_pool(host):
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                pool.submit(host.run, "rm -f {scratch}/file").result()

        @check(tests=h)
        def caught(host):
            try:
                host.run("rm -f {scratch}/file")
            except Exception:
                pass
        ''',
    )
    _, data = project.run_json("threaded")
    assert [c["outcome"] for c in data["checks"]] == ["blocked"] * 3
    assert (scratch / "file").read_text() == "keep me"
    assert [c["check"] for c in data["commands"] if c["blocked"]] == [
        "from_a_thread",
        "from_a_pool",
        "caught",
    ]
