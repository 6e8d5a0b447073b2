"""Allow ``python -m runbook``."""

from runbook.cli.main import main

main()
