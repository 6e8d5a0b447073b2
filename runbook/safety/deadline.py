"""Stop pure-Python work that runs past its deadline, in whichever thread runs it.

The shell parser (bashlex) can loop without end on a few short inputs, allocating
all the while. The guard cannot afford a subprocess for every command, and a
tracing hook would slow every parse threefold, so one watchdog thread raises
``DeadlineExceeded`` inside the late thread instead (CPython's
``PyThreadState_SetAsyncExc``, delivered between two bytecodes). A bound on time
also bounds the memory the work can take.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
import time
from collections.abc import Iterator

from runbook.safety.audithooks import framework_call


class DeadlineExceeded(BaseException):
    """Raised inside a thread whose work ran past its deadline.

    A ``BaseException``, so that the interrupted code's ``except Exception`` cannot
    swallow it.
    """


class _Watchdog:
    """One daemon thread that interrupts threads still working past their deadline."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._deadlines: dict[int, float] = {}  # thread ident -> time.monotonic() deadline
        self._fired: set[int] = set()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def limit(self, seconds: float) -> Iterator[None]:
        """Raise ``DeadlineExceeded`` in the calling thread if the block outlives ``seconds``."""
        ident = threading.get_ident()
        self.start()
        with self._condition:
            self._fired.discard(ident)
            self._deadlines[ident] = time.monotonic() + seconds
            self._condition.notify()
        try:
            yield
        finally:
            with self._condition:
                self._deadlines.pop(ident, None)
                fired = ident in self._fired
                self._fired.discard(ident)
            if fired:
                # Fired as the block ended: withdraw the exception if it is still pending.
                _set_async_exc(ident, None)

    def start(self) -> None:
        """Start the watching thread unless it runs (it is gone after a fork)."""
        with self._condition:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._watch, name="runbook-parse-deadline", daemon=True
                )
                self._thread.start()

    def _watch(self) -> None:
        with self._condition:
            while True:
                now = time.monotonic()
                for ident, deadline in list(self._deadlines.items()):
                    if deadline <= now:
                        # Once per block: the thread cannot be interrupted again later.
                        del self._deadlines[ident]
                        self._fired.add(ident)
                        _set_async_exc(ident, DeadlineExceeded)
                soonest = min(self._deadlines.values(), default=None)
                self._condition.wait(None if soonest is None else max(soonest - now, 0.001))


def _set_async_exc(ident: int, exception: type[BaseException] | None) -> None:
    exc = ctypes.py_object(exception) if exception is not None else None
    # Framework code: the in-process guard refuses ctypes to a check, and this thread
    # may have been started from one.
    with framework_call():
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), exc)


_WATCHDOG = _Watchdog()


def start() -> None:
    """Start the watchdog now, outside any check, so that no check's guard is its own."""
    _WATCHDOG.start()


def limit(seconds: float) -> contextlib.AbstractContextManager[None]:
    """Bound the time the calling thread spends in the block (see ``DeadlineExceeded``)."""
    return _WATCHDOG.limit(seconds)
