"""Pytest fixtures that run a real OpenSSH ``sshd`` on loopback for the SSH backend tests.

Each server is a private ``sshd -D -e -f CONFIG`` on its own 127.0.0.x address
and a free port, with a generated host key, that lets the ``runbook-ssh`` user
(``/bin/sh``, empty home: root's login files are slow) log in with generated
client keys. Servers are session-scoped and stopped by PID at teardown.
Registered from conftest.py with ``pytest_plugins = ["sshd"]``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"  # sshd re-executes itself, so it needs its absolute path
USER = "runbook-ssh"
SETUP_HINT = (
    "apt-get install -y openssh-server && "
    f"useradd --create-home --shell /bin/sh --password '*' {USER} (see .ci/run)"
)


def unavailable(message: str) -> None:
    """Fail in CI (which must run every test), skip elsewhere."""
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message, allow_module_level=True)


def require_paramiko() -> None:
    """Skip (fail in CI) the SSH tests when paramiko is not installed."""
    if importlib.util.find_spec("paramiko") is None:
        unavailable("paramiko is not installed: pip install 'paramiko>=3.4'")


def require_sshd() -> None:
    """Skip (fail in CI) unless sshd, ssh-keygen and the test user are there and we are root."""
    problems = []
    if not os.access(SSHD, os.X_OK) or shutil.which("ssh-keygen") is None:
        problems.append("OpenSSH server is not installed")
    try:
        pwd.getpwnam(USER)
    except KeyError:
        problems.append(f"user {USER} does not exist")
    if os.geteuid() != 0:
        problems.append(f"sshd must run as root to log in as {USER}")
    if problems:
        unavailable(f"real sshd unavailable: {'; '.join(problems)}; setup: {SETUP_HINT}")


def keygen(path: Path, kind: str = "ed25519") -> Path:
    """Generate an unencrypted key pair at ``path`` (and ``path.pub``)."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", path.name, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path


def free_port(address: str) -> int:
    """Return a TCP port that is free on ``address`` right now."""
    with socket.socket() as probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])


@dataclasses.dataclass
class SSHServer:
    """A running sshd: where it listens, its host key and how to stop it."""

    addresses: tuple[str, ...]
    port: int
    folder: Path
    host_key: Path
    process: subprocess.Popen[bytes]
    user: str = USER

    @property
    def address(self) -> str:
        """The first address it listens on."""
        return self.addresses[0]

    def known_hosts_name(self, address: str | None = None) -> str:
        """The server's name in known_hosts: ``[address]:port``."""
        return f"[{address or self.address}]:{self.port}"

    def host_key_line(self, address: str | None = None) -> str:
        """A known_hosts line for this server's real host key."""
        kind, blob = self.host_key.with_suffix(".pub").read_text().split()[:2]
        return f"{self.known_hosts_name(address)} {kind} {blob}"

    def log(self) -> str:
        """What sshd wrote so far (for assertion messages)."""
        return (self.folder / "sshd.log").read_text(errors="replace")

    def stop(self) -> None:
        """Stop sshd by its PID and remove its folder."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        shutil.rmtree(self.folder, ignore_errors=True)


def start_sshd(addresses: tuple[str, ...], authorized: list[Path]) -> SSHServer:
    """Start a private sshd on ``addresses`` (one free port) that trusts ``authorized`` keys."""
    require_sshd()
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
    # Not under pytest's 0700 tmp: sshd reads authorized_keys as the login user.
    folder = Path(tempfile.mkdtemp(prefix="runbook-sshd-"))
    folder.chmod(0o755)
    host_key = keygen(folder / "host_ed25519")
    keys = folder / "authorized_keys"
    keys.write_text("".join(Path(f"{key}.pub").read_text() for key in authorized))
    keys.chmod(0o644)
    for _attempt in range(5):  # another process may take the free port first
        port = free_port(addresses[0])
        config = folder / "sshd_config"
        listen = "".join(f"ListenAddress {address}:{port}\n" for address in addresses)
        config.write_text(
            listen
            + textwrap.dedent(f"""\
                HostKey {host_key}
                AuthorizedKeysFile {keys}
                AllowUsers {USER}
                StrictModes no
                UsePAM no
                PasswordAuthentication no
                KbdInteractiveAuthentication no
                PermitRootLogin no
                PidFile none
                UseDNS no
                PrintMotd no
                MaxStartups 100
                LogLevel VERBOSE
                """)
        )
        with open(folder / "sshd.log", "ab") as log:  # sshd keeps its own copy of the fd
            process = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        server = SSHServer(addresses, port, folder, host_key, process)
        if _wait_for_banner(server):
            return server
        server.process.kill()
        server.process.wait(timeout=5)
    log_text = (folder / "sshd.log").read_text(errors="replace")
    shutil.rmtree(folder, ignore_errors=True)
    pytest.fail(f"sshd did not start on {addresses}:\n{log_text}", pytrace=False)


def _wait_for_banner(server: SSHServer, within: float = 10.0) -> bool:
    """Wait until every address of ``server`` answers with an SSH banner."""
    deadline = time.monotonic() + within
    pending = list(server.addresses)
    while pending and time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        try:
            with socket.create_connection((pending[0], server.port), timeout=1) as sock:
                if sock.recv(64).startswith(b"SSH-"):
                    pending.pop(0)
                    continue
        except OSError:
            pass  # not listening yet
        time.sleep(0.02)
    return not pending


@pytest.fixture(scope="session")
def ssh_keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Client keys: ``good`` (authorized on every test sshd) and ``bad`` (authorized nowhere)."""
    folder = tmp_path_factory.mktemp("ssh-keys")
    return {"good": keygen(folder / "id_good"), "bad": keygen(folder / "id_bad")}


