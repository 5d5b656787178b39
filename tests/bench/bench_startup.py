"""Start-up to the first HTTP 200: ``devpi server`` against pypiserver (issue 32).

Standalone: ``python tests/bench/bench_startup.py [--starts K] [--uploads N] [--json out.json]``
with this checkout's venv (its ``devpi`` command is the one timed).

It prepares one server dir for each server (not timed): ours by one start that
initialises it, then a user, a private index without bases and N uploaded wheels;
pypiserver's ``packages/`` dir holding the same wheels. Then it starts each server K
times, interleaved, the order rotating per round, exactly as the shared bench's
adapters start them:

  devpi server --serverdir DIR --host 127.0.0.1 --port P --mirror-url URL --root-passwd root
  pypi-server run -p P --host 127.0.0.1 -a . -P . --disable-fallback DIR/packages

and measures, as the shared bench's S4 does (urllib GETs every 10 ms, the same
hermetic proxy settings):

* first 200: from spawning the process to the first 200 of the private simple root
  (ours ``/bench/dev/+simple/``, pypiserver's ``/simple/``): the same request for both;
* page 200: until one project page answers 200 right after (``.../simple/pkg0/``);
* CPU: user+system seconds the process used up to the first 200 (less noisy than the
  wall clock on a busy machine);
* RSS right after the page (VmRSS of the process and its children).

Our checkout is an editable install, which has no cached bytecode (``.pyc``) unless
Python writes it on import, and ``PYTHONDONTWRITEBYTECODE=1`` (set on the project's
machines) stops that: every start then compiles the server's sources again, while the
peers' wheels were byte-compiled by pip at install. So before timing, the bench
byte-compiles the devpi packages of each timed install (``compileall``, what ``pip
install`` does for a wheel); ``--source-only`` skips that and times the checkout as it is.

It prints medians with min-max, the ratio ours/pypiserver per pair (one round), and the
load average before and after. The targets: ours at most 1.5x pypiserver, and under
0.4 s on an idle machine.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/: support.*

from support.dists import write_wheel  # noqa: E402
from support.server import DEAD_UPSTREAM, ServerProcess  # noqa: E402

PYPISERVER = Path("/tmp/bench/venvs/pypiserver/bin/pypi-server")
# as the shared bench's harness/proc.py: anything not on loopback fails at once
HERMETIC_ENV = {
    "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
    "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
    "ALL_PROXY": "http://127.0.0.1:9", "all_proxy": "http://127.0.0.1:9",
    "no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost",
}
POLL_INTERVAL = 0.01
TIMEOUT = 60.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2.0) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:  # refused, reset, timed out (URLError and socket.timeout are OSErrors)
        return 0


def tree(pid: int) -> list[int]:
    """The process and its descendants."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            children = []
        todo.extend(int(c) for c in children)
    return pids


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def rss_mib(pids: list[int]) -> float:
    kib = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    kib += int(line.split()[1])
        except OSError:
            continue
    return kib / 1024


class Subject:
    """One server under test: how to start it and which pages to ask for."""

    def __init__(self, name: str, argv: list[str], root: str, page: str, workdir: Path):
        self.name, self.argv, self.root, self.page, self.workdir = name, argv, root, page, workdir

    def start_once(self) -> dict[str, float]:
        port = free_port()
        argv = [a.replace("{port}", str(port)) for a in self.argv]
        base = f"http://127.0.0.1:{port}"
        with open(self.workdir / f"{self.name}.log", "ab") as log:
            t0 = time.perf_counter()
            proc = subprocess.Popen(argv, env={**os.environ, **HERMETIC_ENV}, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.workdir)
        try:
            first = self._wait(proc, base + self.root, t0)
            cpu = cpu_seconds(tree(proc.pid))
            page = self._wait(proc, base + self.page, t0)
            rss = rss_mib(tree(proc.pid))
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        return {"first_200_s": first, "page_200_s": page, "cpu_s": cpu, "rss_mib": rss}

    def _wait(self, proc: subprocess.Popen, url: str, t0: float) -> float:
        deadline = t0 + TIMEOUT
        while time.perf_counter() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {proc.returncode}; see {self.workdir}")
            if http_status(url) == 200:
                return time.perf_counter() - t0
            time.sleep(POLL_INTERVAL)
        raise TimeoutError(f"{self.name}: no 200 from {url} in {TIMEOUT} s")


def prepare_ours(workdir: Path, wheels: list[Path], upstream: str) -> Subject:
    serverdir = workdir / "devpi-server"
    s = ServerProcess(serverdir, mirror_url=upstream).start()  # the first start creates the dir
    try:
        auth = s.create_user("bench", "bench")
        s.create_index(auth, "dev", bases=[])
        for wheel in wheels:
            r = s.upload("bench/dev", wheel, ("bench", "bench"))
            assert r.status_code == 200, r.text
    finally:
        assert s.stop() == 0
    devpi = Path(sys.executable).with_name("devpi")
    argv = [str(devpi), "server", "--serverdir", str(serverdir), "--host", "127.0.0.1", "--port", "{port}",
            "--mirror-url", upstream, "--root-passwd", "root"]
    return Subject("devpi", argv, "/bench/dev/+simple/", "/bench/dev/+simple/pkg0/", workdir)


def prepare_pypiserver(workdir: Path, wheels: list[Path], binary: Path) -> Subject:
    packages = workdir / "pypiserver" / "packages"
    packages.mkdir(parents=True)
    for wheel in wheels:
        shutil.copy(wheel, packages)
    argv = [str(binary), "run", "-p", "{port}", "--host", "127.0.0.1", "-a", ".", "-P", ".",
            "--disable-fallback", str(packages)]
    return Subject("pypiserver", argv, "/simple/", "/simple/pkg0/", workdir)


