"""The storage plugin: parsers on literal text, read-only commands through a Host, real use."""

from __future__ import annotations

import os

import pytest
from canned import CannedBackend
from canned import assert_read_only
from runbook.plugins import storage

from runbook.hosts import filesystems
from runbook.hosts.host import Host

DF_INODES_OUTPUT = """\
Filesystem      Inodes  IUsed   IFree IUse% Mounted on
/dev/sda1      6553600 655360 5898240   10% /srv/data dir
"""
FIND_FILES_OUTPUT = (
    "1048576\t2048\troot\t/var/log/a.log\n"
    "4294967296\t0\troot\t/var/lib/sparse.img\n"  # big, but takes no space
    "2097152\t4096\twww-data\t/var/log/with\ttab and space.log\n"
    "not a find line\n"
    "1048576\t2048\troot\t/var/log/0.log\n"
)
FIND_FDS_OUTPUT = (
    "/proc/42/fd/3\t/var/log/app.log (deleted)\n"
    "/proc/42/fd/7\t/var/log/app.log.1 (deleted)\n"
    "/proc/43/fd/1\t/tmp/gone (deleted)\n"  # closed before stat: no stat line
    "/proc/44/fd/4\t/data/big (deleted)\n"
)
STAT_FDS_OUTPUT = (
    "2049\t1000\t8\t/proc/42/fd/3\n2049\t5000\t16\t/proc/42/fd/7\n64768\t9000\t24\t/proc/44/fd/4\n"
)
PS_COMM_OUTPUT = "   42 www-data  nginx\n   44 postgres  postgres: writer\n"


def test_parse_df_inodes():
    usage = filesystems.parse_df_inodes(DF_INODES_OUTPUT, "/srv/data dir/x")
    assert (usage.mount, usage.total, usage.used, usage.free) == (
        "/srv/data dir",
        6553600,
        655360,
        5898240,
    )
    assert usage.used_percent == 10.0
    no_table = "Filesystem Inodes IUsed IFree IUse% Mounted on\n/dev/sdb1 0 0 0 - /btrfs\n"
    assert filesystems.parse_df_inodes(no_table, "/btrfs").used_percent == 0.0
    with pytest.raises(ValueError, match="no filesystem line"):
        filesystems.parse_df_inodes("df: /nope: No such file or directory\n", "/nope")


def test_parse_find_files_orders_by_space_taken_and_skips_sparse_and_small():
    files = storage.parse_find_files(FIND_FILES_OUTPUT, limit=10, min_bytes=1 << 20)
    assert [(f.path, f.allocated_bytes, f.owner) for f in files] == [
        ("/var/log/with\ttab and space.log", 2 << 20, "www-data"),
        ("/var/log/0.log", 1 << 20, "root"),
        ("/var/log/a.log", 1 << 20, "root"),
    ]
    assert files[0].size_bytes == 2097152
    assert storage.parse_find_files(FIND_FILES_OUTPUT, limit=1)[0].path.endswith("space.log")
    assert storage.parse_find_files(FIND_FILES_OUTPUT, limit=5, min_bytes=3 << 20) == []


def test_parse_unreadable_keeps_permission_errors_only():
    stderr = (
        "find: '/proc/1/fd/0': Permission denied\n"
        "find: \u2018/root/private\u2019: Permission denied\n"
        "find: '/proc/999/fd': No such file or directory\n"
        "stat: cannot statx '/proc/1/fd/3': Permission denied\n"
    )
    assert storage.parse_unreadable(stderr) == ("/proc/1/fd/0", "/root/private", "/proc/1/fd/3")


def test_parse_deleted_open_files_joins_find_stat_and_ps():
    files = storage.parse_deleted_open_files(FIND_FDS_OUTPUT, STAT_FDS_OUTPUT, PS_COMM_OUTPUT)
    assert [(f.pid, f.fd, f.path, f.allocated_bytes, f.device) for f in files] == [
        (44, 4, "/data/big", 24 * 512, 64768),
        (42, 7, "/var/log/app.log.1", 16 * 512, 2049),
        (42, 3, "/var/log/app.log", 8 * 512, 2049),
    ]
    assert (files[0].user, files[0].command) == ("postgres", "postgres: writer")
    assert (files[1].user, files[1].command, files[1].size_bytes) == ("www-data", "nginx", 5000)
    # A process that ended before ps ran keeps its file, without a name.
    [orphan] = storage.parse_deleted_open_files(FIND_FDS_OUTPUT, STAT_FDS_OUTPUT, "")[:1]
    assert (orphan.pid, orphan.command, orphan.user) == (44, "", "")


