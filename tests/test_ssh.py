"""The SSH backend against a real OpenSSH sshd on loopback (see tests/sshd.py)."""

from __future__ import annotations

import os
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sshd import SSHServer
from sshd import free_port
from sshd import keygen
from sshd import require_paramiko
from sshd import write_known_hosts
from sshd import write_ssh_config

from runbook.hosts.host import Host
from runbook.outcomes import CommandTimeout
from runbook.outcomes import HostUnavailable
from runbook.outcomes import UsageError
from runbook.pluginmanager import load_config
from runbook.ssh.backend import Address
from runbook.ssh.backend import SSHBackend
from runbook.ssh.backend import SSHOptions
from runbook.ssh.backend import runbook_make_host

require_paramiko()

SLACK = 1.0  # seconds allowed beyond a timeout on a busy test machine


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty home and no ssh-agent: only the keys a test names are offered."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return home


@pytest.fixture
def options(home: Path, tmp_path: Path, sshd: SSHServer, ssh_keys: dict[str, Path]):
    """Make SSHOptions that trust ``sshd`` on both its addresses and log in with the good key."""
    known_hosts = write_known_hosts(
        tmp_path / "known_hosts", sshd.host_key_line("127.0.0.2"), sshd.host_key_line("127.0.0.3")
    )
    ssh_config = write_ssh_config(tmp_path / "ssh_config", "")

    def make(**overrides) -> SSHOptions:
        settings = {
            "known_hosts": known_hosts,
            "ssh_config": ssh_config,
            "identity_file": ssh_keys["good"],
            "connect_timeout": 5.0,
            **overrides,
        }
        return SSHOptions(**settings)

    return make


@pytest.fixture
def backends():
    """Make SSH backends; all are closed at teardown."""
    made: list[SSHBackend] = []

    def make(spec: str, options: SSHOptions) -> SSHBackend:
        backend = SSHBackend(Address.from_spec(spec), options)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


@pytest.fixture
def host(sshd: SSHServer, options, backends) -> Host:
    """A Host on the test sshd, connected."""
    backend = backends(f"ssh://{sshd.user}@{sshd.address}:{sshd.port}", options())
    backend.connect()
    return Host(backend)


def unavailable(backend: SSHBackend) -> tuple[HostUnavailable, float]:
    """Connect, expecting HostUnavailable; return it and how long it took."""
    started = time.monotonic()
    with pytest.raises(HostUnavailable) as caught:
        backend.connect()
    return caught.value, time.monotonic() - started


