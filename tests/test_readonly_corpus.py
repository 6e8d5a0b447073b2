"""Read-only mode end to end: real mutation attempts from check code all end ``blocked``.

Each attempt is one check of a generated runbook, run through the CLI in this
very process, so a mutation that got through would change this machine (or
this pytest process) for real. After the run the scratch folder, a sleeping
victim process, the environment and the working directory must be untouched.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from runbook.safety.guard import Refused
from runbook.safety.guard import check_command

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
    # xargs -I: the replacement string is a word only known at run time, even in a
    # wrapper's command word.
    "printf rm | xargs -I cat env cat {s}/file",
    "printf rm | xargs -I cat cat {s}/file",
    "printf rm | xargs --replace=cat timeout 5 cat {s}/file",
    # xargs --process-slot-var sets a variable (here PATH) for the command it runs.
    "printf x | xargs --process-slot-var=PATH cat",
    "printf x | xargs --process-slot-var PATH cat",
    # awk: after `exit` a / starts a regex; read as a division, `#` would hide the rest.
    'awk \'BEGIN {{ if (0) exit /#/; print "x" > "{s}/out" }}\'',
    'awk \'BEGIN {{ if (0) exit /#/; print "x" | "rm -f {s}/file" }}\'',
    'awk \'BEGIN {{ if (0) return /#/; print "x" > "{s}/out" }}\'',
    # kubectl runs the exec credential plugin of the kubeconfig it is given.
    "kubectl --kubeconfig {kube} get pods --request-timeout=2s",
    "kubectl get pods --kubeconfig={kube} --request-timeout=2s",
    # Denial of service: bashlex allocated without bound on these.
    "}}@'@case${{%\\`ip'",
    "}}@'@case${{%`ip'",
    "}}'${{'",
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


KUBECONFIG = """
apiVersion: v1
kind: Config
clusters:
- cluster: {{server: "https://127.0.0.1:1"}}
  name: c
contexts:
- context: {{cluster: c, user: u}}
  name: c
current-context: c
users:
- name: u
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: /bin/rm
      args: ["-f", "{scratch}/file"]
      interactiveMode: Never
