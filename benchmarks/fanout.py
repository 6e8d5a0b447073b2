"""Fan-out: N hosts x M read-only commands, runbook against its peers, side by side.

Private OpenSSH sshds listen on 127.0.0.2 .. 127.0.0.(N+1), 16 addresses each (sshd's
limit), started by the code the SSH tests use, so every peer reaches N distinct hosts
over real SSH with the same key, known_hosts and login user. Each peer runs in its own process; the
wall time and peak RSS of that process are measured, medians of ``--repeat``
runs, and printed with runbook's ratio to each peer (below 1.0: runbook is faster).

Peers (installed with ``pip install -e '.[bench]'``, skipped when missing):
paramiko with a thread pool and TCP_NODELAY, Fabric's ThreadingGroup,
parallel-ssh's ParallelSSHClient, and ansible-playbook with one ``command`` task
per command and ``forks`` = N.

    python benchmarks/fanout.py --hosts 50 --commands 10 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from sshd import USER  # noqa: E402  (the SSH tests' real-sshd helpers)
from sshd import keygen  # noqa: E402
from sshd import start_sshd  # noqa: E402

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


def write_runbook(folder: Path, commands: list[str]) -> None:
    """A runbook with one check per command."""
    checks = "".join(
        f"\n\n@check(tests=h)\ndef command_{i:02d}(host):\n    host.run({c!r})\n"
        for i, c in enumerate(commands)
    )
    (folder / "runbooks").mkdir()
    (folder / "runbooks" / "bench_fanout.py").write_text(
        '"""Bench fan-out."""\nfrom runbook import check, hypothesis\n\n'
        'h = hypothesis("h", "Nothing")' + checks
    )


def write_playbook(
    folder: Path, commands: list[str], targets: list[tuple[str, int]], key: Path, known: Path
) -> tuple[Path, Path]:
    inventory = folder / "inventory.ini"
    inventory.write_text(
        "[bench]\n"
        + "".join(f"{h} ansible_port={p} ansible_user={USER}\n" for h, p in targets)
        + f"\n[bench:vars]\nansible_ssh_private_key_file={key}\n"
        + "ansible_python_interpreter=/usr/bin/python3\n"
        + f"ansible_ssh_common_args='-o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes'\n"
    )
    tasks = "".join(f"    - command: {c}\n      changed_when: false\n" for c in commands)
    playbook = folder / "playbook.yml"
    playbook.write_text(f"- hosts: bench\n  gather_facts: false\n  tasks:\n{tasks}")
    return inventory, playbook


def measure(
    argv: list[str], cwd: Path, env: dict[str, str], ok: tuple[int, ...] = (0,)
) -> tuple[float, float]:
    """Run one peer; return (wall seconds, peak RSS in MiB of its largest process)."""
    with tempfile.NamedTemporaryFile("r") as rss_file:
        started = time.perf_counter()
        done = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", rss_file.name, *argv],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - started
        rss_kib = float(rss_file.read().split()[-1])
    if done.returncode not in ok:
        raise RuntimeError(f"{argv[0]} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return wall, rss_kib / 1024


def peer_in_fresh_process(script: str) -> list[str]:
    """Run a peer script under the same interpreter, isolated so its RSS is its own."""
    return [sys.executable, "-c", ARGUMENTS + script]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--commands", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--peers", help="comma-separated peers to run (default: all found)")
    options = parser.parse_args()
    commands = (COMMANDS * ((options.commands // len(COMMANDS)) + 1))[: options.commands]
    hosts = [f"127.0.0.{2 + i}" for i in range(options.hosts)]
    folder = Path(tempfile.mkdtemp(prefix="runbook-bench-"))
    key = keygen(folder / "id_bench")
    servers = [start_sshd(tuple(hosts[i : i + 16]), [key]) for i in range(0, len(hosts), 16)]
    targets = [(h, server.port) for server in servers for h in server.addresses]
    try:
        known = folder / "known_hosts"
        known.write_text("".join(s.host_key_line(h) + "\n" for s in servers for h in s.addresses))
        (folder / "ssh_config").write_text(f"Host *\n  User {USER}\n  IdentityFile {key}\n")
        (folder / "runbook.toml").write_text(
            f'ssh_config = "{folder / "ssh_config"}"\nknown_hosts = "{known}"\n'
            f'report_dir = "{folder / "reports"}"\n'
        )
        write_runbook(folder, commands)
        inventory, playbook = write_playbook(folder, commands, targets, key, known)
        env = {
            **os.environ,
            "RUNBOOK_AUDIT_LOG": str(folder / "audit.jsonl"),
            "ANSIBLE_HOST_KEY_CHECKING": "True",
        }
        specs = ",".join(f"{h}:{p}" for h, p in targets)
        args = [specs, str(key), str(known), "|".join(commands)]
        peers: dict[str, list[str]] = {
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
                str(len(hosts)),
            ],
            "paramiko+threads": [*peer_in_fresh_process(PARAMIKO.format(user=USER)), *args],
        }
        for name, module, script in (("fabric", "fabric", FABRIC), ("parallel-ssh", "pssh", PSSH)):
            if subprocess.run([sys.executable, "-c", f"import {module}"]).returncode == 0:
                peers[name] = [*peer_in_fresh_process(script.format(user=USER)), *args]
        search = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        if shutil.which("ansible-playbook", path=search):
            peers["ansible"] = [
                str(shutil.which("ansible-playbook", path=search)),
                "-i",
                str(inventory),
                "-f",
                str(len(hosts)),
                str(playbook),
            ]
        results: dict[str, tuple[float, float]] = {}
        wanted = set(options.peers.split(",")) | {"runbook"} if options.peers else set(peers)
        for name, argv in peers.items():
            if name not in wanted:
                continue
            ok = (0, 1) if name == "runbook" else (0,)  # runbook exits 1 when it finds something
            runs = [measure(argv, folder, env, ok) for _ in range(options.repeat)]
            results[name] = (statistics.median(r[0] for r in runs), max(r[1] for r in runs))
            print(f"  {name}: {results[name][0]:.2f}s", file=sys.stderr)
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(folder, ignore_errors=True)
    ours = results["runbook"][0]
    print(
        f"\nfan-out: {len(hosts)} hosts x {len(commands)} commands, "
        f"median of {options.repeat} (wall, process peak RSS)"
    )
    print(f"{'peer':<18} {'wall s':>8} {'runbook/peer':>13} {'peak RSS MiB':>13}")
    for name, (wall, rss) in sorted(results.items(), key=lambda item: item[1][0]):
        print(f"{name:<18} {wall:>8.2f} {ours / wall:>13.2f} {rss:>13.0f}")


if __name__ == "__main__":
    main()
