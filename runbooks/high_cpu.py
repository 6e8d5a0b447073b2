"""High CPU usage

Symptoms: CPUs busy above 90% for minutes, a high load average, slow responses and
request timeouts. The checks tell a single runaway process from a crowd of runnable
threads, from load that is really tasks waiting for I/O, and from a hypervisor that
takes CPU time away from this machine.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING
from typing import Any

from runbook import action
from runbook import check
from runbook import evidence
from runbook import hookimpl
from runbook import hypothesis
from runbook import rule_in
from runbook import severity_from_findings
from runbook import skip

if TYPE_CHECKING:
    from runbook import Host

PARAMS = {
    # Share of all CPUs' time spent busy that counts as the symptom.
    "cpu_threshold": 90.0,
    # Seconds over which CPU time is sampled.
    "sample_seconds": 1.0,
    # Percent of ONE CPU (as top shows it) above which a process is a runaway.
    "process_cpu_percent": 80.0,
    # Runnable threads per CPU above which the CPUs are oversubscribed.
    "max_runnable_per_cpu": 2.0,
    # Threads on the whole host above which there are too many.
    "max_threads": 10000,
    # Percent of CPU time spent waiting for I/O above which load is really I/O.
    "iowait_percent": 20.0,
    # Threads blocked in uninterruptible sleep (state D), per CPU, above which load is I/O.
    "max_blocked_per_cpu": 1.0,
    # Percent of CPU time taken by the hypervisor above which steal is the cause.
    "steal_percent": 10.0,
    # The systemd unit that the restart action restarts (the operator names it).
    "service": str,
}
TAGS = ["cpu", "performance", "linux"]

runaway = hypothesis("runaway-process", "One process is burning CPU (busy loop, hot spot)")
crowded = hypothesis(
    "too-many-processes", "Too many processes or threads compete for the CPUs (run queue)"
)
io_wait = hypothesis("io-wait", "The load is tasks waiting for I/O, not work for the CPUs")
steal = hypothesis("cpu-steal", "The hypervisor is taking CPU time from this machine")


@check
def cpu_below_threshold(host: Host, params: Any) -> str:
    """Symptom: fail when the CPUs are busy above ``cpu_threshold`` percent of their time."""
    times = host.cpu_times(params.sample_seconds)
    load = host.load_average()
    cpus = host.cpu_count()
    evidence("CPU time (percent of all CPUs)", [times])
    evidence("Load average", [{"cpus": cpus, **dataclasses.asdict(load)}])
    assert times.busy < params.cpu_threshold, (
        f"CPUs are {times.busy:.0f}% busy (threshold {params.cpu_threshold:.0f}%); "
        f"load {load.one:.2f} on {cpus} CPUs"
    )
    return (
        f"CPUs {times.busy:.0f}% busy, threshold {params.cpu_threshold:.0f}%; "
        f"load {load.one:.2f} on {cpus} CPUs"
    )


@check(tests=runaway)
def no_process_dominates(host: Host, params: Any) -> str:
    """Rule ``runaway-process`` out when no process uses ``process_cpu_percent`` of a CPU."""
    top = host.top_processes(by="cpu", limit=10)
    evidence("Top processes by CPU (percent of one CPU, sampled now)", top)
    culprits = [p for p in top if p.cpu_percent >= params.process_cpu_percent]
    assert not culprits, "; ".join(
        f"{p.command} (pid {p.pid}) uses {p.cpu_percent:.0f}% CPU" for p in culprits
    )
    limit = f"limit {params.process_cpu_percent:.0f}%"
    if not top:
        return f"no process listed, {limit}"
    busiest = top[0]
    return (
        f"busiest process {busiest.command} (pid {busiest.pid}) "
        f"{busiest.cpu_percent:.0f}% CPU, {limit}"
    )


@check(tests=crowded)
def run_queue_is_short(host: Host, params: Any) -> str:
    """Rule out a crowd: runnable threads stay below ``max_runnable_per_cpu`` per CPU."""
    count = host.process_count()
    load = host.load_average()
    cpus = host.cpu_count()
    # procs_running counts the command that read it: leave that one out.
    runnable = max(0, count.running - 1)
    evidence("Processes and threads", [count])
    evidence("Load average", [{"cpus": cpus, **dataclasses.asdict(load)}])
    limit = params.max_runnable_per_cpu * cpus
    if runnable <= limit:
        return (
            f"{runnable} thread{'' if runnable == 1 else 's'} runnable on {cpus} CPUs "
            f"({runnable / cpus:.1f} per CPU), "
            f"limit {params.max_runnable_per_cpu:g} per CPU; load {load.one:.2f}"
        )
    running = [p for p in host.top_processes(by="cpu", limit=100_000) if p.state == "R"]
    evidence("Runnable processes (state R, busiest first)", running[:20])
    names = ", ".join(f"{p.command} (pid {p.pid})" for p in running[:5]) or "threads only"
    rule_in(
        f"{runnable} threads are runnable on {cpus} CPUs ({runnable / cpus:.1f} per CPU, "
        f"limit {params.max_runnable_per_cpu:g}); load {load.one:.2f}; busiest: {names}"
    )


@check(tests=crowded)
def thread_count_is_sane(host: Host, params: Any) -> str:
    """Rule out a crowd: the host runs fewer than ``max_threads`` threads."""
    count = host.process_count()
    evidence("Processes and threads", [count])
    if count.threads <= params.max_threads:
        return f"{count.threads} threads in {count.processes} processes, limit {params.max_threads}"
    top = host.top_processes(by="threads", limit=10)
    evidence("Processes with the most threads", top)
    most = top[0]
    rule_in(
        f"{count.threads} threads in {count.processes} processes (limit {params.max_threads}); "
        f"{most.command} (pid {most.pid}) has {most.threads}"
    )


@check(tests=io_wait)
def cpus_not_waiting_for_io(host: Host, params: Any) -> str:
    """Rule ``io-wait`` out when CPUs spend less than ``iowait_percent`` waiting for I/O."""
    times = host.cpu_times(params.sample_seconds)
    evidence("CPU time (percent of all CPUs)", [times])
    assert times.iowait < params.iowait_percent, (
        f"CPUs spend {times.iowait:.0f}% of their time waiting for I/O "
        f"(threshold {params.iowait_percent:.0f}%)"
    )
    return f"CPUs {times.iowait:.0f}% waiting for I/O, threshold {params.iowait_percent:.0f}%"


@check(tests=io_wait)
def few_threads_blocked_on_io(host: Host, params: Any) -> str:
    """Rule ``io-wait`` out when few threads sit in uninterruptible sleep (they count as load)."""
    count = host.process_count()
    load = host.load_average()
    cpus = host.cpu_count()
    evidence("Processes and threads", [count])
    evidence("Load average", [{"cpus": cpus, **dataclasses.asdict(load)}])
    if count.blocked <= params.max_blocked_per_cpu * cpus:
        return (
            f"{count.blocked} threads blocked on I/O on {cpus} CPUs, "
            f"limit {params.max_blocked_per_cpu:g} per CPU; load {load.one:.2f}"
        )
    stuck = [p for p in host.top_processes(by="cpu", limit=100_000) if p.state == "D"]
    evidence("Processes waiting for I/O (state D)", stuck)
    names = ", ".join(f"{p.command} (pid {p.pid})" for p in stuck[:5]) or "threads only"
    rule_in(
        f"{count.blocked} threads are blocked on I/O on {cpus} CPUs, adding to load "
        f"{load.one:.2f}: {names}"
    )


@check(tests=steal)
def hypervisor_not_stealing(host: Host, params: Any) -> str:
    """Rule ``cpu-steal`` out when the hypervisor takes less than ``steal_percent``."""
    times = host.cpu_times(params.sample_seconds)
    evidence("CPU time (percent of all CPUs)", [times])
    assert times.steal < params.steal_percent, (
        f"the hypervisor takes {times.steal:.0f}% of CPU time (steal; "
        f"threshold {params.steal_percent:.0f}%): noisy neighbours or an exhausted CPU quota"
    )
    return (
        f"the hypervisor takes {times.steal:.0f}% of CPU time (steal), "
        f"threshold {params.steal_percent:.0f}%"
    )


@action(mitigates=runaway)
def renice_runaway_process(host: Host, params: Any) -> None:
    """Lower the priority of the processes that use most of a CPU now (they keep running)."""
    top = host.top_processes(by="cpu", limit=10)
    culprits = [p for p in top if p.cpu_percent >= params.process_cpu_percent]
    evidence("Top processes by CPU before renice", top)
    if not culprits:
        skip(f"no process uses {params.process_cpu_percent:.0f}% of a CPU any more")
    for process in culprits:
        result = host.run("renice -n 10 -p %s", process.pid)
        evidence(f"renice {process.command} (pid {process.pid})", result)
        if not result.succeeded:
            raise RuntimeError(f"renice of pid {process.pid} failed: {result.stderr.strip()}")


@action(mitigates=[runaway, crowded])
def restart_service(host: Host, params: Any) -> None:
    """Restart ``service``, when it is the one burning CPU or spawning workers."""
    host.restart_service(params.service)


#: The severity each ruled-in hypothesis suggests (P0..P4 as in docs/incidents.md).
#: One level less when the symptom check ran and did not confirm the symptom; nothing
#: ruled in: P2 when the CPUs are busy, else none.
SEVERITY_BY_FINDING = {
    "runaway-process": "P2",
    "too-many-processes": "P2",
    "io-wait": "P2",
    "cpu-steal": "P2",
}


@hookimpl
def runbook_suggest_severity(result: Any) -> str | None:
    """Suggest a severity from what this run found; None when it found nothing."""
    return severity_from_findings(result, SEVERITY_BY_FINDING, symptom_only="P2")
