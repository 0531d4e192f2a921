"""Crash-safe checkpoint files (written through :func:`common.atomic.atomic_file`: a reader sees
either the previous checkpoint or the complete new one), their names, and the RNG state they keep.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.atomic import atomic_file

CHECKPOINT_RE = re.compile(r"^step-(\d{8})\.pt$")


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to ``path`` atomically, creating its folder if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as handle:
        torch.save(obj, handle)


def checkpoint_path(folder: Path, step: int) -> Path:
    """Where the checkpoint of ``step`` lives."""
    return folder / f"step-{step:08d}.pt"


def latest_checkpoint(folder: Path) -> Path | None:
    """The checkpoint with the highest step in ``folder``, or None."""
    if not folder.is_dir():
        return None
    found = sorted(p for p in folder.iterdir() if CHECKPOINT_RE.match(p.name))
    return found[-1] if found else None


def prune_checkpoints(folder: Path, keep: int) -> None:
    """Delete all but the ``keep`` newest checkpoints."""
    found = sorted(p for p in folder.iterdir() if CHECKPOINT_RE.match(p.name))
    for old in found[:-keep]:
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
