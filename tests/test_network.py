"""The network plugin: ss and /proc parsers on literal text, read-only commands, real sockets.

The real tests open listeners, connections and files in child processes on 127.0.0.1,
then read them back through ``Host`` locally and over the test sshd (as its non-root
user, who sees other users' sockets but not their processes or descriptors).
"""

from __future__ import annotations

import os
import pwd
import resource
import socket
import subprocess
import textwrap

import pytest
from canned import CannedBackend
from canned import assert_read_only
from canned import children
from runbook.plugins import network
from runbook.plugins.network import ListeningSocket
from runbook.plugins.network import OpenFiles
from runbook.plugins.network import TcpConnection
from sshd import USER
from sshd import SSHServer
from sshd import unavailable
from sshd import write_known_hosts
from sshd import write_ssh_config

from runbook.hosts import sockets
from runbook.hosts.host import Host
from runbook.hosts.local import LocalBackend

SS_TAN = (
    'ESTAB 0 0 127.0.0.1:42104 127.0.0.1:51637 users:(("python3",pid=21188,fd=4),'
    '("python3",pid=21190,fd=4))\n'
    "TIME-WAIT 0 0 [::1]:80 [::1]:5000\n"
    'LISTEN 0 4096 0.0.0.0:22 0.0.0.0:* users:(("sshd",pid=1,fd=3))\n'
    "short line\n"
)
SS_LTN = (
    'LISTEN 129 128 0.0.0.0:80 0.0.0.0:* users:(("nginx",pid=77,fd=6))\n'
    "LISTEN 0 4096 127.0.0.53%lo:53 0.0.0.0:*\n"
    "LISTEN 0 511 [::]:8080 [::]:*\n"
    "LISTEN 0 5 *:9000 *:*\n"
)
FD_COUNTS = "    243 /proc/4242/fd\n      4 /proc/1/fd\n     10 /proc/9/fd\n"
FD_LIMITS = (
    "/proc/1/limits:Max open files            1024                 4096   files\n"
    "/proc/4242/limits:Max open files            256                 4096   files\n"
    "/proc/9/limits:Max open files            unlimited            unlimited files\n"
)
PS_NAMES = "    1 root     systemd\n 4242 alice    python3\n    9 bob      my app\n"
DENIED = (
    "find: '/proc/1/fd': Permission denied\n"
    "find: \u2018/proc/7/fd\u2019: Permission denied\n"
    "find: '/proc/9/fd': No such file or directory\n"
)
ONE_PROCESS = (
    "fd 0\t/dev/null\nfd 1\tpipe:[123]\nfd 3\tsocket:[456]\n"
    "/proc/4242/limits:Max open files            256                 4096   files\n"
    " 4242 alice    python3\n"
)


def test_parse_tcp_connections_keeps_state_queues_endpoints_and_owner():
    rows = sockets.parse_tcp_connections(SS_TAN)
    assert rows == [
        TcpConnection("ESTAB", "127.0.0.1:42104", "127.0.0.1:51637", 0, 0, 21188, "python3"),
        TcpConnection("TIME-WAIT", "[::1]:80", "[::1]:5000", 0, 0, None, ""),
        TcpConnection("LISTEN", "0.0.0.0:22", "0.0.0.0:*", 0, 4096, 1, "sshd"),
    ]
    assert (rows[0].process, rows[1].process) == ("python3 (pid 21188)", "")


def test_parse_listening_ports_reads_addresses_ports_and_accept_queues():
    rows = sockets.parse_listening_ports(SS_LTN)
    assert rows == [
        ListeningSocket("0.0.0.0", 80, 129, 128, 77, "nginx"),
        ListeningSocket("127.0.0.53", 53, 0, 4096, None, ""),
        ListeningSocket("[::]", 8080, 0, 511, None, ""),
        ListeningSocket("*", 9000, 0, 5, None, ""),
    ]
    assert [row.is_queue_full for row in rows] == [True, False, False, False]
    assert rows[0].process == "nginx (pid 77)"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("established", "ESTAB"),
        ("ESTAB", "ESTAB"),
        ("time_wait", "TIME-WAIT"),
        ("TIME-WAIT", "TIME-WAIT"),
        ("listening", "LISTEN"),
        ("close-wait", "CLOSE-WAIT"),
        ("syn_received", "SYN-RECV"),
    ],
)
def test_normalize_state_takes_the_usual_names(given, expected):
    assert sockets.normalize_state(given) == expected


def test_normalize_state_refuses_unknown_states():
    with pytest.raises(ValueError, match="unknown TCP state 'waiting': use one of ESTAB"):
        sockets.normalize_state("waiting")


