"""A training run's folder: one writer at a time, and folders replaced whole.

Checkpoints and the best weights are written beside their target and renamed into place, so a
kill at any moment leaves either the old complete folder or the new one, never half of one.
"""

from __future__ import annotations

import fcntl
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from adapters.batches import TrainingError


def swap_in(staging: Path, target: Path) -> None:
    """Replace ``target`` by the complete folder ``staging``. Between the two renames only
    ``.old-<target>-*`` exists; ``recover_swap`` puts it back after a kill there."""
    old = target.with_name(f".old-{target.name}-{uuid.uuid4().hex[:8]}")
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def recover_swap(target: Path) -> None:
    """After a kill inside ``swap_in``: the previous complete folder becomes ``target`` again."""
    if target.exists():
        return
    previous = sorted(target.parent.glob(f".old-{target.name}-*"), key=lambda p: p.stat().st_mtime)
    if previous:
        previous[-1].rename(target)


@contextmanager
def exclusive(run_dir: Path) -> Iterator[None]:
    with open(run_dir / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TrainingError(f"another process is training this run ({run_dir})") from None
        yield
