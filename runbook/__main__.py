"""Allow ``python -m runbook``."""

from runbook.cli import main

main()
