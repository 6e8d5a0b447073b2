"""Targets: the Host interface, its backends (local, cassette) and target lists."""
