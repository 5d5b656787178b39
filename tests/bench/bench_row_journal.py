"""What the row journal (store/row_journal.py) adds to a write transaction (issue 29).

In one process, on a fresh SQLite database (or ``--storage URL``): blocks of write
transactions, each creating a release with its metadata (what an upload's transaction
writes to the catalogue, without the file), alternately with the journal and without it
(``Storage.write(journaled=False)``, which only an import uses), the order alternating
per round. Prints the median time per transaction of each and the paired ratio per round.

    python tests/bench/bench_row_journal.py [--rounds 10] [--block 50] [--storage URL]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from devpi.server.store import catalog
from devpi.server.store.migrate import ensure_schema
from devpi.server.store.storage import Storage

DESCRIPTION = "A package that does things. " * 200  # about 5.6 KB, a typical long description


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--block", type=int, default=50)
    ap.add_argument("--storage", help="postgresql://... (default: SQLite in a temp dir)")
    a = ap.parse_args()
    url = a.storage or f"sqlite:///{Path(tempfile.mkdtemp()) / 'db.sqlite'}"
    storage = Storage(url)
    ensure_schema(storage)
    storage.init_serial()
    with storage.write("bench") as tx:
        catalog.create_user(tx, "bench", "", {})
        catalog.create_index(tx, "bench", "dev", {"type": "stage", "bases": []})
    counter = iter(range(10**9))

    def block(journaled: bool) -> float:
        start = time.perf_counter()
        for _ in range(a.block):
            n = next(counter)
            with storage.write("bench", journaled=journaled) as tx:
                ix = catalog.get_index(tx.conn, "bench", "dev")
                project = catalog.ensure_project(tx, ix, f"pkg{n}", f"pkg{n}")
                catalog.put_release(tx, ix, project, "1.0", {"name": f"pkg{n}", "version": "1.0",
                                                             "summary": "bench", "description": DESCRIPTION})
                tx.record("release", index=ix.fullname, project=f"pkg{n}", version="1.0")
        return (time.perf_counter() - start) / a.block * 1000

    block(True), block(False)  # warm-up
    on, off, ratios = [], [], []
    for r in range(a.rounds):
        if r % 2:
            t_off, t_on = block(False), block(True)
        else:
            t_on, t_off = block(True), block(False)
        on.append(t_on)
        off.append(t_off)
        ratios.append(t_on / t_off)
    print(f"journal on : {statistics.median(on):.2f} ms per write ({min(on):.2f}-{max(on):.2f})")
    print(f"journal off: {statistics.median(off):.2f} ms per write ({min(off):.2f}-{max(off):.2f})")
    print(f"on / off per round: x{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}), "
          f"n={a.rounds}, {a.block} writes a block, {url.split(':')[0]}")
    storage.close()


if __name__ == "__main__":
    main()