def tcp_peers() -> list[tuple[str, int]]:
    """Return (address, port) of the far end of each established TCP socket of this process."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    peers = []
    for line in Path("/proc/self/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[9] in inodes and fields[3] == "01":  # 01: ESTABLISHED
            address, port = fields[2].split(":")
            peers.append((socket.inet_ntoa(struct.pack("<I", int(address, 16))), int(port, 16)))
    return peers


def fingerprint_of(public_key: Path) -> str:
    """The SHA256 fingerprint OpenSSH shows for a key."""
    listing = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(public_key)],
        capture_output=True,
        text=True,
        check=True,
    )
    return listing.stdout.split()[1]


# Targets


@pytest.mark.parametrize(
    ("spec", "host", "user", "port", "name"),
    [
        ("ssh://web1", "web1", None, None, "web1"),
        ("ssh://web1/", "web1", None, None, "web1"),
        ("ssh://alice@web1:2222", "web1", "alice", 2222, "web1:2222"),
        ("ssh://alice@db.example.com", "db.example.com", "alice", None, "db.example.com"),
        ("ssh://[::1]:2222", "::1", None, 2222, "[::1]:2222"),
        ("ssh://bob@[fe80::1]", "fe80::1", "bob", None, "fe80::1"),
    ],
)
def test_spec_is_parsed(spec, host, user, port, name):
    address = Address.from_spec(spec)
    assert (address.host, address.user, address.port, address.name) == (host, user, port, name)


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("ssh://", "no host"),
        ("ssh://@web1", "empty user name"),
        ("ssh://alice:secret@web1", "passwords are not supported"),
        ("ssh://web1:0", "bad port"),
        ("ssh://web1:70000", "bad port"),
        ("ssh://web1:ssh", "bad port"),
        ("ssh://::1", "put IPv6 addresses in brackets"),
        ("ssh://[::1", "bad bracketed address"),
        ("ssh://[::1]x", "bad bracketed address"),
        ("ssh://web1/var/log", "bad host name"),
        ("ssh://we b1", "bad host name"),
    ],
)
def test_bad_spec_is_a_one_line_usage_error(spec, reason):
    with pytest.raises(UsageError) as caught:
        Address.from_spec(spec)
    message = str(caught.value)
    assert reason in message and repr(spec) in message
    assert "ssh://[user@]host[:port]" in message and "\n" not in message


def test_make_host_hook_takes_only_ssh_specs(tmp_path: Path, home: Path):
    known_hosts = tmp_path / "kh"
    config = load_config(
        {"known_hosts": str(known_hosts), "accept_new_host_keys": True, "connect_timeout": "3"},
        start=tmp_path,
    )
    assert runbook_make_host(spec="local", config=config) is None
    assert runbook_make_host(spec="web1", config=config) is None
    backend = runbook_make_host(spec="ssh://alice@web1:2222", config=config)
    assert isinstance(backend, SSHBackend)
    assert (backend.name, backend.uri) == ("web1:2222", "ssh://alice@web1:2222")
    assert backend.options == SSHOptions(known_hosts, True, None, 3.0, None)
    with pytest.raises(UsageError):
        runbook_make_host(spec="ssh://web1:port", config=config)


def test_ssh_config_resolves_hostname_user_port_and_identity(tmp_path: Path, home: Path):
    ssh_config = write_ssh_config(
        tmp_path / "ssh_config",
        """\
        Host web
            HostName 10.1.2.3
            User deploy
            Port 2200
            IdentityFile ~/.ssh/deploy_key
        Host *
            User nobody
        """,
    )
    backend = SSHBackend(Address.from_spec("ssh://web"), SSHOptions(ssh_config=ssh_config))
    assert (backend.name, backend.uri) == ("web", "ssh://deploy@10.1.2.3:2200")
    assert backend.route[-1].identity_files == (home / ".ssh" / "deploy_key",)
    explicit = SSHBackend(Address.from_spec("ssh://root@web:22"), SSHOptions(ssh_config=ssh_config))
    assert explicit.uri == "ssh://root@10.1.2.3:22"  # what the target says wins
    assert SSHBackend(Address.from_spec("ssh://db"), SSHOptions(ssh_config=ssh_config)).uri == (
        "ssh://nobody@db:22"
    )


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("Host a\n  ProxyJump b:port\n", "bad ProxyJump 'b:port' for a in the SSH config"),
        ("Host a\n  ProxyJump b\nHost b\n  ProxyJump a\n", "ProxyJump chain to a is longer"),
        ("Host a\n  Port ssh\n", "bad Port 'ssh' for a in the SSH config"),
    ],
)
def test_bad_ssh_config_is_a_usage_error(tmp_path: Path, home: Path, config, message):
    ssh_config = write_ssh_config(tmp_path / "ssh_config", config)
    with pytest.raises(UsageError, match=message):
        SSHBackend(Address.from_spec("ssh://a"), SSHOptions(ssh_config=ssh_config))


def test_paramiko_is_not_imported_at_start_up():
    code = "import sys, runbook.ssh.backend; assert 'paramiko' not in sys.modules, 'imported'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# A good host


def test_commands_report_output_stderr_and_exit_status(host: Host, sshd: SSHServer):
    assert host.uri == f"ssh://{sshd.user}@{sshd.address}:{sshd.port}"
    result = host.run("echo out; echo err >&2; exit 3")
    assert (result.stdout, result.stderr, result.exit_status) == ("out\n", "err\n", 3)
    assert host.run("echo %s", "it's a 'quoted' $HOME").stdout == "it's a 'quoted' $HOME\n"
    assert host.run("id -un").stdout.strip() == sshd.user
    assert host.exists("/etc/passwd") and not host.exists("/no/such/file")
    assert "root:" in host.read_text("/etc/passwd")
    assert host.run("printf 'caf\\303\\251 \\377'").stdout == "café \ufffd"


def test_list_commands_keep_every_argument_literal(host: Host):
    argv = ["printf", "%s|", "a b", "it's", '"q"', "$HOME", "*", "x; rm -rf /", ""]
    assert host.run(argv).stdout == 'a b|it\'s|"q"|$HOME|*|x; rm -rf /||'


def test_large_outputs_on_both_streams_do_not_deadlock(host: Host):
    result = host.run(
        "head -c 5000000 /dev/zero | tr '\\0' o & head -c 3000000 /dev/zero | tr '\\0' e >&2; wait"
    )
    assert result.exit_status == 0
    assert len(result.stdout) == 5_000_000 and set(result.stdout) == {"o"}
    assert len(result.stderr) == 3_000_000 and set(result.stderr) == {"e"}


def test_one_tcp_connection_serves_every_command(host: Host, sshd: SSHServer):
    seen = {host.run("echo $SSH_CONNECTION").stdout for _ in range(20)}
    assert len(seen) == 1  # same client port every time
    assert tcp_peers().count((sshd.address, sshd.port)) == 1


def test_commands_from_parallel_threads_share_the_connection(host: Host, sshd: SSHServer):
    results: dict[int, str] = {}

    def work(i: int) -> None:
        results[i] = host.run(f"sleep 0.5; echo {i} $SSH_CONNECTION").stdout

    started = time.monotonic()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert time.monotonic() - started < 3  # 8 x 0.5 s in sequence would take 4 s
    assert sorted(int(out.split()[0]) for out in results.values()) == list(range(8))
    assert len({out.split(maxsplit=1)[1] for out in results.values()}) == 1
    assert tcp_peers().count((sshd.address, sshd.port)) == 1


def test_command_timeout_kills_the_command_and_keeps_the_connection(host: Host):
    started = time.monotonic()
    with pytest.raises(CommandTimeout, match=r"command timed out after 1s"):
        host.run("sleep 29.5; echo never", timeout=1)
    assert time.monotonic() - started < 1 + SLACK
    assert host.run("echo still here").stdout == "still here\n"
    time.sleep(0.2)  # sshd delivers the signal asynchronously
    assert "sleep 29.5" not in host.run(["ps", "-eo", "args"]).stdout


def test_on_cancel_stops_a_running_command(sshd: SSHServer, options, backends):
    backend = backends(f"ssh://{sshd.user}@{sshd.address}:{sshd.port}", options())
    backend.connect()
    host = Host(backend)  # the host keeps its backend sealed: the test holds its own
    callbacks: list = []

    def on_cancel(callback):
        callbacks.append(callback)
        return lambda: callbacks.remove(callback)

    outcome: list = []
    runner = threading.Thread(
        target=lambda: outcome.append(backend.execute("echo started; sleep 28.5", 60, on_cancel))
    )
    runner.start()
    deadline = time.monotonic() + 5
    while not callbacks and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # let the command start
    callbacks[0]()
    runner.join(timeout=2)
    assert not runner.is_alive()
    assert outcome == [("started\n", "", -9)]
    assert callbacks == []  # forgotten once done
    assert "sleep 28.5" not in host.run(["ps", "-eo", "args"]).stdout


# Keys


def test_default_key_in_home_is_offered(sshd, options, backends, home, ssh_keys):
    (home / ".ssh").mkdir()
    for suffix in ("", ".pub"):
        (home / ".ssh" / f"id_ed25519{suffix}").write_bytes(
            Path(f"{ssh_keys['good']}{suffix}").read_bytes()
        )
    (home / ".ssh" / "id_ed25519").chmod(0o600)
    backend = backends(f"ssh://{sshd.user}@{sshd.address}:{sshd.port}", options(identity_file=None))
    assert Host(backend).run("echo ok").stdout == "ok\n"


def test_identity_file_and_user_from_the_ssh_config(sshd, options, backends, tmp_path, ssh_keys):
    config = write_ssh_config(
        tmp_path / "config_with_key",
        f"""\
        Host box
            HostName {sshd.address}
            Port {sshd.port}
            User {sshd.user}
            IdentityFile {ssh_keys["good"]}
        """,
    )
    backend = backends("ssh://box", options(identity_file=None, ssh_config=config))
    assert Host(backend).run("id -un").stdout == f"{sshd.user}\n"


def test_agent_keys_are_offered(sshd, options, backends, tmp_path, ssh_keys, monkeypatch):
    socket_path = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(socket_path)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while not socket_path.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        env = {**os.environ, "SSH_AUTH_SOCK": str(socket_path)}
        subprocess.run(["ssh-add", "-q", str(ssh_keys["good"])], env=env, check=True)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(socket_path))
        spec = f"ssh://{sshd.user}@{sshd.address}:{sshd.port}"
        backend = backends(spec, options(identity_file=ssh_keys["bad"]))
        assert Host(backend).run("echo ok").stdout == "ok\n"  # the bad key first, then the agent's
    finally:
        agent.terminate()
        agent.wait(timeout=5)


def test_encrypted_key_without_agent_is_explained(sshd, options, backends, home):
    (home / ".ssh").mkdir()
    key = home / ".ssh" / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "passphrase", "-f", str(key)], check=True
    )
    backend = backends(f"ssh://{sshd.user}@{sshd.address}:{sshd.port}", options(identity_file=None))
    error, _ = unavailable(backend)
    assert error.status == "auth_failed"
    assert f"{key} is encrypted: add it to ssh-agent" in error.message


# Host keys


def test_hashed_known_hosts_entries_are_recognised(sshd, options, backends, tmp_path):
    known_hosts = write_known_hosts(tmp_path / "hashed", sshd.host_key_line())
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(known_hosts)], check=True)
    assert known_hosts.read_text().startswith("|1|")
    spec = f"ssh://{sshd.user}@{sshd.address}:{sshd.port}"
    assert Host(backends(spec, options(known_hosts=known_hosts))).run("true").succeeded


def test_unknown_host_key_is_refused_with_its_fingerprint(sshd, options, backends, tmp_path):
    known_hosts = write_known_hosts(tmp_path / "empty_known_hosts")
    backend = backends(f"ssh://{sshd.address}:{sshd.port}", options(known_hosts=known_hosts))
    error, _ = unavailable(backend)
    assert error.status == "host_key_rejected"
    assert f"unknown host key for {sshd.address}:{sshd.port}" in error.message
    assert fingerprint_of(sshd.host_key.with_suffix(".pub")) in error.message
    assert "--accept-new-host-keys" in error.message and "ssh-keyscan" in error.message
    assert known_hosts.read_text() == ""


def test_accept_new_host_keys_records_the_key_then_it_is_known(sshd, options, backends, tmp_path):
    known_hosts = tmp_path / "new" / ".ssh" / "known_hosts"
    spec = f"ssh://{sshd.user}@{sshd.address}:{sshd.port}"
    first = backends(spec, options(known_hosts=known_hosts, accept_new_host_keys=True))
    first.connect()
    assert known_hosts.read_text() == sshd.host_key_line() + "\n"
    assert stat.S_IMODE(known_hosts.stat().st_mode) == 0o600
    first.close()
    again = backends(spec, options(known_hosts=known_hosts))
    assert Host(again).run("echo ok").stdout == "ok\n"
    assert known_hosts.read_text() == sshd.host_key_line() + "\n"


def test_accepted_key_is_appended_after_the_existing_lines(sshd, options, backends, tmp_path):
    known_hosts = tmp_path / "known_hosts_partial"
    known_hosts.write_text("other.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE1l")  # no newline
    spec = f"ssh://{sshd.user}@{sshd.address}:{sshd.port}"
    backends(spec, options(known_hosts=known_hosts, accept_new_host_keys=True)).connect()
    assert known_hosts.read_text().splitlines() == [
        "other.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE1l",
        sshd.host_key_line(),
    ]


def test_changed_host_key_is_refused_even_with_accept_new(sshd, options, backends, tmp_path):
    impostor = keygen(tmp_path / "impostor").with_suffix(".pub").read_text().split()
    line = f"{sshd.known_hosts_name()} {impostor[0]} {impostor[1]}"
    known_hosts = write_known_hosts(tmp_path / "known_hosts_changed", line)
    for accept_new in (False, True):
        spec = f"ssh://{sshd.address}:{sshd.port}"
        opts = options(known_hosts=known_hosts, accept_new_host_keys=accept_new)
        error, _ = unavailable(backends(spec, opts))
        assert error.status == "host_key_rejected"
        assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in error.message
        assert fingerprint_of(sshd.host_key.with_suffix(".pub")) in error.message
        assert "\n" not in error.message
    assert known_hosts.read_text() == line + "\n"


# Unreachable hosts and failed logins


def test_closed_port_is_unreachable_at_once(options, backends):
    port = free_port("127.0.0.1")
    error, took = unavailable(backends(f"ssh://127.0.0.1:{port}", options()))
    assert error.status == "unreachable"
    assert error.message == f"cannot connect to 127.0.0.1:{port}: connection refused"
    assert took < 0.5


def test_unknown_host_name_is_unreachable(options, backends):
    error, _ = unavailable(backends("ssh://no-such-host.invalid", options()))
    assert error.status == "unreachable"
    assert "cannot resolve no-such-host.invalid" in error.message


def test_silent_listener_times_out_as_unreachable(silent_listener, options, backends):
    backend = backends(f"ssh://127.0.0.1:{silent_listener.port}", options(connect_timeout=1))
    error, took = unavailable(backend)
    assert error.status == "unreachable"
    assert error.message == (
        f"cannot connect to 127.0.0.1:{silent_listener.port}: no SSH banner within 1s"
    )
    assert 0.9 < took < 1 + SLACK


def test_listener_that_stalls_after_its_banner_times_out(stalled_listener, options, backends):
    backend = backends(f"ssh://127.0.0.1:{stalled_listener.port}", options(connect_timeout=1))
    error, took = unavailable(backend)
    assert error.status == "unreachable"
    assert "SSH handshake stalled after its banner (SSH-2.0-OpenSSH_9.2" in error.message
    assert 0.9 < took < 1 + SLACK


def test_key_the_server_does_not_know_fails_auth(sshd, options, backends, ssh_keys):
    spec = f"ssh://{sshd.user}@{sshd.address}:{sshd.port}"
    backend = backends(spec, options(identity_file=ssh_keys["bad"]))
    error, _ = unavailable(backend)
    assert error.status == "auth_failed"
    assert error.message == (
        f"cannot log in as {sshd.user}@{sshd.address}:{sshd.port}: "
        f"it refused every key offered ({ssh_keys['bad']})"
    )


def test_no_key_at_all_fails_auth_and_says_so(sshd, options, backends, tmp_path):
    spec = f"ssh://{sshd.user}@{sshd.address}:{sshd.port}"
    backend = backends(spec, options(identity_file=tmp_path / "missing_key"))
    error, _ = unavailable(backend)
    assert error.status == "auth_failed"
    assert "no SSH key to offer" in error.message
    assert f"{tmp_path / 'missing_key'} does not exist" in error.message


# ProxyJump


def jump_config(tmp_path: Path, sshd: SSHServer) -> Path:
    return write_ssh_config(
        tmp_path / "jump_config",
        f"""\
        Host target
            HostName 127.0.0.2
            Port {sshd.port}
            User {sshd.user}
            ProxyJump {sshd.user}@127.0.0.3:{sshd.port}
        """,
    )


def test_proxy_jump_reaches_the_target_through_the_jump_host(sshd, options, backends, tmp_path):
    backend = backends("ssh://target", options(ssh_config=jump_config(tmp_path, sshd)))
    assert backend.uri == f"ssh://{sshd.user}@127.0.0.2:{sshd.port}"
    assert [hop.hostname for hop in backend.route] == ["127.0.0.3", "127.0.0.2"]
    host = Host(backend)
    assert host.run("echo $SSH_CONNECTION").stdout.split()[2:] == ["127.0.0.2", str(sshd.port)]
    peers = tcp_peers()
    assert peers.count(("127.0.0.3", sshd.port)) == 1  # the only way in
    assert ("127.0.0.2", sshd.port) not in peers


def test_proxy_jump_checks_the_jump_host_key(sshd, options, backends, tmp_path):
    known_hosts = write_known_hosts(tmp_path / "only_target", sshd.host_key_line("127.0.0.2"))
    opts = options(ssh_config=jump_config(tmp_path, sshd), known_hosts=known_hosts)
    error, _ = unavailable(backends("ssh://target", opts))
    assert error.status == "host_key_rejected"
    assert error.message.startswith(f"unknown host key for 127.0.0.3:{sshd.port}:")
    assert error.message.endswith(f"(jump host on the way to target (127.0.0.2:{sshd.port}))")
