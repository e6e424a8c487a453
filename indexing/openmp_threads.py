"""One OpenMP worker team per process while a serving engine decodes on the CPU.

torch runs its CPU kernels on libgomp, which gives every thread that starts a parallel region a
worker team of its own, kept until that thread exits. Once a process holds more libgomp threads
than CPUs, libgomp stops spinning between parallel regions ("throttled" waits: a hundred spins,
then a futex sleep), so a decode step, hundreds of small parallel regions, pays a wake-up in each.
Measured on the 2-core CI machine (SmolLM2-135M, a 900-token prompt, batch 1; issue 38): a decode
step took 36 ms with the engine's thread alone, and 66-70 ms for the rest of the process's life
once one other thread had embedded some text (a team of two); with that thread held to one
OpenMP thread before its first torch call, 36 ms again. A team left by a thread that has exited
is freed with it; a thread held to one thread after it made its team keeps the team.

So a process that serves from an in-process engine on the CPU calls ``hold_other_threads_to_one``
first, before any torch work: from then on every thread but the one that ``claims_the_team``
(the engine's) runs its torch work on one thread, set by ``one_thread_here`` on its first call.
The embedder calls ``one_thread_here`` before each encode, and so does the admin's job thread
(re-index, training). What it costs: those threads' torch work runs on one core, which on two
cores mostly shared with the engine is what they got anyway. Without torch's libgomp (another
OpenMP runtime, or none) every call here does nothing.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from functools import lru_cache
from pathlib import Path

log = logging.getLogger(__name__)

_state = threading.local()  # per thread: "held" once one_thread_here has set it, "owner" for the engine's
_policy = {"active": False}


def hold_other_threads_to_one() -> bool:
    """Turn the policy on and hold the calling thread to one OpenMP thread. Call it before any
    torch work in the process. False when torch's libgomp was not found (nothing is held)."""
    if _libgomp() is None:
        return False
    _policy["active"] = True
    one_thread_here()
    return True


def claims_the_team() -> None:
    """The calling thread (the serving engine's) keeps the full team whatever the policy."""
    _state.owner = True


def one_thread_here() -> None:
    """Hold the calling thread to one OpenMP thread if the policy is on and this thread is not
    the team's owner; once per thread, then a thread-local check."""
    if not _policy["active"] or getattr(_state, "owner", False) or getattr(_state, "held", False):
        return
    gomp = _libgomp()
    if gomp is not None:
        gomp.omp_set_num_threads(1)  # this thread's own setting (an OpenMP ICV); others keep theirs
    _state.held = True


@lru_cache(maxsize=1)
def _libgomp() -> ctypes.CDLL | None:
    """The libgomp torch loaded (FAISS brings another copy of its own, which is not torch's)."""
    try:
        import torch
    except ImportError:
        return None
    torch_dir = str(Path(torch.__file__).resolve().parent)
    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            paths = {line.split()[-1] for line in maps if "libgomp" in line and line.split()[-1].startswith(torch_dir)}
    except OSError:  # not Linux
        paths = set()
    if not paths:
        log.info("torch's libgomp not found; OpenMP threads are left as they are")
        return None
    return ctypes.CDLL(sorted(paths)[0])  # already loaded: the same library, not a second copy
