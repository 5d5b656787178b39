"""What the plugin manager costs at start: two installs of devpi started in turn (issue 25).

    python tests/bench/bench_plugin_startup.py --python base=/path/venv-a/bin/python \\
        --python plugins=/path/venv-b/bin/python [--starts 15]

Each ``--python`` is an interpreter with one version of devpi installed (non-editable, so
both run from byte-compiled wheels), e.g. the commit before the plugin system and the one
with it. For each, one server dir is initialised first (not timed); then the servers are
started K times each, interleaved, the order alternating per round, as

    python -m devpi.server --serverdir DIR --host 127.0.0.1 --port P --offline --pin-cpu off

and the bench measures from spawning the process to the first 200 of ``GET /+api``
(polled every 5 ms), and the CPU seconds (user+system) the process used by then. It
prints the median with min–max per install, and the machine's load average.
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_once(python: str, serverdir: Path, timeout: float = 60) -> tuple[float, float]:
    port = free_port()
    env = {**os.environ, "no_proxy": "127.0.0.1"}
    t0 = time.perf_counter()
    proc = subprocess.Popen([python, "-m", "devpi.server", "--serverdir", str(serverdir), "--host", "127.0.0.1",
                             "--port", str(port), "--offline", "--pin-cpu", "off"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        while time.perf_counter() - t0 < timeout:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/+api", timeout=5) as r:
                    if r.status == 200:
                        return time.perf_counter() - t0, cpu_seconds(proc.pid)
            except OSError:
                time.sleep(0.005)
        raise RuntimeError(f"{python} did not answer in {timeout}s")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--python", action="append", required=True, metavar="LABEL=PATH")
    p.add_argument("--starts", type=int, default=15)
    args = p.parse_args()
    installs = [tuple(item.split("=", 1)) for item in args.python]
    base = Path(tempfile.mkdtemp(prefix="bench-plugin-startup-"))
    dirs = {label: base / label for label, _ in installs}
    for label, python in installs:
        start_once(python, dirs[label])  # initialise the server dir (not timed)
    results: dict[str, list[tuple[float, float]]] = {label: [] for label, _ in installs}
    for k in range(args.starts):
        order = installs if k % 2 == 0 else list(reversed(installs))
        for label, python in order:
            results[label].append(start_once(python, dirs[label]))
    print(f"load average: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}, "
          f"{args.starts} starts each")
    print(f"{'install':<12} {'first 200 ms (median, min-max)':>32} {'CPU ms (median, min-max)':>28}")
    for label, _ in installs:
        walls = [w * 1000 for w, _ in results[label]]
        cpus = [c * 1000 for _, c in results[label]]
        print(f"{label:<12} {statistics.median(walls):>14.0f} ({min(walls):.0f}-{max(walls):.0f}){'':>8}"
              f"{statistics.median(cpus):>12.0f} ({min(cpus):.0f}-{max(cpus):.0f})")


if __name__ == "__main__":
    main()
