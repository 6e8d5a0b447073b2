"""Incidents: the store, the recorder plugin, status updates, post-mortems."""
