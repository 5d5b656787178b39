"""Keep the server's threads on one CPU, and move them when another job crowds it.

Only one thread runs Python at a time (the GIL). Threads spread over several
CPUs hand it to each other at every blocking system call: the waiting thread
wakes at once on its own CPU (a futex and, on a virtual machine, an
inter-processor interrupt), takes the GIL, and the thread whose short call
returned a microsecond later must wait for it in turn. With every thread on
one CPU that thread usually just goes on: a cold `uv pip install` of 25
packages cost the server a third less CPU and a third of the context
switches, and warm pages went from about 3,100 to 4,900 requests/s (a
quiet-machine run on waitress, before issue 24). Waiting on disks and sockets still overlaps; what the
process gives up is running hashing or SQLite (which release the GIL) on a
second CPU, which it rarely has much of.

A pinned process cannot be moved by the kernel when another busy job lands
on its CPU, so ``auto`` looks every few seconds and moves all threads to the
least busy CPU the process may use when the current one is busy with other
work. Linux only; elsewhere ``auto`` does nothing.

Opt-in (``--pin-cpu auto``): on a busy machine the kernel's placement served warm
pages faster in a side-by-side run (doc/performance.md), so ``off`` is the default.
"""
from __future__ import annotations

import logging
import os
import random
import threading

log = logging.getLogger("devpi.server")
CHECK_EVERY = 2.0  # seconds between looks at how busy the CPUs are (each look waits ±25 % of it,
# so two servers that share a CPU do not both decide to move in the same instant)
MOVE_MARGIN = 0.4  # move when other jobs keep our CPU busy this much longer (a share of the
# interval) than the least busy other CPU is busy


class PinError(Exception):
    """An explicit CPU choice that cannot be honoured."""


def supported() -> bool:
    return hasattr(os, "sched_setaffinity") and os.path.exists("/proc/self/task")


def allowed_cpus() -> set[int]:
    return set(os.sched_getaffinity(0))


def current_cpu() -> int | None:
    """The CPU this thread ran on last (field 39 of /proc/thread-self/stat)."""
    try:
        with open("/proc/thread-self/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[36])
    except (OSError, IndexError, ValueError):
        return None


def pin_threads(cpu: int) -> None:
    """Pin every thread of this process to ``cpu``; threads started later inherit it from
    the thread that starts them."""
    for entry in os.listdir("/proc/self/task"):
        tid = int(entry)
        try:
            if os.sched_getaffinity(tid) != {cpu}:
                os.sched_setaffinity(tid, {cpu})
        except (ProcessLookupError, PermissionError):  # a thread that just ended
            pass


def cpu_busy_ticks() -> dict[int, tuple[int, int]]:
    """(busy, total) clock ticks per CPU since boot, from /proc/stat. Stolen time (the
    hypervisor ran someone else) counts as busy: it is not ours to use either."""
    out: dict[int, tuple[int, int]] = {}
    with open("/proc/stat") as f:
        for line in f:
            if not line.startswith("cpu") or line.startswith("cpu "):
                continue
            name, *fields = line.split()
            ticks = [int(x) for x in fields[:8]]  # user nice system idle iowait irq softirq steal
            total = sum(ticks)
            out[int(name[3:])] = (total - ticks[3] - ticks[4], total)
    return out


def own_ticks() -> int:
    """This process's user and system CPU ticks (all threads)."""
    with open("/proc/self/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def busy_shares(prev: dict[int, tuple[int, int]], now: dict[int, tuple[int, int]], own_delta: int,
                cpus: set[int]) -> tuple[dict[int, float], float]:
    """From two ``cpu_busy_ticks`` readings and this process's ticks in between: the share of
    the interval each of ``cpus`` was busy, and this process's share."""
    busy = {}
    for cpu in cpus & now.keys() & prev.keys():
        total = now[cpu][1] - prev[cpu][1]
        if total > 0:
            busy[cpu] = (now[cpu][0] - prev[cpu][0]) / total
    span = max((now[c][1] - prev[c][1] for c in busy), default=0)
    return busy, (own_delta / span if span else 0.0)


def better_cpu(current: int, busy: dict[int, float], own: float, margin: float = MOVE_MARGIN) -> int | None:
    """Where to move, or None to stay.

    ``busy`` is the share of the last interval each allowed CPU was busy, ``own`` this
    process's share (all of it on ``current``). Other jobs on our CPU use ``busy[current] -
    own``; on any other CPU everything that ran there was someone else's. Move only for a
    clear gain, so two servers never chase each other from CPU to CPU."""
    others_here = busy.get(current, 0.0) - own
    candidates = [(load, cpu) for cpu, load in busy.items() if cpu != current]
    if not candidates:
        return None
    load, cpu = min(candidates)
    return cpu if others_here - load > margin else None


class CpuPin:
    """The process's CPU placement: ``mode`` is "auto", "off" or a CPU number."""

    def __init__(self, mode: str):
        self.mode = mode
        self.cpu: int | None = None
        self.allowed: set[int] = set()  # what the process was started with: the pinned threads see only one
        self._stop = threading.Event()

    def apply(self) -> None:
        """Pin now (call before the server starts its threads). Raises PinError for an
        explicit CPU that this process may not use or a platform without affinity."""
        if self.mode == "off":
            return
        if not supported():
            if self.mode == "auto":
                return
            raise PinError("--pin-cpu needs Linux (sched_setaffinity)")
        allowed = self.allowed = allowed_cpus()
        if self.mode == "auto":
            if len(allowed) < 2:
                return
            cpu = current_cpu()
            self.cpu = cpu if cpu in allowed else min(allowed)
        else:
            try:
                cpu = int(self.mode)
            except ValueError:
                raise PinError(f"--pin-cpu wants auto, off or a CPU number, not {self.mode!r}") from None
            if cpu not in allowed:
                raise PinError(f"--pin-cpu {cpu}: this process may only use CPUs "
                               f"{', '.join(map(str, sorted(allowed)))}")
            self.cpu = cpu
        pin_threads(self.cpu)
        log.info("threads kept on CPU %d (--pin-cpu %s; `off` lets them spread)", self.cpu, self.mode)

    def start_watching(self) -> None:
        """In ``auto`` mode: move to a less busy CPU when other work crowds ours."""
        if self.mode != "auto" or self.cpu is None:
            return
        threading.Thread(target=self._watch, name="cpu-pin", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        prev, prev_own = cpu_busy_ticks(), own_ticks()
        while not self._stop.wait(CHECK_EVERY * random.uniform(0.75, 1.25)):
            try:
                now, now_own = cpu_busy_ticks(), own_ticks()
                busy, own = busy_shares(prev, now, now_own - prev_own, self.allowed)
                prev, prev_own = now, now_own
                assert self.cpu is not None
                target = better_cpu(self.cpu, busy, own)
                if log.isEnabledFor(logging.DEBUG):  # the line is built only when it is written
                    log.debug("cpu look: CPU %d %.2f busy with other work, the others %s: %s", self.cpu,
                              busy.get(self.cpu, 0.0) - own,
                              " ".join(f"{c}={b:.2f}" for c, b in sorted(busy.items()) if c != self.cpu),
                              "stay" if target is None else f"move to {target}")
                if target is not None:
                    log.info("moving threads from CPU %d (%.0f%% busy with other work) to CPU %d (%.0f%%)",
                             self.cpu, 100 * (busy[self.cpu] - own), target, 100 * busy[target])
                    self.cpu = target
                pin_threads(self.cpu)  # also threads started by a thread not yet moved
            except Exception:  # placement is an optimisation: never take the server down for it
                log.debug("cpu placement check failed", exc_info=True)
