"""The replication tests' pair of real servers."""
from __future__ import annotations

import pytest
from support.replication import primary_args, replica_args, write_secret


@pytest.fixture
def pair(make_server, tmp_path, request):
    """(primary, replica): on SQLite, or (``indirect`` param "postgresql") each with its own
    PostgreSQL database."""
    secret = write_secret(tmp_path)
    if getattr(request, "param", None) == "postgresql":
        cluster = request.getfixturevalue("pg_cluster")
        primary = make_server(storage=cluster.new_database(), args=primary_args(secret))
        replica = make_server(storage=cluster.new_database(), args=replica_args(primary.url, secret))
    else:
        primary = make_server(args=primary_args(secret))
        replica = make_server(args=replica_args(primary.url, secret))
    return primary, replica
