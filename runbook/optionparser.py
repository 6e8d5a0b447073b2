"""What plugins hand ``runbook_addoption``: a place to declare options of ``runbook run``."""

from __future__ import annotations

from typing import Any

import click


class OptionParser:
    """Collects the ``runbook run`` options that plugins declare.

    An option's value reaches plugins as ``config.get(NAME)`` (``NAME`` is the
    option's destination, ``--junit-xml`` -> ``junit_xml``), which falls back to
    the configuration key of the same name when the option is not given.
    """

    def __init__(self) -> None:
        self.options: list[click.Option] = []

    def addoption(self, *flags: str, **attrs: Any) -> None:
        """Declare an option: ``flags`` and ``attrs`` as for ``click.Option``.

        ``parser.addoption("--junit-xml", metavar="PATH", help="...")``
        """
        self.options.append(click.Option(list(flags), **attrs))
