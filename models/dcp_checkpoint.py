"""Sharded checkpoints of FSDP runs (``train.fsdp``) with torch.distributed.checkpoint (DCP).

A checkpoint is a folder ``step-XXXXXXXX/``, named and pruned like the ``.pt`` files of
models/checkpoint.py, holding:

- DCP's files of ``{"model", "optim", "ema"}``: model and AdamW state from ``get_state_dict``
  and the EMA, each rank writing its own shards (``__R_0.distcp``) and rank 0 ``.metadata``;
- ``trainer.pt`` from rank 0: config, step, scheduler, each data rank's stream position, noise
  generator and skip count, and every rank's global RNG states.

The EMA is built from the sharded parameters, so its shadow tensors are DTensors sharded like
them: each rank averages its own shard, without communication, and DCP saves and loads them
like parameters.

All ranks write into ``.step-XXXXXXXX.tmp/`` (DCP fsyncs each file); when all are done rank 0
adds ``trainer.pt`` and renames the folder, so a checkpoint folder is complete or absent. The
checkpoints folder must be one all ranks share (one node, or a shared filesystem).

Resume is exact, as from ``.pt`` checkpoints. DCP could reshard to another world size, but the
stream positions are per data rank and the RNG states per rank, so dp and sp must match.
"""

from __future__ import annotations

import logging
import os
import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from common.atomic import fsync_dir
from models.checkpoint import (
    atomic_torch_save,
    checkpoint_dir,
    prune_checkpoints,
    rng_state,
    set_rng_state,
)
from models.dit import MoGADiT
from models.train_config import TrainConfig

if TYPE_CHECKING:
    from models.trainer import Run

log = logging.getLogger(__name__)

TRAINER_STATE = "trainer.pt"


def _sharded_state(run: Run, ema: bool) -> dict[str, Any]:
    """What DCP saves or loads in place: model and optimizer state, and the EMA if ``ema``."""
    model, optim = get_state_dict(run.core, run.opt)
    state = {"model": model, "optim": optim}
    if ema:
        state["ema"] = run.ema.shadow
    return state


def save_sharded_checkpoint(run: Run) -> None:
    """Every rank writes its shards of step ``run.step``; rank 0 the rest, then publishes it."""
    folder = run.out_dir / "checkpoints"
    final = checkpoint_dir(folder, run.step)
    tmp = folder / f".{final.name}.tmp"
    if run.ranks.rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)  # left by a crash during an earlier save
        tmp.mkdir(parents=True)
    dist.barrier()
    dcp.save(_sharded_state(run, run.ema is not None), checkpoint_id=tmp)
    mine = {"position": run.position, "generator": run.generator.get_state(),
            "skipped": run.skipped, "rng": rng_state()}
    everyone: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, mine)
    if run.ranks.rank == 0:
        per_dp = everyone[::run.cfg.train.sequence_parallel]  # one per sequence-parallel group
        state = {"config": run.cfg.model_dump(mode="json"), "step": run.step,
                 "scheduler": run.sched.state_dict(), "ema": run.ema is not None,
                 "positions": [e["position"] for e in per_dp],
                 "generators": [e["generator"] for e in per_dp],
                 "skipped": [e["skipped"] for e in per_dp], "rng": [e["rng"] for e in everyone],
                 "truncated": run.truncated}
        atomic_torch_save(state, tmp / TRAINER_STATE)
        _publish(tmp, final)
        prune_checkpoints(folder, run.cfg.train.keep_checkpoints)
    dist.barrier()


def _publish(tmp: Path, final: Path) -> None:
    """Rename the finished ``tmp`` folder to ``final``, replacing an older one of that name."""
    old = final.with_name(f".{final.name}.old")
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    fsync_dir(final.parent)
    shutil.rmtree(old, ignore_errors=True)


def load_sharded_checkpoint(run: Run, path: Path) -> None:
    """Restore an FSDP ``run`` from the checkpoint folder ``path`` written by a run like it."""
    if not (run.cfg.train.fsdp and path.is_dir()):
        raise ValueError(f"{path} was written with train.fsdp={path.is_dir()}; "
                         f"this run has train.fsdp={run.cfg.train.fsdp}")
    extra = torch.load(path / TRAINER_STATE, map_location="cpu", weights_only=False)
    if len(extra["positions"]) != run.ranks.dp_size or len(extra["rng"]) != run.ranks.world:
        raise ValueError(f"{path} was written by {len(extra['rng'])} ranks in "
                         f"{len(extra['positions'])} data-parallel groups, this run has "
                         f"{run.ranks.world} in {run.ranks.dp_size}")
    state = _sharded_state(run, run.ema is not None and extra["ema"])
    dcp.load(state, checkpoint_id=path)
    set_state_dict(run.core, run.opt, model_state_dict=state["model"],
                   optim_state_dict=state["optim"])
    if run.ema and not extra["ema"]:  # no EMA saved: start it from the restored weights
        with torch.no_grad():
            for name, param in run.core.named_parameters():
                run.ema.shadow[name].copy_(param)
    run.sched.load_state_dict(extra["scheduler"])
    run.step = extra["step"]
    run.position = extra["positions"][run.ranks.dp_rank]
    run.skipped = extra["skipped"][run.ranks.dp_rank]
    run.truncated = extra["truncated"]
    run.generator.set_state(extra["generators"][run.ranks.dp_rank])
    set_rng_state(extra["rng"][run.ranks.rank])
    log.info("resumed from %s at step %d", path, run.step)


def unsharded_model(path: Path, use_ema: bool = True) -> tuple[MoGADiT, TrainConfig]:
    """The whole model of the checkpoint folder ``path`` in this one process, on the CPU (EMA
    weights when saved and ``use_ema``)."""
    extra = torch.load(path / TRAINER_STATE, map_location="cpu", weights_only=False)
    cfg = TrainConfig.model_validate(extra["config"])
    model = MoGADiT(cfg.model)
    key = "ema" if use_ema and extra["ema"] else "model"
    with warnings.catch_warnings():  # one process on purpose: no "torch.distributed" warning
        warnings.filterwarnings("ignore", "torch.distributed is disabled")
        # DCP loads in place: straight into the parameters' storage.
        dcp.load({key: {k: p.detach() for k, p in model.named_parameters()}},
                 checkpoint_id=path, no_dist=True)
    return model, cfg
