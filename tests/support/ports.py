"""Ports for the servers tests start, taken from below the kernel's ephemeral range.

A server bound to port 0 gets a port from the ephemeral range. Once it stops, any outgoing connection
on the machine may take that port as its source port, and starting the server again on the same port
(so that clients keep their URLs) then fails with "Address already in use": a clean-clone CI run saw
exactly that. The kernel never hands out a port below the ephemeral range as a source port, so a test
server that stops gets its port back. Each pytest-xdist worker draws from its own slice of the pool,
so two workers never race for one port either.
"""
from __future__ import annotations

import os
import random
import socket

POOL_START = 10_000  # below: well-known and registered services a machine may run


def ephemeral_start() -> int:
    """The first port of the kernel's ephemeral range (Linux's default when it cannot be read)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def worker_slice() -> range:
    """This test process's share of the pool: one slice per pytest-xdist worker."""
    pool = range(POOL_START, ephemeral_start())
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    count = max(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1), 1)
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    size = len(pool) // count
    start = pool.start + (index % count) * size
    return range(start, start + size)


def is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port on 127.0.0.1 nothing listens on, from this worker's slice."""
    ports = worker_slice()
    for _ in range(200):
        port = random.choice(ports)
        if is_free(port):
            return port
    raise RuntimeError(f"no free port in {ports.start}-{ports.stop - 1} after 200 tries")
