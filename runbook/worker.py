"""Run a step's code in a daemon thread that the runner can stop waiting for.

Python cannot kill a thread, so a check that hangs is abandoned: the runner
stops the commands it started, records ``timeout`` and moves on with a fresh
worker. The abandoned daemon thread can never keep the process alive.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any

from runbook.audithooks import guarding
from runbook.steps import Step
from runbook.steps import current_step


class Job:
    """One call to run in the worker, with the step it belongs to."""

    __slots__ = ("done", "error", "func", "step")

    def __init__(self, func: Callable[[], Any], step: Step) -> None:
        self.func = func
        self.step = step
        self.done = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        """Call the function with ``current_step`` set; keep what it raised."""
        token = current_step.set(self.step)
        guard = guarding(self.step) if self.step.read_only else contextlib.nullcontext()
        try:
            with guard:
                self.func()
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
