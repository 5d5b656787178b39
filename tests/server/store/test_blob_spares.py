"""Spare temp files for mirror downloads: made ahead, replaced once downloads pause, and
taken without waking the thread that replaces them."""
from __future__ import annotations

import os
import time

from devpi.server.store import blobstore as blobs
from devpi.server.store.blobstore import BlobStore


def _wait_for(cond, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def _wakes(native_id: int) -> int:
    """The thread's voluntary context switches: each time it blocked and was woken.

    Involuntary ones (the scheduler preempting it on a busy machine) say nothing about
    the code and are left out."""
    with open(f"/proc/self/task/{native_id}/status") as f:
        return sum(int(line.split()[1]) for line in f if line.startswith("voluntary_ctxt_switches"))


def test_spares_are_replaced_after_a_pause_and_a_burst_of_takes_wakes_the_refiller_once(tmp_path):
    store = BlobStore(tmp_path / "blobs")
    store.keep_spares()
    assert _wait_for(lambda: len(store._spares) == blobs.SPARES)
    refiller = store._refiller
    assert refiller is not None and refiller.native_id is not None
    time.sleep(0.1)
    before = _wakes(refiller.native_id)

    taken = []
    for _ in range(20):  # a burst: each take well inside the pause
        spare = store._take_spare()
        assert spare is not None
        taken.append(spare)
        time.sleep(0.005)
    during = _wakes(refiller.native_id) - before
    assert len(store._spares) == blobs.SPARES - 20  # nothing made during the burst
    # One wake for the burst, plus at most a few waits for the GIL on a busy machine; a
    # refiller woken by each take would block and wake at least 20 times.
    assert during <= 5, f"the refiller woke {during} times during a burst of 20 takes"

    assert _wait_for(lambda: len(store._spares) == blobs.SPARES)  # made again after the pause
    assert {path for _, path in taken}.isdisjoint(store._spares)
    for fd, _ in taken:
        os.close(fd)
