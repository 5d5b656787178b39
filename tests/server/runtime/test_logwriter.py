"""Log lines are batched, but a warning is written at once and after what was queued."""
from __future__ import annotations

import logging
import os
import select

from devpi.server.runtime.batched_log import BatchedLines, BatchedLogHandler


def _read_now(fd: int) -> bytes:
    out = b""
    while select.select([fd], [], [], 0)[0]:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        out += chunk
    return out


def test_info_waits_for_the_batch_and_a_warning_flushes_in_order():
    r, w = os.pipe()
    lines = BatchedLines(fd=w, interval=3600)  # no timed flush during the test
    log = logging.getLogger("test.logwriter")
    log.propagate = False
    handler = BatchedLogHandler(lines)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        log.info("first")
        lines.add("GET /x 200 0.1ms\n")
        assert _read_now(r) == b""  # queued, not written
        log.warning("trouble")
        assert _read_now(r) == b"INFO first\nGET /x 200 0.1ms\nWARNING trouble\n"
        log.info("later")
        lines.close()
        assert _read_now(r) == b"INFO later\n"
    finally:
        log.removeHandler(handler)
        os.close(r)
        os.close(w)
