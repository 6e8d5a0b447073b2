"""The memory plugin: parsers on literal text, read-only commands through a Host, real use."""

from __future__ import annotations

import pytest
from canned import CannedBackend
from canned import assert_read_only
from runbook.plugins import memory

from runbook.hosts.host import Host

# Memory helpers: breakdown, swap activity, RSS growth, OOM kills

MEMINFO_CACHE_FULL = """\
MemTotal:       16000000 kB
MemFree:          400000 kB
MemAvailable:   11000000 kB
Buffers:          300000 kB
Cached:         10500000 kB
Shmem:            500000 kB
SReclaimable:     200000 kB
SwapTotal:             0 kB
"""
MEMINFO_NO_SHMEM = """\
MemTotal:        8000000 kB
MemFree:         1000000 kB
MemAvailable:    6000000 kB
Buffers:          200000 kB
Cached:          3000000 kB
"""
VMSTAT = "nr_free_pages 100000\npswpin {}\npswpout {}\npgfault 123456\n"
PS_RSS = """\
 4242 alice    100000 python3 leak.py --serve
  777 bob        5000 sleep 1000
  888 carol      6000 old command
  999 dave       9000 shrinking
"""
PS_RSS_LATER = """\
 4242 alice    202400 python3 leak.py --serve
  777 bob        5000 sleep 1000
  888 carol      6000 new command
  999 dave       7976 shrinking
 5000 erin      90000 started later
"""
# Real kernel log shapes: a memcg kill (5.x), a global kill with the old "Kill process"
# line before it (4.x), and journalctl -k -o short-monotonic.
KERNEL_LOG = (
    "[    1.532678] EXT4-fs (vda): mounted filesystem r/w without journal.\n"
    "[ 6287.040909] oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,"
    "task=python3,pid=21096,uid=0\n"
    "[ 6287.040998] Memory cgroup out of memory: Killed process 21096 (python3) "
    "total-vm:75164kB, anon-rss:65152kB, file-rss:6616kB, shmem-rss:0kB, UID:0 "
    "pgtables:188kB oom_score_adj:0\n"
    "[ 7000.100000] Out of memory: Kill process 3141 (java) score 912 or sacrifice child\n"
    "[ 7000.100500] Killed process 3141 (java) total-vm:9000000kB, anon-rss:7340032kB, "
    "file-rss:0kB\n"
    "[ 7100.000000] web1 kernel: Out of memory: Killed process 77 (my (odd) app) total-vm:1kB\n"
)


def test_parse_meminfo_breakdown_counts_reclaimable_cache():
    breakdown = memory.parse_meminfo_breakdown(MEMINFO_CACHE_FULL)
    assert (breakdown.total_kb, breakdown.free_kb, breakdown.available_kb) == (
        16000000,
        400000,
        11000000,
    )
    # Buffers + Cached - Shmem (tmpfs cannot be dropped) + SReclaimable.
    assert breakdown.cache_kb == 300000 + 10500000 - 500000 + 200000
    assert breakdown.free_percent == pytest.approx(2.5)
    assert breakdown.available_percent == pytest.approx(68.75)
    assert memory.parse_meminfo_breakdown(MEMINFO_NO_SHMEM).cache_kb == 3200000  # no Shmem line
    with pytest.raises(ValueError, match="no MemTotal"):
        memory.parse_meminfo_breakdown("MemFree: 1 kB\n")


def test_parse_swap_activity_is_pages_per_second():
    text = VMSTAT.format(1000, 5000) + VMSTAT.format(1600, 5800)
    activity = memory.parse_swap_activity(text, 2.0)
    assert (activity.pages_in_per_s, activity.pages_out_per_s) == (300.0, 400.0)
    assert activity.pages_per_s == 700.0
    with pytest.raises(ValueError, match="two readings"):
        memory.parse_swap_activity(VMSTAT.format(1, 2), 1.0)


