"""The engine: runs a runbook's checks and actions on every target."""
