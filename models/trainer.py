"""Rectified-flow training of MoGA-DiT on curated shards, in run order like nanoGPT's train.py.

One micro-batch is one sample (long multi-shot videos differ in length and shot layout, so they
are not stacked); ``grad_accum`` samples make a step. Ranks = data-parallel groups x Ulysses
sequence-parallel group (``train.sequence_parallel`` consecutive ranks share a sample). Start
with ``torchrun --nproc-per-node N -m models.train_cli ...`` or ``curate train`` for one process.

Resume is exact: the checkpoint holds model, optimizer, scheduler, EMA, each data-parallel rank's
stream position and noise generator, and the global RNG states. With ``train.fsdp`` the model is
sharded over all ranks with FSDP2 (models/fsdp.py) and checkpoints are DCP folders
(models/dcp_checkpoint.py).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.distributed import ProcessGroup

from models.checkpoint import (
    atomic_torch_save,
    checkpoint_path,
    latest_checkpoint,
    prune_checkpoints,
    rng_state,
    set_rng_state,
)
from models.dcp_checkpoint import load_sharded_checkpoint, save_sharded_checkpoint
from models.dit import MoGADiT, ShotText, token_slice
from models.encoders import Encoders
from models.flops import forward_counts, step_counts
from models.fsdp import build_sharded_model
from models.moga import MoGAStats
from models.shards import ClipSample, DataConfig, ShardStream
from models.train_config import FlowConfig, TrainConfig
from models.wan_weights import load_wan_weights

log = logging.getLogger(__name__)


@dataclass
class Ranks:
    """Where this process sits: data-parallel index and its sequence-parallel group."""

    rank: int
    world: int
    device: torch.device
    dp_rank: int
    dp_size: int
    sp_group: ProcessGroup | None


def init_ranks(sp_size: int) -> Ranks:
    """Join the torchrun job if there is one (NCCL on GPU, gloo on CPU) and build SP groups."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world % sp_size:
        raise ValueError(f"train.sequence_parallel {sp_size} does not divide {world} ranks")
    if world == 1:
        return Ranks(0, 1, device, 0, 1, None)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    rank = dist.get_rank()
    sp_group = None
    for start in range(0, world, sp_size):  # every rank must create every group
        group = dist.new_group(list(range(start, start + sp_size)))
        if start <= rank < start + sp_size and sp_size > 1:
            sp_group = group
    return Ranks(rank, world, device, rank // sp_size, world // sp_size, sp_group)


def sample_timesteps(n: int, flow: FlowConfig, generator: torch.Generator) -> torch.Tensor:
    """(n,) flow times in (0, 1): logit-normal or uniform, then shifted towards noise."""
    if flow.timesteps == "logit_normal":
        t = torch.sigmoid(flow.logit_mean + flow.logit_std * torch.randn(n, generator=generator))
    else:
        t = torch.rand(n, generator=generator)
    return flow.shift * t / (1 + (flow.shift - 1) * t)


def flow_loss(model: torch.nn.Module, core: MoGADiT, latents: torch.Tensor, text: ShotText,
              shot_starts: list[int], flow: FlowConfig, generator: torch.Generator,
              sp_group: ProcessGroup | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
    """Loss of one sample: velocity MSE on this rank's tokens plus MoGA's balancing loss.

    ``model`` is what is called (DDP or not), ``core`` the unwrapped MoGADiT. Noise and t come
    from the CPU ``generator``, so a restored generator replays them exactly.
    """
    t = sample_timesteps(latents.shape[0], flow, generator).to(latents.device)
    noise = torch.randn(latents.shape, generator=generator).to(latents.device)
    tt = t.view(-1, 1, 1, 1, 1)
    noisy = (1 - tt) * latents + tt * noise
    pred, stats = model(noisy, t * 1000, text, shot_starts, sp_group)
    lo, hi = token_slice(pred.shape[1] * sp_size(sp_group), sp_group)
    target = core.patchify(noise - latents)[:, lo:hi]
    mse = F.mse_loss(pred.float(), target.float())
    balance = model_balance_loss(stats, sp_group) if stats else torch.zeros((), device=mse.device)
    info = {"flow_loss": mse.detach(), "balance_loss": balance.detach(), "tokens": hi - lo,
            "balance_metric": [s.balance_metric for s in stats],
            "group_sizes": stats[len(stats) // 2].group_sizes if stats else [],
            "counts": forward_counts(core, latents.shape, text.mask.shape[-1], shot_starts, stats)}
    return mse + balance, info


def model_balance_loss(stats: list[MoGAStats], sp_group: ProcessGroup | None = None
                       ) -> torch.Tensor:
    """MoGA's balancing loss of the model: the mean, not the sum, of its layers' losses.

    Each layer's loss already carries alpha (``alpha * M * sum_i F_i P_i``, paper eqs. 6-8) and
    the paper adds one such term to the diffusion loss, so alpha weighs one layer's loss: the
    mean keeps the term's size (alpha at equal groups) whatever the depth, where a sum would
    scale alpha by the number of layers (30 for Wan2.1-1.3B). Under sequence parallelism each
    rank's loss is its share of the sequence's; DDP averages gradients over all ranks, so the
    share is scaled back up (the MSE is a mean).
    """
    return sum(s.balance_loss for s in stats) / len(stats) * sp_size(sp_group)


def sp_size(group: ProcessGroup | None) -> int:
    """Ranks in a sequence-parallel group (1 without one)."""
    return 1 if group is None else dist.get_world_size(group)


class EMA:
    """Exponential moving average of the parameters, kept in fp32."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {k: p.detach().float().clone() for k, p in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """shadow <- decay * shadow + (1 - decay) * param."""
        names = list(self.shadow)
        params = dict(model.named_parameters())
        torch._foreach_lerp_([self.shadow[k] for k in names],
                             [params[k].detach().float() for k in names], 1 - self.decay)


@dataclass
class Run:
    """Everything a step mutates, plus what it reads."""

    cfg: TrainConfig
    ranks: Ranks
    enc: Encoders
    core: MoGADiT
    model: torch.nn.Module  # core (sharded in place with train.fsdp), or core wrapped in DDP
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    ema: EMA | None
    generator: torch.Generator  # noise, timesteps and caption dropout of this data rank
    out_dir: Path
    step: int = 0
    position: int = 0  # next item of this data rank's shard stream
    skipped: int = 0
    truncated: int = 0  # captions cut to text_len by all data ranks since this process began


def build_run(cfg: TrainConfig, out_dir: Path, resume: bool) -> Run:
    """Model, encoders, optimizer, EMA; restored from the newest checkpoint if ``resume``."""
    ranks = init_ranks(cfg.train.sequence_parallel)
    enc = Encoders(cfg.encoders, ranks.device)
    check_shapes(cfg, enc)
    torch.manual_seed(cfg.train.seed)  # the same initial weights on every rank
    found = latest_checkpoint(out_dir / "checkpoints") if resume else None
    if cfg.train.fsdp:
        core = build_sharded_model(cfg, ranks.device, initialize=not found)
    else:
        core = MoGADiT(cfg.model).to(ranks.device)
        if cfg.model.init_from and not found:  # a checkpoint holds the fine-tuned weights
            load_wan_weights(core, Path(cfg.model.init_from))
    core.activation_checkpointing = cfg.train.activation_checkpointing
    o = cfg.optim
    opt = torch.optim.AdamW(core.parameters(), lr=o.lr, betas=o.betas,
                            weight_decay=o.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / o.warmup_steps) if o.warmup_steps else 1.0)
    generator = torch.Generator().manual_seed(cfg.train.seed * 100_003 + ranks.dp_rank)
    ema = EMA(core, o.ema_decay) if o.ema_decay else None
    run = Run(cfg, ranks, enc, core, core, opt, sched, ema, generator, out_dir)
    if found:
        load_checkpoint(run, found)
    if ranks.world > 1 and not cfg.train.fsdp:
        device_ids = [ranks.device.index] if ranks.device.type == "cuda" else None
        run.model = torch.nn.parallel.DistributedDataParallel(core, device_ids=device_ids)
    return run


def check_shapes(cfg: TrainConfig, enc: Encoders) -> None:
    """Fail before training when the model, data and encoders do not fit together."""
    if cfg.model.in_channels != enc.vae.z_dim:
        raise ValueError(f"model.in_channels {cfg.model.in_channels} != VAE z_dim {enc.vae.z_dim}")
    if cfg.model.text_dim != enc.text.dim:
        raise ValueError(f"model.text_dim {cfg.model.text_dim} != text encoder d_model "
                         f"{enc.text.dim}")
    multiple = enc.vae.spatial_stride * cfg.model.patch_size[1]
    sections = {"data": cfg.data, **{f"stages.{i}.data": s.data for i, s in enumerate(cfg.stages)}}
    for name, data in sections.items():
        for key in ("height", "width"):
            if getattr(data, key) % multiple:
                raise ValueError(f"{name}.{key} {getattr(data, key)} is not a multiple of "
                                 f"{multiple}")


def save_checkpoint(run: Run) -> None:
    """Rank 0 writes the state of all ranks (each data rank's stream position and generator)."""
    if run.cfg.train.fsdp:  # each rank writes its shards
        save_sharded_checkpoint(run)
        return
    mine = (run.position, run.generator.get_state(), run.skipped)
    if run.ranks.world > 1:
        everyone: list[Any] = [None] * run.ranks.world
        dist.all_gather_object(everyone, mine)
    else:
        everyone = [mine]
    sp = run.cfg.train.sequence_parallel
    per_dp = everyone[::sp]  # the ranks of one sequence-parallel group hold the same state
    if run.ranks.rank == 0:
        state = {
            "config": run.cfg.model_dump(mode="json"), "step": run.step,
            "model": run.core.state_dict(), "optimizer": run.opt.state_dict(),
            "scheduler": run.sched.state_dict(),
            "ema": run.ema.shadow if run.ema else None,
            "positions": [p for p, _, _ in per_dp], "generators": [g for _, g, _ in per_dp],
            "skipped": [s for _, _, s in per_dp], "rng": rng_state(),
            "truncated": run.truncated,
        }
        folder = run.out_dir / "checkpoints"
        atomic_torch_save(state, checkpoint_path(folder, run.step))
        prune_checkpoints(folder, run.cfg.train.keep_checkpoints)
    if run.ranks.world > 1:
        dist.barrier()


def load_checkpoint(run: Run, path: Path) -> None:
    """Restore ``run`` from ``path``; the number of data-parallel ranks must match."""
    if run.cfg.train.fsdp or path.is_dir():  # raises unless both are sharded
        load_sharded_checkpoint(run, path)
        return
    state = torch.load(path, map_location="cpu", weights_only=False)
    if len(state["positions"]) != run.ranks.dp_size:
        raise ValueError(f"{path} was written by {len(state['positions'])} data-parallel ranks, "
                         f"this run has {run.ranks.dp_size}")
    run.core.load_state_dict(state["model"])
    run.opt.load_state_dict(state["optimizer"])
    run.sched.load_state_dict(state["scheduler"])
    if run.ema and state["ema"] is not None:
        run.ema.shadow = {k: v.to(run.ranks.device) for k, v in state["ema"].items()}
    run.step = state["step"]
    run.position = state["positions"][run.ranks.dp_rank]
    run.skipped = state["skipped"][run.ranks.dp_rank]
    run.truncated = state.get("truncated", 0)  # checkpoints before it was kept: 0
    run.generator.set_state(state["generators"][run.ranks.dp_rank])
    set_rng_state(state["rng"])
    log.info("resumed from %s at step %d", path, run.step)


def next_sample(run: Run, samples: Any) -> ClipSample:
    """The next usable sample; unusable ones are logged, counted and stepped over."""
    while True:
        sample = next(samples)
        run.position = sample.position + 1
        if sample.error is None:
            return sample
        run.skipped += 1
        log.warning("skipping sample %s: %s", sample.key, sample.error)


def train_step(run: Run, samples: Any) -> dict[str, Any]:
    """One optimizer step over ``grad_accum`` samples; returns the log record."""
    cfg, ranks = run.cfg, run.ranks
    start = time.perf_counter()
    autocast = torch.autocast(ranks.device.type, dtype=torch.bfloat16,
                              enabled=ranks.device.type == "cuda" and cfg.train.precision == "bf16")
    infos = []
    for micro in range(cfg.train.grad_accum):
        sample = next_sample(run, samples)
        latents = run.enc.latents(sample.clip_key, sample.frames)
        drop = torch.rand(len(sample.captions), generator=run.generator) < cfg.flow.caption_dropout
        kept = ["" if d else c for c, d in zip(sample.captions, drop, strict=True)]
        text = run.enc.captions(kept)
        # DDP all-reduces gradients in backward; only the last micro-batch of a step needs that.
        # FSDP reduce-scatters every micro-batch into the sharded gradients (models/fsdp.py).
        last = micro == cfg.train.grad_accum - 1
        ddp = ranks.world > 1 and not cfg.train.fsdp
        sync = run.model.no_sync() if ddp and not last else nullcontext()
        with sync:
            with autocast:
                loss, info = flow_loss(run.model, run.core, latents, text, sample.shot_starts,
                                       cfg.flow, run.generator, ranks.sp_group)
            (loss / cfg.train.grad_accum).backward()
        infos.append({**info, "truncated": run.enc.truncated(kept)})
    clip = cfg.optim.grad_clip if cfg.optim.grad_clip else math.inf
    grad_norm = torch.nn.utils.clip_grad_norm_(run.core.parameters(), clip)
    run.opt.step()
    run.sched.step()
    run.opt.zero_grad(set_to_none=True)
    if run.ema:
        run.ema.update(run.core)
    run.step += 1
    return step_record(run, infos, grad_norm, time.perf_counter() - start)


def step_record(run: Run, infos: list[dict[str, Any]], grad_norm: torch.Tensor,
                seconds: float) -> dict[str, Any]:
    """Losses averaged over micro-batches and ranks, MoGA balance, throughput, and the captions
    truncated in this step by all data ranks (also added to ``run.truncated``)."""
    losses = torch.stack([torch.stack([i["flow_loss"].float(), i["balance_loss"].float(),
                                       i["flow_loss"].new_tensor(float(i["truncated"]))])
                          for i in infos]).mean(0)
    if run.ranks.world > 1:
        dist.all_reduce(losses)
        losses /= run.ranks.world
    # Ranks of one sequence-parallel group encode the same captions: count them once.
    truncated = round(float(losses[2]) * len(infos) * run.ranks.dp_size)
    run.truncated += truncated
    metrics = [m for i in infos for m in i["balance_metric"]]
    tokens = sum(i["tokens"] for i in infos) * run.ranks.world
    counts = step_counts([i["counts"] for i in infos], run.ranks.device,
                         run.cfg.train.sequence_parallel)
    if run.ranks.device.type == "cuda":
        torch.cuda.synchronize()
    return {
        "step": run.step, "loss": float(losses[:2].sum()), "flow_loss": float(losses[0]),
        "balance_loss": float(losses[1]),
        "balance_metric": sum(metrics) / len(metrics) if metrics else None,
        "balance_metric_max": max(metrics) if metrics else None,
        "group_sizes": infos[-1]["group_sizes"], "grad_norm": float(grad_norm),
        "lr": run.sched.get_last_lr()[0], "seconds": seconds, "tokens_per_s": tokens / seconds,
        "position": run.position, "skipped": run.skipped, "captions_truncated": truncated,
        "captions_truncated_total": run.truncated, "attn_pairs": counts.pairs,
        "flops": counts.flops,
    }


def open_samples(run: Run, data: str, section: DataConfig) -> Iterator[ClipSample]:
    """This data rank's samples from stream position ``run.position`` on, as ``section`` says."""
    stream = ShardStream(data, section, run.enc.vae.temporal_stride, run.cfg.train.seed,
                         start=run.position, rank=run.ranks.dp_rank,
                         world_size=run.ranks.dp_size, is_cached=run.enc.latent_probe())
    return iter(torch.utils.data.DataLoader(stream, batch_size=None,
                                            num_workers=section.num_workers))


def train(cfg: TrainConfig, data: str, out_dir: Path, resume: bool = True) -> list[dict[str, Any]]:
    """Train to ``cfg.train.steps``; returns this process's step records (also in the log)."""
    run = build_run(cfg, out_dir, resume)
    out_dir.mkdir(parents=True, exist_ok=True)
    records, stage, samples = [], None, iter(())
    with open(out_dir / "train_log.jsonl", "a") as log_file:
        while run.step < cfg.train.steps:
            index, section = cfg.stage_at(run.step)
            if index != stage:  # the first step, or the step that starts the next stage
                stage, samples = index, open_samples(run, data, section)
                log.info("stage %d from step %d: %d-frame windows", stage, run.step + 1,
                         section.max_frames)
            record = {**train_step(run, samples), "stage": stage}
            records.append(record)
            if run.ranks.rank == 0 and run.step % cfg.train.log_every == 0:
                log_file.write(json.dumps(record) + "\n")
                log_file.flush()
                log.info("step %(step)d loss %(loss).4f balance %(balance_metric)s "
                         "groups %(group_sizes)s %(tokens_per_s).0f tok/s", record)
            if run.step % cfg.train.checkpoint_every == 0 or run.step == cfg.train.steps:
                save_checkpoint(run)
    return records
