"""The server keeps its threads on one CPU (the GIL makes spreading them cost more than it
gains) and moves them when another job crowds that CPU."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from devpi.server.runtime.cpu_placement import better_cpu, busy_shares
from test_startup import assert_one_line_refusal, run_server

ALLOWED = sorted(os.sched_getaffinity(0))


def thread_cpus(pid: int) -> set[str]:
    """Each thread's allowed CPU list, as /proc shows it (e.g. '1' or '0-1')."""
    out = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            for line in (task / "status").read_text().splitlines():
                if line.startswith("Cpus_allowed_list:"):
                    out.add(line.split(":", 1)[1].strip())
        except FileNotFoundError:  # a thread that ended meanwhile
            pass
    return out


def proc_cpus_text(cpus: list[int]) -> str:
    """How /proc writes a CPU set: ranges like '0-3', commas between runs."""
    runs, start = [], cpus[0]
    for a, b in zip(cpus, [*cpus[1:], None], strict=True):
        if b != a + 1:
            runs.append(f"{start}-{a}" if a != start else f"{a}")
            start = b
    return ",".join(runs)


def test_moves_only_for_a_clear_gain():
    # our CPU busy only with us: stay
    assert better_cpu(0, {0: 0.9, 1: 0.1}, own=0.85) is None
    # another job takes most of our CPU while the other one idles: move there
    assert better_cpu(0, {0: 1.0, 1: 0.05}, own=0.3) == 1
    # both crowded alike: moving gains nothing
    assert better_cpu(0, {0: 1.0, 1: 0.9}, own=0.3) is None
    # the least busy of several
    assert better_cpu(2, {0: 0.6, 1: 0.1, 2: 1.0, 3: 0.3}, own=0.0) == 1
    # nowhere else to go
    assert better_cpu(0, {0: 1.0}, own=0.0) is None


def test_busy_shares_come_from_two_readings_of_the_cpu_ticks():
    before = {0: (10, 100), 1: (50, 100), 2: (0, 100)}
    after = {0: (110, 200), 1: (60, 200), 2: (0, 100)}  # CPU 2: no ticks in between (offline)
    busy, own = busy_shares(before, after, own_delta=40, cpus={0, 1, 2, 3})
    assert busy == {0: 1.0, 1: 0.1} and own == 0.4


def test_auto_keeps_all_threads_on_one_cpu(make_server):
    server = make_server(args=("--pin-cpu", "auto"))
    cpus = thread_cpus(server.proc.pid)
    assert len(cpus) == 1, cpus
    cpu = cpus.pop()
    assert "-" not in cpu and "," not in cpu and int(cpu) in ALLOWED
    assert server.api("GET", "/+api").status_code == 200
    if len(ALLOWED) > 1:  # log lines go out in batches; the server may have moved meanwhile
        deadline = time.monotonic() + 5
        while "threads kept on CPU " not in server.log_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        kept = re.search(r"threads kept on CPU (\d+) ", server.log_text())
        assert kept and int(kept.group(1)) in ALLOWED, server.log_text()


@pytest.mark.parametrize("args", [("--pin-cpu", "off"), ()], ids=["off", "default"])
def test_off_leaves_placement_to_the_kernel(make_server, args):
    """Off is the default: on a busy machine the kernel's placement served more pages."""
    s = make_server(args=args)
    assert thread_cpus(s.proc.pid) == {proc_cpus_text(ALLOWED)}
    assert "threads kept on CPU" not in s.log_text()


def test_an_explicit_cpu_is_used(make_server):
    cpu = ALLOWED[-1]
    s = make_server(args=("--pin-cpu", str(cpu)))
    assert thread_cpus(s.proc.pid) == {str(cpu)}


def test_a_cpu_this_process_may_not_use_is_refused(tmp_path):
    serverdir = tmp_path / "never"
    p = run_server("--serverdir", str(serverdir), "--pin-cpu", str(max(ALLOWED) + 1))
    assert_one_line_refusal(p, f"--pin-cpu {max(ALLOWED) + 1}: this process may only use CPUs")
    assert not serverdir.exists()  # refused before anything was made
    p = run_server("--serverdir", str(serverdir), "--pin-cpu", "fast")
    assert_one_line_refusal(p, "--pin-cpu wants auto, off or a CPU number, not 'fast'")


LOOK = re.compile(r"cpu look: CPU (\d+) (-?[\d.]+) busy with other work, the others (.*): (stay|move to (\d+))")


@pytest.mark.skipif(len(ALLOWED) < 2, reason="moving between CPUs needs two of them")
def test_a_cpu_another_job_keeps_busy_is_seen_and_left_when_another_has_room(make_server):
    """A busy loop on the server's CPU: the server's looks see it, and it moves exactly when
    the rule says another CPU has room. Which happens depends on what else this machine
    runs meanwhile (the other test worker, say): both outcomes are checked, never neither."""
    server = make_server(args=("--debug", "--pin-cpu", "auto"))
    (before,) = thread_cpus(server.proc.pid)
    seen_before = len(LOOK.findall(server.log_text()))
    hog = subprocess.Popen(["taskset", "-c", before, sys.executable, "-c", "while True: pass"])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            looks = LOOK.findall(server.log_text())[seen_before:]
            if any(look[3] != "stay" for look in looks) or len(looks) >= 4:
                break
            time.sleep(0.2)
        assert looks, server.log_text()[-3000:]
        first_move = next((look for look in looks if look[3] != "stay"), None)
        # before any move, every look but the first (it may straddle the loop's start) saw the loop
        for cpu, other_work, _, _, _ in looks[1: looks.index(first_move) if first_move else None]:
            assert cpu == before and float(other_work) >= 0.7, looks
        if first_move is None:
            for _cpu, other_work, others, _, _ in looks:  # stayed: no other CPU had room enough
                least = min(float(o.split("=")[1]) for o in others.split())
                assert float(other_work) - least <= 0.4, looks
            assert thread_cpus(server.proc.pid) == {before}
        else:
            target = first_move[4]
            assert target != before
            deadline = time.monotonic() + 5
            while thread_cpus(server.proc.pid) != {target} and time.monotonic() < deadline:
                time.sleep(0.1)
            assert thread_cpus(server.proc.pid) == {target}
            assert server.api("GET", "/+api").status_code == 200  # threads started later follow too
            assert thread_cpus(server.proc.pid) == {target}
    finally:
        hog.kill()
        hog.wait()