DISK_ANSWERS = [
    ("df -P -i", DF_INODES_OUTPUT, "", 0),
    ("find /srv", FIND_FILES_OUTPUT, "find: '/srv/private': Permission denied\n", 1),
    ("find /proc", FIND_FDS_OUTPUT, "find: '/proc/1/fd/0': Permission denied\n" * 2, 1),
    ("stat -L -c '%d\t%s\t%b\t%n' -- /var", "2049\t4096\t8\t/var\n", "", 0),
    ("stat -L -c", STAT_FDS_OUTPUT, "stat: cannot statx '/proc/43/fd/1': No such file\n", 1),
    ("ps -o", PS_COMM_OUTPUT, "", 0),
]


def test_disk_helpers_send_read_only_commands_and_quote_paths():
    backend = CannedBackend(DISK_ANSWERS)
    host = Host(backend)
    assert host.inode_usage("/srv/data dir/x").used == 655360
    scan = storage.largest_files(host, "/srv", limit=2, min_bytes=1 << 20)
    assert [f.path for f in scan.files] == ["/var/log/with\ttab and space.log", "/var/log/0.log"]
    assert scan.unreadable == ("/srv/private",)
    deleted = storage.deleted_open_files(host, "/var")
    assert [(f.pid, f.fd) for f in deleted.files] == [(42, 7), (42, 3)]  # same device as /var
    assert deleted.unreadable == ("/proc/1",)
    assert len(storage.deleted_open_files(host).files) == 3
    assert backend.commands[:2] == [
        "df -P -i '/srv/data dir/x'",
        ["find", "/srv", "-xdev", "-type", "f", "-size", "+1023k", "-printf", r"%s\t%b\t%u\t%p\n"],
    ]
    assert ["ps", "-o", "pid=,user:32=,comm=", "-p", "42,43,44"] in backend.commands
    assert_read_only(backend.commands)


def test_disk_helpers_fail_clearly_and_refuse_bad_arguments():
    host = Host(CannedBackend([("find", "", "find: '/nope': No such file or directory\n", 1)]))
    with pytest.raises(RuntimeError, match=r"failed on canned \(exit status 1\): find: '/nope'"):
        storage.largest_files(host, "/nope")
    with pytest.raises(RuntimeError, match="find /proc"):
        storage.deleted_open_files(host)
    with pytest.raises(ValueError, match="limit must be at least 1"):
        storage.largest_files(host, "/", limit=0)
    with pytest.raises(ValueError, match="min_bytes must not be negative"):
        storage.largest_files(host, "/", min_bytes=-1)


def test_disk_helpers_on_this_machine(local, tmp_path, spawn):
    statvfs = os.statvfs(tmp_path)
    assert local.inode_usage(str(tmp_path)).total == statvfs.f_files
    (tmp_path / "real.bin").write_bytes(b"x" * (3 << 20))
    with open(tmp_path / "sparse.bin", "wb") as sparse:
        sparse.truncate(50 << 20)
    (tmp_path / "small.bin").write_bytes(b"x" * 1000)
    scan = storage.largest_files(local, str(tmp_path), limit=5, min_bytes=1 << 20)
    assert [f.path for f in scan.files] == [str(tmp_path / "real.bin")]
    assert scan.files[0].allocated_bytes >= 3 << 20 and scan.unreadable == ()
    held = tmp_path / "held.log"
    holder = spawn(
        f"""
        import os, time
        held = open({str(held)!r}, "wb")
        held.write(b"x" * (2 << 20))
        held.flush()
        os.unlink({str(held)!r})
        print("ready", flush=True)
        time.sleep(60)
        """
    )
    scan = storage.deleted_open_files(local, str(tmp_path))
    # The holder also inherited pytest's capture files (deleted, in /tmp): pick ours.
    found = [f for f in scan.files if f.pid == holder.pid and f.path == str(held)]
    assert [(f.path, f.size_bytes, f.user) for f in found] == [(str(held), 2 << 20, "root")]
    assert found[0].command.startswith("python") and found[0].allocated_bytes >= 2 << 20
    assert storage.deleted_open_files(local, "/proc").files == ()  # another filesystem
