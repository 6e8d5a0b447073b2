"""The backend protocol: how a host is reached, behind ``Host``.

A leaf of the package (it imports nothing from runbook), so that hook
specifications and plugins can name backends without importing ``Host``.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
from typing import Any
from typing import Protocol
from typing import runtime_checkable


class Backend(Protocol):
    """How a host is reached. A backend executes; ``Host`` decides and records.

    A backend may also be ``Connecting`` (reach the target before the first
    check) and ``Exchanging`` (record and replay plugin clients' exchanges);
    ``Host`` asks for those two capabilities in one place each.
    """

    name: str
    uri: str

    def execute(
        self,
        command: str | Sequence[str],
        timeout: float,
        on_cancel: Callable[[Callable[[], None]], Callable[[], None]] | None,
    ) -> tuple[str, str, int]:
        """Run a shell string or an argv list; return (stdout, stderr, exit status).

        Raise ``CommandTimeout`` when ``timeout`` passes. ``on_cancel`` registers
        a callback that must stop the command (it returns an unregister function).
        """
        ...

    def close(self) -> None:
        """Release connections and processes."""
        ...


@runtime_checkable
class Connecting(Protocol):
    """A backend that reaches its target before the first check (SSH, a cassette)."""

    def connect(self) -> None:
        """Reach the target; raise ``HostUnavailable`` if it cannot."""
        ...


@runtime_checkable
class Exchanging(Protocol):
    """A backend that answers plugin clients' exchanges itself (recording, replaying)."""

    def exchange(self, kind: str, request: str, perform: Callable[[], Any]) -> Any:
        """Return the answer to ``request``: from ``perform()`` or from a recording."""
        ...
