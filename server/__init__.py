"""devpi.server: the HTTP API, storage, mirror and replication (no HTML)."""
__version__ = "0.1.0"
