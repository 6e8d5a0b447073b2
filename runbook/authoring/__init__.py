"""Tools for runbook authors: lint, dry-run plans, scaffolding, runbook docs."""
