"""The SSH backend (paramiko): configuration, connection, host keys, channels."""
