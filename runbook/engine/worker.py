"""Run a step's code in a daemon thread that the runner can stop waiting for.

Python cannot kill a thread, so a check that hangs is abandoned: the runner
stops the commands it started, records ``timeout`` and moves on with a fresh
thread. An abandoned daemon thread can never keep the process alive.

A ``Lane`` runs a host's checks back to back on its own thread while the host's
thread only watches the clock, so a check costs no handoff between threads; a
``Worker`` runs one job at a time handed to it (actions, and their re-checks).
"""

from __future__ import annotations

import contextlib
import math
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from runbook.safety.audithooks import guarding
from runbook.steps import Step
from runbook.steps import current_step


class Job:
    """One call to run in the worker, with the step it belongs to."""

    __slots__ = ("done", "error", "func", "step", "value")

    def __init__(self, func: Callable[[], Any], step: Step) -> None:
        self.func = func
        self.step = step
        self.done = threading.Event()
        self.error: BaseException | None = None
        #: What the function returned (a check's description of what it measured).
        self.value: Any = None

    def run(self) -> None:
        """Call the function with ``current_step`` set; keep what it returned or raised."""
        token = current_step.set(self.step)
        guard = guarding(self.step) if self.step.read_only else contextlib.nullcontext()
        try:
            with guard:
                self.value = self.func()
        except BaseException as exc:  # every ending is an outcome, even SystemExit
            self.error = exc
        finally:
            current_step.reset(token)
            self.done.set()


class Worker:
    """A daemon thread that runs jobs one at a time."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="runbook-step", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            job.run()

    def run(self, job: Job, timeout: float) -> bool:
        """Run ``job``; return False if it did not finish within ``timeout`` seconds."""
        self._jobs.put(job)
        return job.done.wait(timeout)

    def retire(self) -> None:
        """Let the thread end once its current job returns, if it ever does."""
        self._jobs.put(None)


class Abandoned(BaseException):
    """Raised in a lane's thread when its owner gave up on the job it was running."""


#: Longest wait of a lane's owner between two looks at the clock (keeps Ctrl-C responsive).
_WATCH_INTERVAL = 1.0


class Lane:
    """A daemon thread that runs ``body``, whose jobs the owner's ``watch`` keeps to time.

    ``body`` calls ``run`` for each job: the job runs right there, on the lane's
    thread, and only its deadline is published. The owner is woken early only
    when a job's deadline comes before the time it already waits for.
    """

    def __init__(self, body: Callable[[Lane], None]) -> None:
        self._condition = threading.Condition()
        self._job: Job | None = None
        self._deadline = math.inf
        self._owner_wakes = math.inf
        self._done = False
        self._abandoned = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._main, args=(body,), name="runbook-step", daemon=True
        )
        self._thread.start()

    def _main(self, body: Callable[[Lane], None]) -> None:
        try:
            body(self)
        except Abandoned:
            return  # the owner recorded the job as timed out and moved on
        except BaseException as exc:  # a crashing hook: the owner re-raises it
            self._error = exc
        with self._condition:
            self._done = True
            self._condition.notify_all()

    def run(self, job: Job, timeout: float) -> None:
        """Run ``job`` here within ``timeout``; raise ``Abandoned`` if it overran meanwhile."""
        with self._condition:
            if self._abandoned:
                raise Abandoned
            self._job, self._deadline = job, time.monotonic() + timeout
            if self._deadline < self._owner_wakes:
                self._condition.notify_all()
        job.run()
        with self._condition:
            if self._abandoned:
                raise Abandoned
            self._job, self._deadline = None, math.inf

    def watch(self) -> Job | None:
        """Wait for the lane: None once ``body`` returned, or the job that overran.

        The overrunning job's steps are cancelled and the lane is abandoned. A
        failure of ``body`` outside its jobs is raised here.
        """
        with self._condition:
            while not self._done:
                now = time.monotonic()
                if self._job is not None and now >= self._deadline:
                    self._abandoned = True
                    job = self._job
                    break
                self._owner_wakes = min(self._deadline, now + _WATCH_INTERVAL)
                self._condition.wait(self._owner_wakes - now)
                self._owner_wakes = math.inf
            else:
                if self._error is not None:
                    raise self._error
                return None
        job.step.cancel()
        return job

    def abandon(self) -> None:
        """Give up on the lane (Ctrl-C): stop the job in flight, drop what follows."""
        with self._condition:
            self._abandoned = True
            job = self._job
        if job is not None:
            job.step.cancel()

    def cancel(self) -> None:
        """Stop the job in flight, if any; the lane carries on with the next."""
        job = self._job
        if job is not None:
            job.step.cancel()
