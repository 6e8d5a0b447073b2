"""The built-in runbook library (high-cpu, ...), one runbook per module."""
