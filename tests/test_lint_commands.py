"""The commands lint can see in a check's source, and how it shows them: a table."""

from __future__ import annotations

import importlib.util
import textwrap

import pytest

from runbook.safety.commandscan import PLACEHOLDER
from runbook.safety.commandscan import CommandScanner

P = PLACEHOLDER


@pytest.mark.parametrize(
    ("call", "command", "argv", "shown"),
    [
        ('host.run("uptime")', "uptime", None, "uptime"),
        ('host.run("tail -n 5 %s", path)', f"tail -n 5 {P}", None, "tail -n 5 %s"),
        ('host.run("ps -o %cpu")', "ps -o %cpu", None, "ps -o %cpu"),
        ('host.run("echo 100%% %s", path)', f"echo 100% {P}", None, "echo 100%% %s"),
        ('host.run(["ps", "-p", path])', f"ps -p {P}", ("ps", "-p", P), "ps -p ..."),
        ('host.run(("df", "-P"))', "df -P", ("df", "-P"), "df -P"),
        ('host.run(f"rm -rf {path}")', f"rm -rf {P}", None, "rm -rf {...}"),
        ("host.run(COMMAND)", "cat /proc/loadavg", None, "cat /proc/loadavg"),
        ("self.host.run('free -m')", "free -m", None, "free -m"),
        ("web_host.run('free -m')", "free -m", None, "free -m"),
        ("host.run(path)", None, None, None),
        ("host.run([path, '-x'])", None, None, None),
        ("host.run([*argv, 'x'])", None, None, None),
        ("subprocess.run(['rm', '-rf', '/'])", None, None, None),
        ("client.run('rm -rf /')", None, None, None),
    ],
)
def test_commands_seen_in_the_source(tmp_path, call, command, argv, shown):
    module = load(
        tmp_path,
        f"""
        COMMAND = "cat /proc/loadavg"

        def probe(host, path, argv, self, web_host, subprocess, client):
            {call}
        """,
    )
    found = CommandScanner().commands(module.probe)
    if command is None:
        assert found == []
        return
    [seen] = found
    assert (seen.command, seen.argv, seen.shown) == (command, argv, shown)
    assert (seen.lineno, seen.function) == (4, "probe")


def test_helpers_are_followed_once_and_actions_never(tmp_path):
    module = load(
        tmp_path,
        """
        from runbook import action

        def top(host):
            return host.run("top -b -n 1")

        def both(host):
            top(host)
            return top(host)

        @action
        def restart(host):
            host.run("systemctl restart app")

        def probe(host):
            both(host)
            restart(host)
            host.run("uptime")
        """,
    )
    found = CommandScanner().commands(module.probe)
    assert [(c.function, c.command, c.lineno) for c in found] == [
        ("probe", "uptime", 17),
        ("top", "top -b -n 1", 4),
    ]


def load(tmp_path, source):
    path = tmp_path / "probe_module.py"
    path.write_text(textwrap.dedent(source).lstrip("\n"), encoding="utf-8")
    spec = importlib.util.spec_from_file_location(f"probe_{tmp_path.name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
