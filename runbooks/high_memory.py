"""High memory usage.

Symptoms: little memory available, the machine swapping or slow, processes
killed by the OOM killer, monitoring showing memory "used" near 100%. The checks
tell one process that keeps growing (a leak) or holds most of the memory from
swap thrashing and from OOM kills in the kernel log, and say when memory only
looks used because the kernel caches files, which it gives back on demand (then
the cache is not the problem). Dropping the caches by hand is never the fix: it
only slows the machine down while the cache refills, so no action does it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any

from runbook import action
from runbook import check
from runbook import evidence
from runbook import hookimpl
from runbook import hypothesis
from runbook import inconclusive
from runbook import rule_in
from runbook import rule_out
from runbook import severity_from_findings
from runbook import skip

if TYPE_CHECKING:
    from runbook.plugins.memory import MemoryHelpers

    from runbook import Host

PARAMS = {
    # MemAvailable below this percent of MemTotal is the symptom.
    "available_percent": 10.0,
    # Seconds between the two samples of RSS and of swap counters.
    "sample_seconds": 5.0,
    # A process whose RSS grows faster than this (MiB per second) during the sample leaks.
    "leak_mb_per_s": 2.0,
    # A process holding more than this percent of memory (RSS) is ruled in as well.
    "process_memory_percent": 50.0,
    # Pages swapped in plus out per second above which the machine thrashes.
    "swap_pages_per_s": 100.0,
    # OOM kills younger than this many minutes count.
    "oom_window_minutes": 60.0,
    # Memory looks used when MemFree is below this percent of MemTotal ...
    "cache_free_percent": 10.0,
    # ... but it is cache when MemAvailable is still at least this percent.
    "cache_available_percent": 30.0,
    # The service that restart_service restarts (the one the checks named).
    "service": "",
}
TAGS = ["memory", "performance", "linux"]

MIB = 1024  # KiB per MiB

leak = hypothesis("memory-leak", "One process keeps growing (a leak) or holds most of the memory")
thrashing = hypothesis("swap-thrashing", "The machine is thrashing: pages move to and from swap")
oom = hypothesis("oom-kills", "The kernel's OOM killer has been killing processes")
cache = hypothesis(
    "page-cache",
    "Memory only looks used: it is page cache the kernel reclaims on demand (cache is no problem)",
)


def _mib(kib: float) -> str:
    return f"{kib / MIB:.0f} MiB"


@check
def memory_available(mem: MemoryHelpers, params: Any) -> str:
    """Symptom: fail when MemAvailable is below ``available_percent`` of MemTotal."""
    memory = mem.breakdown()
    evidence("Memory (/proc/meminfo, KiB)", [memory])
    assert memory.available_percent >= params.available_percent, (
        f"only {_mib(memory.available_kb)} of {_mib(memory.total_kb)} available "
        f"({memory.available_percent:.0f}%, threshold {params.available_percent:g}%)"
    )
    return (
        f"{_mib(memory.available_kb)} of {_mib(memory.total_kb)} available "
        f"({memory.available_percent:.0f}%), threshold {params.available_percent:g}%"
    )


@check(tests=leak)
def no_process_keeps_growing(mem: MemoryHelpers, params: Any) -> str:
    """Rule ``memory-leak`` out when no RSS grows by ``leak_mb_per_s`` over the sample."""
    growth = mem.growth(params.sample_seconds)
    evidence(f"Fastest-growing processes (RSS over {params.sample_seconds:g} s)", growth[:10])
    culprits = [process for process in growth if process.mb_per_s > params.leak_mb_per_s]
    assert not culprits, "; ".join(
        f"pid {p.pid} ({p.args[:60]}) grew {_mib(p.grown_kb)} in {params.sample_seconds:g} s "
        f"({p.mb_per_s:.1f} MiB/s) to {_mib(p.rss_after_kb)}"
        for p in culprits[:3]
    )
    limit = f"limit {params.leak_mb_per_s:g} MiB/s"
    if not growth:
        return f"no process seen in both samples, {limit}"
    fastest = growth[0]
    program = fastest.args.split(maxsplit=1)[0].rpartition("/")[2] if fastest.args else "?"
    return (
        f"fastest-growing process {program} (pid {fastest.pid}) {fastest.mb_per_s:.1f} MiB/s "
        f"over {params.sample_seconds:g} s, {limit}"
    )


@check(tests=leak)
def no_process_holds_most_memory(host: Host, params: Any) -> str:
    """Rule ``memory-leak`` out when no process holds ``process_memory_percent`` of memory."""
    top = host.top_processes(by="memory", limit=10)
    evidence("Top processes by memory (RSS)", top)
    culprits = [p for p in top if p.memory_percent > params.process_memory_percent]
    assert not culprits, "; ".join(
        f"{p.command} (pid {p.pid}) holds {_mib(p.rss_kb)} ({p.memory_percent:.0f}% of "
        f"memory, threshold {params.process_memory_percent:g}%)"
        for p in culprits
    )
    threshold = f"threshold {params.process_memory_percent:g}%"
    if not top:
        return f"no process listed, {threshold}"
    largest = top[0]
    return (
        f"largest process {largest.command} (pid {largest.pid}) holds {_mib(largest.rss_kb)} "
        f"({largest.memory_percent:.0f}% of memory), {threshold}"
    )


@check(tests=thrashing)
def swap_is_quiet(host: Host, mem: MemoryHelpers, params: Any) -> str:
    """Rule ``swap-thrashing`` out when fewer than ``swap_pages_per_s`` pages move to swap."""
    memory = host.memory()
    activity = mem.swap_activity(params.sample_seconds)
    evidence(
        "Swap",
        [
            {
                "swap_total_kb": memory.swap_total_kb,
                "swap_used_kb": memory.swap_used_kb,
                "pages_in_per_s": activity.pages_in_per_s,
                "pages_out_per_s": activity.pages_out_per_s,
                "seconds": activity.seconds,
            }
        ],
    )
    assert activity.pages_per_s <= params.swap_pages_per_s, (
        f"{activity.pages_per_s:.0f} pages/s move to and from swap "
        f"({activity.pages_in_per_s:.0f} in, {activity.pages_out_per_s:.0f} out; threshold "
        f"{params.swap_pages_per_s:g}); {_mib(memory.swap_used_kb)} of swap in use"
    )
    if memory.swap_total_kb == 0:
        rule_out("no swap is configured, so the machine cannot thrash")
    return (
        f"{activity.pages_per_s:.0f} pages/s to and from swap, threshold "
        f"{params.swap_pages_per_s:g}; {_mib(memory.swap_used_kb)} of swap in use"
    )


@check(tests=oom)
def no_recent_oom_kills(host: Host, mem: MemoryHelpers, params: Any) -> str:
    """Rule ``oom-kills`` out when the kernel log shows no OOM kill in ``oom_window_minutes``."""
    log = mem.kernel_log()
    if not log.source:
        evidence("Kernel log sources tried", "\n".join(log.errors))
        inconclusive(
            "cannot read the kernel log (" + "; ".join(log.errors) + "); run as root to see "
            "OOM kills"
        )
    since = host.uptime() - params.oom_window_minutes * 60
    every_kill = log.oom_kills()
    kills = [kill for kill in every_kill if kill.seconds >= since]
    evidence(f"OOM kills in the last {params.oom_window_minutes:g} min ({log.source})", kills)
    if kills:
        rule_in(
            f"{len(kills)} OOM kill(s) in the last {params.oom_window_minutes:g} min: "
            + "; ".join(
                f"{k.command} (pid {k.pid}, {_mib(k.anon_rss_kb)})"
                + (" at its cgroup's memory limit" if k.in_cgroup else "")
                for k in kills[-3:]
            )
        )
    older = f"; {len(every_kill)} older" if every_kill else ""
    return f"no OOM kill in the last {params.oom_window_minutes:g} min ({log.source}{older})"


@check(tests=cache)
def memory_is_really_used(mem: MemoryHelpers, params: Any) -> str:
    """Rule ``page-cache`` in when MemFree is low although MemAvailable is high (cache)."""
    memory = mem.breakdown()
    evidence(
        "Free, available and cache",
        [
            {
                "free": _mib(memory.free_kb),
                "free_percent": round(memory.free_percent, 1),
                "available": _mib(memory.available_kb),
                "available_percent": round(memory.available_percent, 1),
                "reclaimable_cache": _mib(memory.cache_kb),
                "shmem": _mib(memory.shmem_kb),
            }
        ],
    )
    if (
        memory.free_percent < params.cache_free_percent
        and memory.available_percent >= params.cache_available_percent
    ):
        rule_in(
            f"only {memory.free_percent:.0f}% of memory is free but "
            f"{memory.available_percent:.0f}% is available: {_mib(memory.cache_kb)} is page "
            "cache the kernel reclaims on demand; do not drop caches"
        )
    if memory.free_percent >= params.cache_free_percent:
        return (
            f"{memory.free_percent:.0f}% of memory is free (threshold "
            f"{params.cache_free_percent:g}%): memory does not look used"
        )
    return (
        f"only {memory.available_percent:.0f}% of memory is available (threshold "
        f"{params.cache_available_percent:g}%): it is used, not page cache"
    )


@action(mitigates=[leak, oom])
def restart_service(host: Host, params: Any) -> None:
    """Restart ``service``, the one the checks named as growing or OOM-killed."""
    if not params.service:
        skip("set the service parameter to the service of a process the checks named")
    host.restart_service(params.service)


#: The severity each ruled-in hypothesis suggests (P0..P4 as in docs/incidents.md):
#: page cache is no problem, so P4 (informational).
#: One level less when the symptom check ran and did not confirm the symptom; nothing
#: ruled in: P2 when little memory is available, else none.
SEVERITY_BY_FINDING = {
    "memory-leak": "P2",
    "swap-thrashing": "P2",
    "oom-kills": "P2",
    "page-cache": "P4",
}


@hookimpl
def runbook_suggest_severity(result: Any) -> str | None:
    """Suggest a severity from what this run found; None when it found nothing."""
    return severity_from_findings(result, SEVERITY_BY_FINDING, symptom_only="P2")