@pytest.fixture(scope="session")
def sshd(ssh_keys: dict[str, Path]) -> Iterator[SSHServer]:
    """An sshd on 127.0.0.2 and 127.0.0.3 (same port): two hosts for ProxyJump tests."""
    server = start_sshd(("127.0.0.2", "127.0.0.3"), [ssh_keys["good"]])
    yield server
    server.stop()


def write_known_hosts(path: Path, *lines: str) -> Path:
    """Write a known_hosts file with ``lines``."""
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def write_ssh_config(path: Path, text: str) -> Path:
    """Write an SSH config file (dedented)."""
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def remote_project(
    project, sshd: SSHServer, ssh_keys: dict[str, Path], tmp_path: Path, monkeypatch
):
    """The ``project`` configured to reach the test sshd on 127.0.0.2 and .3 as its user.

    HOME is empty and no agent is offered, so only the good key logs in;
    ``project.known_hosts`` is the known_hosts file its ``runbook.toml`` names.
    """
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    project.known_hosts = write_known_hosts(
        project.root / "known_hosts",
        sshd.host_key_line("127.0.0.2"),
        sshd.host_key_line("127.0.0.3"),
    )
    write_ssh_config(
        project.root / "ssh_config",
        f"Host *\n  User {sshd.user}\n  IdentityFile {ssh_keys['good']}\n",
    )
    project.write(
        "runbook.toml",
        'ssh_config = "ssh_config"\nknown_hosts = "known_hosts"\nconnect_timeout = 3\n',
    )
    return project


class Listener:
    """A TCP server on 127.0.0.1 that accepts connections, optionally sends ``greeting``,
    then says nothing more; a thread serves it until ``close``."""

    def __init__(self, greeting: bytes = b"") -> None:
        self.greeting = greeting
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.1)
        self.port = int(self.server.getsockname()[1])
        self.clients: list[socket.socket] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="silent-listener", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self.server.accept()
            except TimeoutError:
                continue
            self.clients.append(client)
            if self.greeting:
                client.sendall(self.greeting)

    def close(self) -> None:
        """Stop the thread and close every socket."""
        self._stopping.set()
        self._thread.join(timeout=5)
        for client in self.clients:
            client.close()
        self.server.close()


@pytest.fixture
def silent_listener() -> Iterator[Listener]:
    """A listener that accepts and never sends a byte."""
    listener = Listener()
    yield listener
    listener.close()


@pytest.fixture
def stalled_listener() -> Iterator[Listener]:
    """A listener that sends an SSH banner and then stalls."""
    listener = Listener(b"SSH-2.0-OpenSSH_9.2 stalled\r\n")
    yield listener
    listener.close()