def test_parse_memory_growth_orders_by_rate_and_skips_reused_pids():
    text = f"6000.00 100.00\n{PS_RSS}6002.00 101.00\n{PS_RSS_LATER}"
    grown = memory.parse_memory_growth(text)
    assert [process.pid for process in grown] == [4242, 777, 999]  # 888 reused, 5000 new
    leak = grown[0]
    assert (leak.user, leak.rss_before_kb, leak.rss_after_kb) == ("alice", 100000, 202400)
    assert leak.mb_per_s == pytest.approx(50.0)  # 102400 KiB in 2 s
    assert leak.grown_kb == 102400 and leak.args == "python3 leak.py --serve"
    assert grown[-1].mb_per_s < 0
    with pytest.raises(ValueError, match="two process samples"):
        memory.parse_memory_growth(PS_RSS)


def test_parse_oom_kills_reads_memcg_global_and_journal_lines():
    kills = memory.parse_oom_kills(KERNEL_LOG)
    assert [(k.seconds, k.pid, k.command, k.anon_rss_kb, k.in_cgroup) for k in kills] == [
        (6287.040998, 21096, "python3", 65152, True),
        (7000.1005, 3141, "java", 7340032, False),
        (7100.0, 77, "my (odd) app", 0, False),
    ]
    assert memory.parse_oom_kills("[    1.0] nothing to see\nKilled process 1 (x)\n") == []


def test_memory_helpers_send_read_only_commands():
    answers = [
        ("/proc/meminfo", MEMINFO_CACHE_FULL, "", 0),
        ("/proc/vmstat", VMSTAT.format(0, 0) + VMSTAT.format(10, 20), "", 0),
        ("ps -ww -e -o pid=,user:32=,rss=", f"1.00 0\n{PS_RSS}3.00 0\n{PS_RSS_LATER}", "", 0),
    ]
    backend = CannedBackend(answers)
    mem = memory.MemoryHelpers(Host(backend))
    assert mem.breakdown().free_kb == 400000
    assert mem.swap_activity(0.5).pages_per_s == 60.0
    assert mem.growth(0.5)[0].pid == 4242
    assert len(backend.commands) == 3
    assert_read_only(backend.commands)
    assert "sleep 0.500" in backend.commands[1]
    with pytest.raises(ValueError, match="interval must be a positive"):
        mem.growth(0)


def test_kernel_log_falls_back_to_journalctl_then_says_why_it_cannot():
    dmesg_denied = ("dmesg", "", "dmesg: read kernel buffer failed: Operation not permitted\n", 1)
    journal = ("journalctl -k", KERNEL_LOG, "", 0)
    log = memory.kernel_log(Host(CannedBackend([dmesg_denied, journal])))
    assert log.source.startswith("journalctl -k -b -o short-monotonic")
    assert [kill.pid for kill in log.oom_kills()] == [21096, 3141, 77]
    empty = ("journalctl -k", "-- No entries --\n", "No journal files were found.\n", 0)
    backend = CannedBackend([dmesg_denied, empty])
    log = memory.kernel_log(Host(backend))
    assert (log.source, log.text) == ("", "")
    assert log.errors == (
        "dmesg: read kernel buffer failed: Operation not permitted",
        "journalctl -k -b -o short-monotonic --no-pager: No journal files were found.",
    )
    assert_read_only(backend.commands)


def test_memory_helpers_on_this_machine(local, spawn):
    breakdown = memory.memory_breakdown(local)
    assert 0 < breakdown.free_kb <= breakdown.available_kb <= breakdown.total_kb
    assert memory.swap_activity(local, 0.2).seconds == 0.2
    hog = spawn(
        """
        import time
        chunks = []
        print("ready", flush=True)
        while True:
            chunks.append(b"x" * (4 << 20))
            time.sleep(0.05)
        """
    )
    grown = memory.memory_growth(local, 0.5)
    assert grown[0].pid == hog.pid and grown[0].mb_per_s > 20, grown[:3]