def test_parse_open_files_scan_joins_counts_limits_and_names():
    scan = network.parse_open_files_scan(FD_COUNTS, FD_LIMITS, PS_NAMES, DENIED)
    assert scan.processes == (
        OpenFiles(4242, "python3", "alice", 243, 256, 4096),
        OpenFiles(1, "systemd", "root", 4, 1024, 4096),
        OpenFiles(9, "my app", "bob", 10, None, None),
    )
    assert scan.processes[0].percent == pytest.approx(100 * 243 / 256)
    assert scan.processes[2].percent == 0.0
    assert scan.unreadable == ("/proc/1", "/proc/7")


def test_parse_open_files_of_one_process():
    files = sockets.parse_open_files(ONE_PROCESS, 4242)
    assert files == OpenFiles(
        4242, "python3", "alice", 3, 256, 4096, ("/dev/null", "pipe:[123]", "socket:[456]")
    )
    with pytest.raises(ProcessLookupError, match="no process 4243"):
        sockets.parse_open_files("", 4243)


ANSWERS = [
    ("ss -tanpH", SS_TAN, "", 0),
    ("ss -ltnpH", SS_LTN, "", 0),
    ("find /proc/[0-9]*/fd", FD_COUNTS, DENIED, 0),
    ("grep -H 'Max open files' /proc/[0-9]*/limits", FD_LIMITS, "", 0),
    ("ps -e", PS_NAMES, "", 0),
    ("find /proc/4242/fd", ONE_PROCESS, "", 0),
    ("find /proc/1/fd", "", "find: '/proc/1/fd': Permission denied\n", 1),
]


def test_host_helpers_send_read_only_commands():
    backend = CannedBackend(ANSWERS)
    host = Host(backend)
    assert [row.peer for row in host.tcp_connections("time_wait")] == ["[::1]:5000"]
    assert len(host.tcp_connections()) == 3
    assert [row.port for row in host.listening_ports()] == [80, 53, 8080, 9000]
    assert host.open_files(4242).targets[0] == "/dev/null"
    with pytest.raises(PermissionError, match="cannot read the open files of pid 1 on canned"):
        host.open_files(1)
    assert network.open_files_scan(host).processes[0].pid == 4242
    assert backend.commands[:3] == [
        ["ss", "-tanpH"],
        ["ss", "-tanpH"],
        ["ss", "-ltnpH"],
    ]
    assert_read_only(backend.commands)


def test_host_helpers_fail_clearly():
    host = Host(CannedBackend([("ss", "", "ss: netlink: Operation not permitted\n", 1)]))
    with pytest.raises(RuntimeError, match=r"'ss -tanpH' failed on canned \(exit status 1\): ss:"):
        host.tcp_connections()
    with pytest.raises(ValueError, match="unknown TCP state"):
        host.tcp_connections("nope")
    with pytest.raises(RuntimeError, match="no open files counted"):
        network.open_files_scan(Host(CannedBackend([])))


# Real sockets and processes

HOLDER = """
import os, resource, socket, struct, sys, time
count, soft = int(sys.argv[1]), int(sys.argv[2])
path = os.path.realpath(sys.executable)  # readable by every user (/dev/null may not be)
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(64)
held = [open(path, "rb") for _ in range(count)]
peers = []
for _ in range(count):
    client = socket.create_connection(listener.getsockname())
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    server, _ = listener.accept()
    peers += [client, server]
print("ready", listener.getsockname()[1], path, flush=True)
time.sleep(120)
"""


@pytest.fixture
def spawn():
    with children() as start:
        yield start


@pytest.fixture
def local():
    host = Host(LocalBackend())
    yield host
    host.close()


def assert_sees_the_holder(host: Host, pid: int, port: int, count: int, *, owner: bool) -> None:
    """The holder's listener, connections and (if ``owner``) process are where ss says."""
    [listening] = [row for row in host.listening_ports() if row.port == port]
    assert listening.address == "127.0.0.1"
    established = host.tcp_connections("established")
    to_port = [row for row in established if row.peer == f"127.0.0.1:{port}"]
    from_port = [row for row in established if row.local == f"127.0.0.1:{port}"]
    assert (len(to_port), len(from_port)) == (count, count)
    if owner:
        assert listening.pid == pid and listening.command.startswith("python")
        assert {row.pid for row in to_port + from_port} == {pid}
    else:
        assert listening.pid is None and {row.pid for row in to_port} == {None}
    assert not [row for row in host.tcp_connections("listen") if row.state != "LISTEN"]


