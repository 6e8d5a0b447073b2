"""One SSH command: ``host.run("true")`` on an open connection, against raw paramiko.

A check runs ``host.run("true")`` N times and keeps each call's time (read-only
guard, audit log and recording included) as evidence; the peer is paramiko's
``exec_command`` on a connection with TCP_NODELAY, N times, in its own process.
Each round gives each side's p50; the row shows the median of the rounds' p50s.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys

from benchmarks.common import USER
from benchmarks.common import Fleet
from benchmarks.common import Row
from benchmarks.common import Settings
from benchmarks.common import Stat
from benchmarks.common import alternate
from benchmarks.common import fleet
from benchmarks.common import progress

NAMES = ("ssh-command",)
TITLE = "one SSH command"
WHY = "host.run adds the read-only policy, the audit log record and a session semaphore"

RUNBOOK = '''"""Bench one SSH command."""
import time

from runbook import check, evidence, hypothesis

PARAMS = {"calls": 10}
h = hypothesis("h", "Nothing")


@check(tests=h)
def timing(host, params):
    host.run("true")  # the connection is open and warm before the clock starts
    times = []
    for _ in range(params.calls):
        started = time.perf_counter()
        host.run("true")
        times.append(time.perf_counter() - started)
    evidence("timings", " ".join(f"{t:.6f}" for t in times))
'''

PARAMIKO = """
import socket, sys, time, paramiko
host, port, key, known, user, calls = sys.argv[1:7]
sock = socket.create_connection((host, int(port)), timeout=10)
sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
client = paramiko.SSHClient()
client.load_host_keys(known)
client.set_missing_host_key_policy(paramiko.RejectPolicy())
client.connect(host, int(port), username=user, key_filename=key, sock=sock,
               look_for_keys=False, allow_agent=False)
def once():
    _, out, _ = client.exec_command("true")
    out.read()
    return out.channel.recv_exit_status()
once()
times = []
for _ in range(int(calls)):
    started = time.perf_counter()
    once()
    times.append(time.perf_counter() - started)
print(" ".join(f"{t:.6f}" for t in times))
client.close()
"""


def run(settings: Settings) -> list[Row]:
    """p50 of N calls per round, alternated between runbook and paramiko."""
    calls = settings.size(200, 10)
    with fleet(1) as hosts:
        hosts.write_runbook("bench_ssh_command", RUNBOOK)
        samples = alternate(
            {
                "runbook": lambda: _runbook(hosts, calls),
                "paramiko": lambda: _paramiko(hosts, calls),
            },
            settings,
        )
    ours, peer = (Stat.of(s * 1000 for s in samples[name]) for name in ("runbook", "paramiko"))
    progress(f"{TITLE}: runbook p50 {ours.median:.2f} ms, paramiko {peer.median:.2f} ms")
    return [
        Row(
            TITLE,
            f'host.run("true") p50 of {calls}, open connection',
            "paramiko exec_command, TCP_NODELAY",
            "ms",
            ours,
            peer,
            target=1.0,
            why=WHY,
        )
    ]


def _runbook(hosts: Fleet, calls: int) -> float:
    result = hosts.folder / "result.json"
    host, port = hosts.targets[0]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "runbook",
            "run",
            "bench-ssh-command",
            "-q",
            "-H",
            f"ssh://{host}:{port}",
            "--param",
            f"calls={calls}",
            "--json",
            str(result),
        ],
        cwd=hosts.folder,
        env=hosts.env,
        capture_output=True,
        text=True,
    )
    data = json.loads(result.read_text()) if result.exists() else {}
    checks = data.get("checks", [])
    if done.returncode != 0 or not checks or checks[0]["outcome"] != "passed":
        raise RuntimeError(f"runbook run failed ({done.returncode}): {done.stdout}{done.stderr}")
    return statistics.median(float(t) for t in checks[0]["evidence"][0]["body"].split())


def _paramiko(hosts: Fleet, calls: int) -> float:
    host, port = hosts.targets[0]
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            PARAMIKO,
            host,
            str(port),
            str(hosts.key),
            str(hosts.known_hosts),
            USER,
            str(calls),
        ],
        env=hosts.env,
        capture_output=True,
        text=True,
        check=True,
    )
    return statistics.median(float(t) for t in done.stdout.split())
