"""The test servers' ports: outside the kernel's ephemeral range, one slice per xdist worker."""
from __future__ import annotations

import socket
import threading

from support import ports
from support.server import ServerProcess


def test_worker_slices_are_disjoint_and_below_the_ephemeral_range(monkeypatch):
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "3")
    slices = []
    for worker in ("gw0", "gw1", "gw2"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        slices.append(ports.worker_slice())
    assert all(len(s) > 1000 for s in slices)
    assert slices[0].stop <= slices[1].start and slices[1].stop <= slices[2].start
    assert slices[2].stop <= ports.ephemeral_start()
    assert ports.POOL_START <= slices[0].start


def test_free_port_is_bindable_and_in_this_workers_slice():
    port = ports.free_port()
    assert port in ports.worker_slice()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_a_restart_waits_for_its_port_when_something_else_holds_it(tmp_path):
    """Clients keep the server's URL across a restart, so the restart takes the same port back
    once whatever took it meanwhile lets go, instead of failing at once."""
    server = ServerProcess(tmp_path / "srv").start()
    try:
        port, url = server.port, server.url
        assert port in ports.worker_slice()
        server.stop()
        squatter = socket.socket()
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        threading.Timer(2.0, squatter.close).start()
        server.start()
        assert (server.port, server.url) == (port, url)
        assert "Address already in use" in server.log_text()  # it did meet the squatter
        assert server.api("GET", "/+api").status_code == 200
    finally:
        server.stop()
