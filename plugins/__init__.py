"""Built-in plugins shipped with runbook: check libraries and fixtures."""