"""


def _plant_programs(root: Path, scratch: Path) -> Path:
    """Leave what an attacker's runbook folder could ship: a ``0/cat`` and a kubeconfig.

    ``0/cat`` runs when a command is looked up with ``PATH=0``; the kubeconfig's exec
    credential plugin runs when kubectl reads it.
    """
    program = root / "0" / "cat"
    program.parent.mkdir()
    program.write_text(f"#!/bin/sh\n/bin/rm -f {scratch}/file\n")
    program.chmod(0o755)
    kube = root / "kubeconfig.yaml"
    kube.write_text(KUBECONFIG.format(scratch=scratch))
    return kube


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
    kube = _plant_programs(project.root, scratch)
    shell = [c.format(s=scratch, pid=victim.pid, kube=kube) for c in SHELL_ATTEMPTS]
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


#: Commands the guard must refuse, with a fragment of the reason it must give. Each
#: would change state, or the guard cannot tell what it does (it fails closed).
SHELL_REFUSED = [
    # xargs -I/-i/--replace: the replacement is only known at run time, wherever it lands.
    ("printf rm | xargs -I cat env cat /tmp/f", "xargs -I replacement"),
    ("xargs -I cat cat /tmp/f", "xargs -I replacement"),
    ("xargs -IX X /tmp/f", "xargs -I replacement"),
    ("xargs -i {} /tmp/f", "xargs -I replacement"),
    ("xargs --replace=@ @ /tmp/f", "xargs -I replacement"),
    ("xargs --replace {} /tmp/f", "xargs -I replacement"),
    ("xargs -I X env X=1 cat /tmp/f", "xargs -I replacement"),
    ("xargs -I X sort X /etc/hostname", "xargs adds arguments to sort"),
    ("xargs -I X awk X /etc/hostname", "xargs adds arguments to awk"),
    ("xargs -I X nice -n X cat /tmp/f", "only known after expansion"),
    ("xargs -I X timeout X cat /tmp/f", "only known after"),
    ("xargs -I X env -S X", "only known after"),
    # xargs --process-slot-var sets a variable for the command it runs.
    ("xargs --process-slot-var=PATH cat /etc/hostname", "setting PATH"),
    ("xargs --process-slot-var PATH cat", "setting PATH"),
    ("xargs --process-slot=LD_PRELOAD cat", "setting LD_PRELOAD"),
    ("xargs -P2 --process-slot-var=PATH env cat", "setting PATH"),
    # Options that load configuration or code from a file, or run another program.
    ("kubectl --kubeconfig /tmp/k get pods", "--kubeconfig"),
    ("kubectl --kubeconfig=/tmp/k get pods", "--kubeconfig"),
    ("kubectl get pods --kubeconfig /tmp/k", "--kubeconfig"),
    ("kubectl logs web --kubeconfig=/tmp/k", "--kubeconfig"),
    ("kubectl get pods --kubec=/tmp/k", "--kubeconfig"),
    ("kubectl --cache-dir=/tmp/c get pods", "--cache-dir"),
    ("kubectl get -k /tmp/app", "kustomization"),
    ("kubectl get --kustomize=/tmp/app", "kustomization"),
    ("KUBECONFIG=/tmp/k kubectl get pods", "setting KUBECONFIG"),
    ("env KUBECONFIG=/tmp/k kubectl get pods", "setting KUBECONFIG"),
    ("docker --config /tmp/d ps", "docker --config"),
    ("docker --config=/tmp/d ps", "docker --config"),
    ("docker -H ssh://h ps", "runs ssh"),
    ("docker --host=ssh://h ps", "runs ssh"),
    ("DOCKER_CONFIG=/tmp/d docker ps", "setting DOCKER_CONFIG"),
    ("systemctl -H root@h status cron", "runs ssh"),
    ("systemctl --host=h status cron", "runs ssh"),
    ("systemctl --image=/tmp/i.raw status cron", "mounts"),
    ("journalctl --image=/tmp/i.raw", "mounts"),
    ("journalctl --image /tmp/i.raw", "mounts"),
    ("SYSTEMD_PAGER=/tmp/x systemctl status", "setting SYSTEMD_PAGER"),
    ("LESSOPEN='|/tmp/x %s' journalctl", "setting LESSOPEN"),
    ("env -iS'cat /etc/hostname'", "env -S"),
    ("env --split-string='cat /etc/hostname'", "env -S"),
    ("git -c core.pager=/tmp/x log", "'git' is not on the read-only allowlist"),
    ("GIT_EXTERNAL_DIFF=/tmp/x git diff", "setting GIT_EXTERNAL_DIFF"),
    ("less /etc/hostname", "'less' is not on the read-only allowlist"),
    ("find / -fls /tmp/out", "find -fls"),
    ("find / -fprintf /tmp/out %p", "find -fprintf"),
    ("awk -f /tmp/prog.awk /etc/hostname", "awk -f"),
    ("AWKPATH=/tmp awk -f x", "setting AWKPATH"),
    # awk: what a / after a word means decides where the program's code is.
    ("awk 'BEGIN { exit /#/; print > \"/tmp/o\" }'", "print > FILE"),
    ("awk 'BEGIN { exit /#/; print | \"sh\" }'", "pipes"),
    ("awk 'BEGIN { return /#/; print > \"/tmp/o\" }'", "print > FILE"),
    ("awk 'BEGIN { printf /#/; print > \"/tmp/o\" }'", "print > FILE"),
    ("awk '{ x = length /#/; print > \"/tmp/o\" }'", "a division or a regex"),
    ("awk '{ getline /#/; print > \"/tmp/o\" }'", "a division or a regex"),
    ("awk '{ next /#/ } { print > \"/tmp/o\" }'", "a division or a regex"),
    ("awk '{ print $1 } # print > \"/tmp/o\"'", "comment"),
    ("awk 'BEGIN { x = 1 } #'", "comment"),
    ("sed -n '1p\\' /etc/hostname", "missing address delimiter"),  # found by the fuzz test
    # ulimit with a value sets a limit.
    ("ulimit -n 10", "sets a limit"),
    ("ulimit -Sn 1024", "sets a limit"),
    ("ulimit -c unlimited", "sets a limit"),
    ("ulimit 10", "sets a limit"),
    ("ulimit -n -- 10", "sets a limit"),
    ("ulimit -n10", "sets a limit"),
    ("ulimit -n $N", "could expand"),
    # Denial of service: bashlex loops without bound on these; refused before it runs.
    ("}@'@case${%\\`ip'", "${"),
    ("}@'@case${%`ip'", "${"),
    ("cat '${x'", "${"),
    ('cat "${x"', "${"),
    ("cat ${x", "${"),
    ("echo ${%`", "${"),
    ("cat " + "/x" * 3000, "too long"),
    ("case x in x) rm -f /tmp/f;; esac", "case"),
    ("select x in a; do rm $x; done", "select"),
    ("for x in a; do rm $x; done", "for"),
    ("cat <<EOF", "here-document"),
    ("cat <<-EOF", "here-document"),
    ("echo `id`", "backtick"),
    ('cat "/proc/`pgrep sshd`/status"', "backtick"),
    ("echo $((1+2))", "arithmetic"),
    ("echo $[1+2]", "arithmetic"),
]

#: Commands that only read and must stay allowed (some were refused by mistake).
SHELL_ALLOWED = [
    "lscpu",
    "lscpu -e",
    "lscpu -J",
    "ulimit -n",
    "ulimit -a",
    "ulimit -Hn",
    "ulimit -S -n",
    "ulimit",
    "pgrep nginx | xargs -I % cat /proc/%/status",
    "pgrep nginx | xargs -I{} cat /proc/{}/limits",
    "pgrep nginx | xargs --replace=PID cat /proc/PID/cmdline",
    "pgrep nginx | xargs -n1 -P2 --process-slot-var=LC_SLOT echo",
    "xargs -a /tmp/list cat",
    "awk '{ x = $1 / 2; print x }' /proc/loadavg",
    "awk 'NR > 1 { s += $2 / 1024 } END { print s }' /proc/meminfo",
    "awk '/MemTotal/ { print $2 / 1024 }' /proc/meminfo",
    "awk '$1 ~ /^#/ { next } { print }' /etc/fstab",
    "awk '{ print \"#\" $1 }' /etc/hostname",
    "awk 'BEGIN { exit }'",
    "awk 'END { exit NR > 0 }' /etc/hostname",
    "awk '{ n = length($0) / 2; print n }' /etc/hostname",
    "awk -F: '$3 >= 1000 { print $1 }' /etc/passwd",
    "kubectl get pods -n web -o wide",
    "kubectl --context prod get pods",
    "kubectl logs deploy/web --since=1h",
    "docker ps -a",
    "docker -H unix:///var/run/docker.sock ps",
    "systemctl status nginx --no-pager",
    "journalctl -u nginx -n 50 --no-pager",
    'cat "/var/log/${name}.log"',
    "echo '}'",
    "echo '{ x }'",
    "grep -w case /etc/services",
    "grep -E 'for|while|select' /etc/services",
    'cat "/proc/$(pgrep -o sshd)/status"',
    "du -sh /var/* 2>/dev/null | sort -h | tail",
]


@pytest.mark.parametrize(("command", "reason"), SHELL_REFUSED)
def test_command_is_refused_with_its_reason(command, reason):
    with pytest.raises(Refused) as info:
        check_command(command, None)
    assert reason in str(info.value)


@pytest.mark.parametrize("command", SHELL_ALLOWED)
def test_read_only_command_stays_allowed(command):
    check_command(command, None)


def test_shell_tables_have_no_duplicates_or_contradictions():
    refused = [command for command, _ in SHELL_REFUSED]
    assert len(set(refused)) == len(refused)
    assert len(set(SHELL_ALLOWED)) == len(SHELL_ALLOWED)
    assert not set(refused) & set(SHELL_ALLOWED)


DOS_RUNBOOK = '''
"""Commands that made the shell parser allocate without bound."""
from runbook import check, hypothesis

h = hypothesis("h", "H")


@check(tests=h)
def first(host):
    host.run("}@'@case${%\\\\`ip'")


@check(tests=h)
def second(host):
    host.run("}@'@case${%`ip'")
'''


def _capped(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


@pytest.mark.parametrize("args", [("lint", "dos"), ("run", "dos", "--dry-run")])
def test_lint_and_dry_run_refuse_parser_bombs_quickly(project, args):
    """Static scans judge these commands too: a refusal, not an exhausted machine."""
    project.runbook("dos", DOS_RUNBOOK)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "runbook", *args],
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: _capped(1 << 30),
    )
    assert time.monotonic() - started < 20
    assert "MemoryError" not in result.stdout + result.stderr
    # Both report the two commands as refused (a lint finding), and exit 1 for it.
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.count("parameter expansion") == 2, result.stdout