def test_helpers_see_real_sockets_and_files_locally(local, spawn):
    holder = spawn(HOLDER, 40, 200)
    port = int(holder.words[0])
    assert_sees_the_holder(local, holder.pid, port, 40, owner=True)
    files = local.open_files(holder.pid)
    assert files.count == len(os.listdir(f"/proc/{holder.pid}/fd"))
    assert files.count >= 40 + 1 + 80 and files.soft_limit == 200
    assert files.hard_limit == resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert files.targets.count(holder.words[1]) == 40
    assert sum(target.startswith("socket:[") for target in files.targets) == 81
    assert files.command.startswith("python") and files.user == "root"
    [scanned] = [row for row in network.open_files_scan(local).processes if row.pid == holder.pid]
    assert (scanned.count, scanned.soft_limit) == (files.count, 200)
    assert scanned.percent == pytest.approx(100 * files.count / 200)
    holder.kill()
    holder.wait()
    with pytest.raises(ProcessLookupError, match=f"no process {holder.pid} on local"):
        local.open_files(holder.pid)


def test_time_wait_sockets_are_found_by_state(local):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        for _ in range(5):
            client = socket.create_connection(("127.0.0.1", port))
            server, _ = listener.accept()
            client.close()  # the side that closes first waits in TIME_WAIT
            server.close()
    waiting = [row for row in local.tcp_connections("TIME_WAIT") if row.peer.endswith(f":{port}")]
    assert len(waiting) == 5 and {row.state for row in waiting} == {"TIME-WAIT"}


def test_inode_usage_on_this_machine(local, tmp_path):
    usage = local.inode_usage(str(tmp_path))
    statvfs = os.statvfs(tmp_path)
    assert usage.total == statvfs.f_files
    assert usage.path == str(tmp_path)


@pytest.fixture
def ssh_host(sshd: SSHServer, ssh_keys, tmp_path, monkeypatch):
    """A Host on the test sshd, logged in as its non-root user."""
    from runbook.ssh.backend import Address
    from runbook.ssh.backend import SSHBackend
    from runbook.ssh.backend import SSHOptions

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    options = SSHOptions(
        known_hosts=write_known_hosts(tmp_path / "known_hosts", sshd.host_key_line("127.0.0.2")),
        ssh_config=write_ssh_config(tmp_path / "ssh_config", ""),
        identity_file=ssh_keys["good"],
        connect_timeout=5.0,
    )
    backend = SSHBackend(Address.from_spec(f"ssh://{USER}@127.0.0.2:{sshd.port}"), options)
    backend.connect()
    yield Host(backend)
    backend.close()


@pytest.fixture
def user_holder():
    """The holder run as the sshd's user, so that user may read its descriptors."""
    python = "/usr/bin/python3"  # this test's interpreter may sit where others cannot run it
    if not os.access(python, os.X_OK):
        unavailable(f"{python} is needed to run a process as {USER}")
    account = pwd.getpwnam(USER)
    process = subprocess.Popen(
        [python, "-c", textwrap.dedent(HOLDER), "10", "100"],
        stdout=subprocess.PIPE,
        text=True,
        user=USER,
        group=account.pw_gid,
        extra_groups=[],
    )
    assert process.stdout is not None
    words = process.stdout.readline().split()
    assert words[:1] == ["ready"], process.wait()
    yield process, int(words[1]), words[2]
    process.kill()
    process.wait()
    process.stdout.close()


def test_helpers_over_ssh_see_sockets_and_only_their_users_processes(ssh_host, user_holder, spawn):
    root_holder = spawn(HOLDER, 5, 100)
    assert_sees_the_holder(ssh_host, root_holder.pid, int(root_holder.words[0]), 5, owner=False)
    with pytest.raises(PermissionError, match=f"pid {root_holder.pid} on 127.0.0.2"):
        ssh_host.open_files(root_holder.pid)
    process, port, path = user_holder
    assert_sees_the_holder(ssh_host, process.pid, port, 10, owner=True)
    files = ssh_host.open_files(process.pid)
    assert (files.user, files.soft_limit, files.targets.count(path)) == (USER, 100, 10)
    assert files.count == len(os.listdir(f"/proc/{process.pid}/fd"))
    scan = network.open_files_scan(ssh_host)
    assert f"/proc/{root_holder.pid}" in scan.unreadable
    assert process.pid in {row.pid for row in scan.processes}
    assert ssh_host.inode_usage("/tmp").total == os.statvfs("/tmp").f_files
