"""Crash-safe checkpoint files (written through :func:`common.atomic.atomic_file`: a reader sees
either the previous checkpoint or the complete new one), their names, and the RNG state they keep.

A checkpoint is ``step-XXXXXXXX.pt``, or the folder ``step-XXXXXXXX/`` of a sharded (FSDP) run
(models/dcp_checkpoint.py); both are found and pruned alike.
"""

from __future__ import annotations

import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.atomic import atomic_file

CHECKPOINT_RE = re.compile(r"^step-(\d{8})(\.pt)?$")


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to ``path`` atomically, creating its folder if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as handle:
        torch.save(obj, handle)


def checkpoint_path(folder: Path, step: int) -> Path:
    """Where the checkpoint of ``step`` lives."""
    return folder / f"step-{step:08d}.pt"


def checkpoint_dir(folder: Path, step: int) -> Path:
    """Where the sharded checkpoint of ``step`` lives."""
    return folder / f"step-{step:08d}"


def _checkpoints(folder: Path) -> list[Path]:
    """Checkpoint files and folders in ``folder``, oldest step first."""
    found = [p for p in folder.iterdir() if CHECKPOINT_RE.match(p.name)]
    return sorted(found, key=lambda p: int(CHECKPOINT_RE.match(p.name).group(1)))


def latest_checkpoint(folder: Path) -> Path | None:
    """The checkpoint with the highest step in ``folder``, or None."""
    if not folder.is_dir():
        return None
    found = _checkpoints(folder)
    return found[-1] if found else None


def prune_checkpoints(folder: Path, keep: int) -> None:
    """Delete all but the ``keep`` newest checkpoints."""
    for old in _checkpoints(folder)[:-keep]:
        if old.is_dir():
            shutil.rmtree(old)
        else:
            old.unlink()


def rng_state() -> dict[str, Any]:
    """Every global random state a training step can touch."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
