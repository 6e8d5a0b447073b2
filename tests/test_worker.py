"""Lanes: a host's jobs run back to back on one thread while the owner keeps the time."""

from __future__ import annotations

import threading
import time

import pytest

from runbook.engine.worker import Job
from runbook.engine.worker import Lane
from runbook.steps import Step


def job(name: str, func) -> Job:
    return Job(func, Step(name, "check", "local", read_only=False))


def test_jobs_run_back_to_back_on_the_lanes_thread():
    ran: list[tuple[str, int]] = []

    def body(lane: Lane) -> None:
        for name in ("a", "b", "c"):
            lane.run(job(name, lambda n=name: ran.append((n, threading.get_ident()))), 5)

    assert Lane(body).watch() is None
    assert [name for name, _ in ran] == ["a", "b", "c"]
    threads = {ident for _, ident in ran}
    assert len(threads) == 1 and threading.get_ident() not in threads


def test_a_job_that_overruns_is_returned_cancelled_and_what_follows_is_dropped():
    ran: list[str] = []
    release = threading.Event()

    def body(lane: Lane) -> None:
        lane.run(job("quick", lambda: ran.append("quick")), 5)
        lane.run(job("stuck", lambda: release.wait(10)), 0.2)
        ran.append("after stuck")  # the lane was abandoned: never reached

    started = time.monotonic()
    overrun = Lane(body).watch()
    assert time.monotonic() - started < 2  # a short timeout wakes the owner early
    assert overrun is not None and overrun.step.id == "stuck"
    assert overrun.step.cancelled
    release.set()
    time.sleep(0.2)
    assert ran == ["quick"]


def test_a_failure_outside_the_jobs_is_raised_to_the_owner():
    def body(lane: Lane) -> None:
        lane.run(job("fine", lambda: None), 5)
        raise RuntimeError("a hook crashed")

    with pytest.raises(RuntimeError, match="a hook crashed"):
        Lane(body).watch()


def test_an_error_inside_a_job_stays_on_the_job():
    def fail() -> None:
        raise ValueError("check failed")

    jobs = [job("fails", fail)]
    assert Lane(lambda lane: lane.run(jobs[0], 5)).watch() is None
    assert isinstance(jobs[0].error, ValueError)


def test_cancel_stops_the_job_in_flight_and_the_lane_carries_on():
    ran: list[str] = []
    stopped = threading.Event()

    def waits() -> None:
        stopped.wait(10)
        ran.append("stopped")

    def body(lane: Lane) -> None:
        first = job("waits", waits)
        first.step.on_cancel(stopped.set)
        lane.run(first, 30)
        lane.run(job("next", lambda: ran.append("next")), 5)

    lane = Lane(body)
    time.sleep(0.2)
    lane.cancel()
    assert lane.watch() is None
    assert ran == ["stopped", "next"]
