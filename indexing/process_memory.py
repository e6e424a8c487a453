"""How much memory a process holds resident (RSS): the one reader for the admin status, the
benchmarks and anything else that reports it. MB here is 2^20 bytes."""

from __future__ import annotations

from pathlib import Path

import psutil

MB = 1024 * 1024
# The parts of VmRSS that /proc/<pid>/status lists (anonymous, file-backed, shared memory).
RESIDENT_PARTS = ("RssAnon", "RssFile", "RssShmem")


def resident_mb(pid: int | None = None, default: float = float("nan")) -> float:
    """The resident memory (VmRSS) of process ``pid``, this process by default, in MB; ``default``
    where it cannot be read (no such process, no access, no /proc)."""
    try:
        return psutil.Process(pid).memory_info().rss / MB
    except (psutil.Error, OSError):
        return default


def resident_part_mb(part: str, pid: int | None = None, default: float = float("nan")) -> float:
    """One part of the resident memory (one of :data:`RESIDENT_PARTS`) in MB; ``default`` where it
    cannot be read.

    Read from /proc/<pid>/status because psutil has no equivalent: ``memory_info().shared`` is the
    file-backed and shared-memory pages together (statm's third field), and ``memory_full_info()``'s
    uss/pss split by private/proportional, not by anonymous/file-backed."""
    if part not in RESIDENT_PARTS:
        raise ValueError(f"{part!r} is not one of {', '.join(RESIDENT_PARTS)}")
    try:
        status = Path(f"/proc/{'self' if pid is None else pid}/status").read_text()
    except OSError:
        return default
    for line in status.splitlines():
        if line.startswith(f"{part}:"):
            return int(line.split()[1]) / 1024  # kB
    return default
