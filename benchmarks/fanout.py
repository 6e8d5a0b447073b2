"""Fan-out and memory: N hosts x M read-only commands, runbook against its peers.

Private OpenSSH sshds listen on 127.0.0.2 .. 127.0.0.(N+1), 16 addresses each
(sshd's limit), so every peer reaches N distinct hosts over real SSH with the
same key, known_hosts and login user. Each peer runs in its own process; the
wall time and the peak RSS of its largest process are measured.

Peers (``pip install '.[bench]'``; a missing one is skipped with a line saying
so): paramiko with a thread pool and TCP_NODELAY, Fabric's ThreadingGroup,
parallel-ssh's ParallelSSHClient, and ansible-playbook with one ``command``
task per command and ``forks`` = N. Ansible takes minutes at 50 hosts, so it
runs once, after the alternated rounds of the others.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import USER
from benchmarks.common import Fleet
from benchmarks.common import Row
from benchmarks.common import Settings
from benchmarks.common import Stat
from benchmarks.common import alternate
from benchmarks.common import fleet
from benchmarks.common import has_module
from benchmarks.common import progress
from benchmarks.common import run_timed
from benchmarks.common import skipped

NAMES = ("fan-out", "memory")
TITLE = "fan-out"
WHY = (
    "runbook does more per command than a bare thread pool (the read-only policy, the audit "
    "log, redaction, a worker per host that enforces check timeouts) and starts slower "
    "(click, pluggy, plugins, the report)"
)
WHY_MEMORY = (
    "paramiko with cryptography is most of it (importing paramiko alone peaks at about 40 "
    "MiB here, with Fabric's invoke installed next to it), while parallel-ssh drives "
    "libssh2, in C; runbook adds click, pluggy, jinja2, its guard and plugins, and the "
    "results of every check"
)
#: Runs of ansible-playbook (minutes each at 50 hosts), outside the alternated rounds.
ANSIBLE_RUNS = 1

COMMANDS = [
    "cat /proc/loadavg",
    "uname -r",
    "id -u",
    "df -P /",
    "head -n 5 /proc/meminfo",
    "ps -e -o pid=",
    "hostname",
    "cat /proc/uptime",
    "nproc",
    "date +%s",
]

#: Every peer script starts with its arguments: hosts, port, key, known_hosts, commands.
ARGUMENTS = """
import sys
targets = [t.rsplit(":", 1) for t in sys.argv[1].split(",")]
hosts, ports = [h for h, _ in targets], [int(p) for _, p in targets]
key, known, commands = sys.argv[2], sys.argv[3], sys.argv[4].split("|")
"""

PARAMIKO = """
import socket, concurrent.futures, paramiko
def work(target):
    host, port = target
    sock = socket.create_connection((host, port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client = paramiko.SSHClient()
    client.load_host_keys(known)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(host, port, username="{user}", key_filename=key, sock=sock,
                   look_for_keys=False, allow_agent=False)
    for command in commands:
        _, out, _ = client.exec_command(command)
        out.read()
        out.channel.recv_exit_status()
    client.close()
with concurrent.futures.ThreadPoolExecutor(len(hosts)) as pool:
    list(pool.map(work, zip(hosts, ports)))
"""

FABRIC = """
import sys
from fabric import ThreadingGroup
options = {{"key_filename": key, "look_for_keys": False, "allow_agent": False}}
group = ThreadingGroup(*sys.argv[1].split(","), user="{user}", connect_kwargs=options)
for connection in group:
    connection.client.load_host_keys(known)
for command in commands:
    group.run(command, hide=True)
group.close()
"""

PSSH = """
import sys
from pssh.clients import ParallelSSHClient
from pssh.config import HostConfig
client = ParallelSSHClient(
    hosts, user="{user}", pkey=key, pool_size=len(hosts), num_retries=1,
    host_config=[HostConfig(port=p) for p in ports],
)
for command in commands:
    output = client.run_command(command)
    client.join(output)
    for host_output in output:
        list(host_output.stdout)
"""


def write_runbook(hosts: Fleet, commands: list[str]) -> None:
    """A runbook with one check per command."""
    checks = "".join(
        f"\n\n@check(tests=h)\ndef command_{i:02d}(host):\n    host.run({c!r})\n"
        for i, c in enumerate(commands)
    )
    hosts.write_runbook(
        "bench_fanout",
        '"""Bench fan-out."""\nfrom runbook import check, hypothesis\n\n'
        'h = hypothesis("h", "Nothing")' + checks,
    )


def write_playbook(hosts: Fleet, commands: list[str]) -> tuple[Path, Path]:
    """An inventory of the fleet and a playbook of one ``command`` task per command."""
    inventory = hosts.folder / "inventory.ini"
    inventory.write_text(
        "[bench]\n"
        + "".join(f"{h} ansible_port={p} ansible_user={USER}\n" for h, p in hosts.targets)
        + f"\n[bench:vars]\nansible_ssh_private_key_file={hosts.key}\n"
        + "ansible_python_interpreter=/usr/bin/python3\n"
        + f"ansible_ssh_common_args='-o UserKnownHostsFile={hosts.known_hosts} "
        + "-o StrictHostKeyChecking=yes'\n"
    )
    tasks = "".join(f"    - command: {c}\n      changed_when: false\n" for c in commands)
    playbook = hosts.folder / "playbook.yml"
    playbook.write_text(f"- hosts: bench\n  gather_facts: false\n  tasks:\n{tasks}")
    return inventory, playbook


def peers(hosts: Fleet, commands: list[str]) -> dict[str, list[str]]:
    """The argv of every side that is installed, runbook first."""
    specs = ",".join(f"{h}:{p}" for h, p in hosts.targets)
    args = [specs, str(hosts.key), str(hosts.known_hosts), "|".join(commands)]
    sides = {
        "runbook": [
            sys.executable,
            "-m",
            "runbook",
            "run",
            "bench-fanout",
            "-q",
            "-H",
            specs,
            "--forks",
            str(len(hosts.targets)),
        ],
        "paramiko+threads": [sys.executable, "-c", ARGUMENTS + PARAMIKO.format(user=USER), *args],
    }
    for name, module, script in (("parallel-ssh", "pssh", PSSH), ("fabric", "fabric", FABRIC)):
        if has_module(module):
            sides[name] = [sys.executable, "-c", ARGUMENTS + script.format(user=USER), *args]
        else:
            skipped(TITLE, name, f"{module} is not installed (pip install '.[bench]')")
    return sides


def run(settings: Settings) -> list[Row]:
    """Alternate runbook and the Python peers; run ansible once; compare wall and RSS."""
    count = settings.size(50, 2)
    commands = (COMMANDS * (settings.size(10, 2) // len(COMMANDS) + 1))[: settings.size(10, 2)]
    with fleet(count) as hosts:
        write_runbook(hosts, commands)
        inventory, playbook = write_playbook(hosts, commands)
        sides = peers(hosts, commands)
        env = {**hosts.env, "ANSIBLE_HOST_KEY_CHECKING": "True"}
        measured = alternate(
            {name: _timer(argv, hosts.folder, env) for name, argv in sides.items()}, settings
        )
        search = f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin"
        ansible = shutil.which("ansible-playbook", path=search)
        if ansible is None:
            skipped(TITLE, "ansible", "ansible-playbook is not installed (pip install '.[bench]')")
        else:
            argv = [ansible, "-i", str(inventory), "-f", str(count), str(playbook)]
            measured["ansible"] = [run_timed(argv, hosts.folder, env) for _ in range(ANSIBLE_RUNS)]
    walls = {name: Stat.of(w for w, _ in runs) for name, runs in measured.items()}
    rss = {name: Stat.of(r for _, r in runs) for name, runs in measured.items()}
    for name in walls:
        progress(f"{TITLE}: {name} {walls[name].median:.2f} s, {rss[name].high:.0f} MiB")
    size = f"{count} hosts x {len(commands)} commands"
    rows = [
        Row(
            TITLE,
            f"runbook run, {size}",
            name,
            "s",
            walls["runbook"],
            walls[name],
            target=1.0,
            strict=True,
            why=WHY,
        )
        for name in sorted(walls, key=lambda n: walls[n].median)
        if name != "runbook"
    ]
    lowest = min((n for n in rss if n != "runbook"), key=lambda n: rss[n].median)
    rows.append(
        Row(
            "memory",
            f"peak RSS, {size}",
            f"lowest peer: {lowest}",
            "MiB",
            rss["runbook"],
            rss[lowest],
            target=1.0,
            why=WHY_MEMORY,
        )
    )
    return rows


def _timer(argv: list[str], cwd: Path, env: dict[str, str]) -> Callable[[], tuple[float, float]]:
    return lambda: run_timed(argv, cwd, env, ok=(0, 1))  # runbook exits 1 when it finds something
