"""Read-only enforcement: command policy, in-process guard, audit log, redaction."""
