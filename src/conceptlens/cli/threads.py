"""How many CPU threads torch uses: `--threads N`, else `OMP_NUM_THREADS`, else a measured default.

torch starts one thread per core. On a shared machine a core held by another process stalls every
parallel region at its barrier (RELIABILITY.md, "Threads under contention", has the measurements).
DECISION: the default is half the cores this process may use (at least 1, at most 8), so one
competing job does not stall every region; not the free cores by load average, because the thread
count changes float summation order, and a result must not depend on what else was running.
"""

from __future__ import annotations

import os
import sys

ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def default_threads() -> int:
    """Half the usable cores, clamped to [1, 8] (the same on every run on one machine)."""
    return max(1, min(8, usable_cores() // 2))


def choose_threads(threads: int | None) -> int:
    """`threads` if given, else OMP_NUM_THREADS if set to a positive integer, else `default_threads()`."""
    if threads is not None:
        return threads
    value = os.environ.get("OMP_NUM_THREADS", "")
    if value.isdigit() and int(value) > 0:
        return int(value)
    return default_threads()


def apply_threads(threads: int | None) -> int:
    """Set the thread count for torch (now, or when it is imported) and for child processes."""
    count = choose_threads(threads)
    for name in ENV:
        if threads is not None or not os.environ.get(name):
            os.environ[name] = str(count)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(count)
    return count