def baseline(ours: Subject, devpi: Path, workdir: Path) -> Subject:
    """Another devpi install, started the same way on a copy of our prepared server dir."""
    serverdir = workdir / "devpi-server"
    copy = workdir / "baseline-server"
    shutil.copytree(serverdir, copy, ignore=shutil.ignore_patterns(".lock"))
    argv = [str(devpi)] + [str(copy) if a == str(serverdir) else a for a in ours.argv[1:]]
    return Subject("baseline", argv, ours.root, ours.page, workdir)


def byte_compile(python: Path) -> None:
    """Write the .pyc files of devpi's packages in that environment, as pip does at install."""
    dirs = subprocess.run([str(python), "-c", "import devpi.server, devpi.client, devpi.web; "
                           "print('\\n'.join(p for m in (devpi.server, devpi.client, devpi.web) for p in m.__path__))"],
                          capture_output=True, text=True, check=True).stdout.split()
    subprocess.run([str(python), "-m", "compileall", "-q", *dirs], check=True, stdout=subprocess.DEVNULL)


def fmt(values: list[float], unit: str = "", scale: float = 1.0, digits: int = 3) -> str:
    v = [x * scale for x in values]
    return f"{statistics.median(v):.{digits}f}{unit} ({min(v):.{digits}f}-{max(v):.{digits}f})"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--starts", type=int, default=10, help="timed starts per server (default: 10)")
    ap.add_argument("--uploads", type=int, default=5, help="wheels in the private index (default: 5)")
    ap.add_argument("--upstream", default=DEAD_UPSTREAM,
                    help="--mirror-url of ours (root/pypi; start-up never contacts it)")
    ap.add_argument("--pypiserver", type=Path, default=PYPISERVER, help="pypi-server executable")
    ap.add_argument("--baseline", type=Path, metavar="DEVPI",
                    help="also time this other `devpi` executable (e.g. an older checkout's venv) on a copy "
                         "of our server dir, as 'baseline'")
    ap.add_argument("--source-only", action="store_true",
                    help="do not byte-compile the devpi packages first (time an editable checkout as it is)")
    ap.add_argument("--json", type=Path, help="write the raw figures here")
    a = ap.parse_args(argv)

    if not a.source_only:
        for devpi in [Path(sys.executable).with_name("devpi"), *([a.baseline] if a.baseline else [])]:
            byte_compile(devpi.with_name("python"))
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        workdir = Path(tmp)
        dists = workdir / "dists"
        dists.mkdir()
        wheels = [write_wheel(dists, f"pkg{i}", f"1.{i}") for i in range(a.uploads)]
        subjects = [prepare_ours(workdir, wheels, a.upstream)]
        if a.baseline:
            subjects.append(baseline(subjects[0], a.baseline, workdir))
        if a.pypiserver.exists():
            subjects.append(prepare_pypiserver(workdir, wheels, a.pypiserver))
        else:
            print(f"(no {a.pypiserver}: ours alone; install the shared bench's pypiserver venv)")
        for subject in subjects:  # untimed: caches of the file system and .pyc files
            subject.start_once()
        runs: dict[str, list[dict]] = {s.name: [] for s in subjects}
        for k in range(a.starts):
            order = subjects[k % len(subjects):] + subjects[:k % len(subjects)]
            for subject in order:
                rec = subject.start_once()
                runs[subject.name].append(rec)
                print(f"round {k} {subject.name:10s} first 200 {rec['first_200_s']:.3f} s  "
                      f"page {rec['page_200_s']:.3f} s  cpu {rec['cpu_s']:.2f} s  rss {rec['rss_mib']:.1f} MiB",
                      flush=True)
    load_after = os.getloadavg()

    print()
    print(f"{'server':12s} {'first 200 (s)':24s} {'page 200 (s)':24s} {'CPU to first 200 (s)':24s} "
          f"{'RSS (MiB)':20s}")
    for name, lst in runs.items():
        print(f"{name:12s} {fmt([r['first_200_s'] for r in lst]):24s} {fmt([r['page_200_s'] for r in lst]):24s} "
              f"{fmt([r['cpu_s'] for r in lst], digits=2):24s} {fmt([r['rss_mib'] for r in lst], digits=1):20s}")
    result: dict = {"starts": a.starts, "uploads": a.uploads, "load_before": load_before,
                    "load_after": load_after, "runs": runs}
    if "pypiserver" in runs:
        ratios = {key: [o[key] / p[key] for o, p in zip(runs["devpi"], runs["pypiserver"], strict=True)
                        if p[key] > 0]
                  for key in ("first_200_s", "page_200_s", "cpu_s")}
        result["ratios"] = ratios
        print(f"{'ours/pypi':12s} {fmt(ratios['first_200_s'], 'x', digits=2):24s} "
              f"{fmt(ratios['page_200_s'], 'x', digits=2):24s} {fmt(ratios['cpu_s'], 'x', digits=2):24s}")
    print(f"\nbytecode: {'as the checkout has it' if a.source_only else 'compiled first, as pip install does'}")
    print(f"load average before {' '.join(f'{x:.2f}' for x in load_before)}, "
          f"after {' '.join(f'{x:.2f}' for x in load_after)} ({os.cpu_count()} CPUs)")
    ours = statistics.median(r["first_200_s"] for r in runs["devpi"])
    print(f"targets: ours first 200 {ours:.3f} s (under 0.4 s idle)", end="")
    if "ratios" in result:
        print(f", ratio {statistics.median(result['ratios']['first_200_s']):.2f}x (at most 1.5x)")
    else:
        print()
    if a.json:
        a.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
