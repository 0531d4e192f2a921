"""Training-step scaling of MoGA-DiT under Ulysses sequence parallelism x DDP (issue 8).

Launch with torchrun; ``--sp`` consecutive ranks share one sample, DDP spans all ranks. Default:
the Wan2.1-1.3B-size model of configs/train-wan1.3b.yaml with M = 20 and 4x4 STGA windows on
one synthetic 60 s sample at 480p/24 fps: 361 latent frames of 32x50 = 577,600 tokens, 20 shots,
bf16 autocast, activation checkpointing. Every step is the trainer's own ``train_step``
(rectified flow + balance loss, backward, DDP all-reduce, clip, AdamW). Measured per GPU: step
time, tokens/s, peak memory, and the time spent inside the sequence-parallel all-to-alls and
all-gathers (CUDA events around each ``torch.distributed`` call, so a rank's wait for its peers
counts as collective time). ``--real-shards`` feeds the trainer's real data path (ShardStream,
VAE and text encoder) instead of the synthetic sample. ``--emulate-sp P`` runs one process as
rank 0 of a P-rank group (``LoopbackGroup``): one rank's compute and memory where only one GPU
is lent, without the communication.

    torchrun --nproc-per-node 2 benchmarks/scaling.py --sp 2 --json $OUT/sp2.json
    torchrun --nproc-per-node 1 benchmarks/scaling.py --attention dense --layers 2
    python benchmarks/scaling.py --emulate-sp 2 --json $OUT/sp2_rank0.json
    python -m torch.distributed.run --standalone --nproc-per-node 2 benchmarks/scaling.py \\
        --device cpu --config configs/train-tiny.yaml --sp 2 --groups 2 --window-grid 2 2 \\
        --frames 5 --height 4 --width 4 --shots 2
    torchrun --nproc-per-node 2 benchmarks/scaling.py --device cpu \\
        --config configs/train-tiny.yaml --sp 2 --groups 2 --window-grid 2 2 \\
        --real-shards OUT/clips --set encoders.vae_path=ENC/vae \\
        --set encoders.text_encoder_path=ENC/text
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from itertools import count
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from models.dit import MoGADiT, ShotText  # noqa: E402
from models.shards import ClipSample, ShardStream  # noqa: E402
from models.train_config import TrainConfig, load_train_config
from models.trainer import EMA, Ranks, Run, build_run, init_ranks, train_step

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "train-wan1.3b.yaml"
# cuDNN first for every SDPA call (dense self-attention, shot cross-attention), as in dit_step.py.
KERNELS = [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION,
           SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
TIMED = ("all_to_all_single", "all_gather")  # what models/sequence_parallel.py moves data with


class CollectiveTimer:
    """Seconds and bytes inside ``torch.distributed``'s all-to-all and all-gather calls.

    Wraps the module attributes, which models/sequence_parallel.py looks up at each call. On
    CUDA each call is bracketed by events on the current stream, which the blocking collective
    holds until NCCL is done; on CPU (gloo, blocking) by the host clock.
    """

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.events: dict[str, list[tuple[torch.cuda.Event, torch.cuda.Event]]] = {}
        self.seconds: dict[str, float] = {}
        self.bytes: dict[str, int] = {}
        self.reset()
        for name in TIMED:
            setattr(dist, name, self._wrap(name, getattr(dist, name)))

    def reset(self) -> None:
        """Forget what was timed so far."""
        self.events = {name: [] for name in TIMED}
        self.seconds = dict.fromkeys(TIMED, 0.0)
        self.bytes = dict.fromkeys(TIMED, 0)

    def _wrap(self, name: str, call: Callable[..., Any]) -> Callable[..., Any]:
        def timed(out: Any, tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            self.bytes[name] += tensor.numel() * tensor.element_size()
            if not self.cuda:
                start = time.perf_counter()
                result = call(out, tensor, *args, **kwargs)
                self.seconds[name] += time.perf_counter() - start
                return result
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            result = call(out, tensor, *args, **kwargs)
            end.record()
            self.events[name].append((start, end))
            return result

        return timed

    def read(self) -> dict[str, float]:
        """{name}_s and {name}_bytes since the last reset; call after a device synchronize."""
        out: dict[str, float] = {}
        for name in TIMED:
            gpu = sum(a.elapsed_time(b) for a, b in self.events[name]) / 1e3
            out[f"{name}_s"] = self.seconds[name] + gpu
            out[f"{name}_bytes"] = self.bytes[name]
        return out


class LoopbackGroup:
    """Rank 0 of a ``size``-rank sequence-parallel group, emulated in one process.

    Every peer is taken to hold a copy of this rank's tokens, so each collective on this group
    returns what rank 0 of a real group receives, in shape and size, without communication: an
    all-to-all gives every peer's chunk 0 (ours), an all-gather ``size`` copies, an all-reduce
    ``size`` times the value. Compute and memory are then one rank's share of the real run (the
    whole sequence with H / size heads inside attention, N / size tokens elsewhere); the time the
    collectives take is not. Installs itself into ``torch.distributed``'s module functions, which
    models/ looks up at each call; other groups go to the real functions.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        real = {name: getattr(dist, name) for name in
                ("get_world_size", "get_rank", "all_to_all_single", "all_gather", "all_reduce")}

        def get_world_size(group: Any = None) -> int:
            return size if group is self else real["get_world_size"](group)

        def get_rank(group: Any = None) -> int:
            return 0 if group is self else real["get_rank"](group)

        def all_to_all_single(out: torch.Tensor, x: torch.Tensor, *args: Any,
                              group: Any = None, **kwargs: Any) -> Any:
            if group is not self:
                return real["all_to_all_single"](out, x, *args, group=group, **kwargs)
            out.copy_(x[:1].expand_as(x))  # dim 0 is the peer: each sends us its chunk 0
            return None

        def all_gather(parts: list[torch.Tensor], x: torch.Tensor, group: Any = None,
                       **kwargs: Any) -> Any:
            if group is not self:
                return real["all_gather"](parts, x, group=group, **kwargs)
            for part in parts:
                part.copy_(x)
            return None

        def all_reduce(x: torch.Tensor, *args: Any, group: Any = None, **kwargs: Any) -> Any:
            if group is not self:
                return real["all_reduce"](x, *args, group=group, **kwargs)
            x.mul_(size)
            return None

        for fn in (get_world_size, get_rank, all_to_all_single, all_gather, all_reduce):
            setattr(dist, fn.__name__, fn)


def loopback_ranks(size: int) -> Ranks:
    """This process as rank 0 of a ``size``-rank sequence-parallel group (DP 1) on GPU 0.

    A one-process NCCL group stands in for the job's, so the model is wrapped in DDP as on a
    real group: its gradient buckets (a second fp32 copy of the gradients) count in the peak.
    """
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29512")
    device = torch.device("cuda", 0)
    torch.cuda.set_device(device)
    dist.init_process_group("nccl", rank=0, world_size=1)
    return Ranks(0, size, device, 0, 1, LoopbackGroup(size))


class SyntheticEncoders:
    """Stands in for the trainer's Encoders: one fixed random sample's latents and captions."""

    def __init__(self, latents: torch.Tensor, text: ShotText) -> None:
        self._latents, self._text = latents, text

    def latents(self, clip_key: str, frames: torch.Tensor | None) -> torch.Tensor:
        """The sample's latents, whatever is asked for."""
        return self._latents

    def captions(self, captions: list[str]) -> ShotText:
        """The sample's caption embeddings (caption dropout does not change them)."""
        return self._text

    def truncated(self, captions: list[str]) -> int:
        """No caption is cut: the embeddings are random ones of ``text_len`` tokens."""
        return 0


def synthetic_run(cfg: TrainConfig, args: argparse.Namespace,
                  ranks: Ranks) -> tuple[Run, Iterator[ClipSample]]:
    """What ``build_run`` makes, with synthetic encoders, plus an endless stream of the sample."""
    torch.manual_seed(cfg.train.seed)
    with ranks.device:  # initialise on the device: seconds, not minutes, at 1.4 B parameters
        core = MoGADiT(cfg.model)
    core.activation_checkpointing = cfg.train.activation_checkpointing
    o = cfg.optim
    opt = torch.optim.AdamW(core.parameters(), lr=o.lr, betas=o.betas,
                            weight_decay=o.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    model: torch.nn.Module = core
    if ranks.world > 1:  # DDP broadcasts rank 0's weights
        device_ids = [ranks.device.index] if ranks.device.type == "cuda" else None
        model = torch.nn.parallel.DistributedDataParallel(core, device_ids=device_ids)
    # Ranks of one sequence-parallel group must hold the same sample: seed by data rank.
    g = torch.Generator().manual_seed(cfg.train.seed * 100_003 + ranks.dp_rank)
    m = cfg.model
    latents = torch.randn(1, m.in_channels, args.frames, m.patch_size[1] * args.height,
                          m.patch_size[2] * args.width, generator=g).to(ranks.device)
    text_len = cfg.encoders.text_len
    text = ShotText(torch.randn(1, args.shots, text_len, m.text_dim, generator=g).to(ranks.device),
                    torch.ones(1, args.shots, text_len, dtype=torch.bool, device=ranks.device))
    ema = EMA(core, o.ema_decay) if o.ema_decay else None
    run = Run(cfg, ranks, SyntheticEncoders(latents, text), core, model, opt, sched, ema, g,
              Path("."))
    starts = [args.frames * i // args.shots for i in range(args.shots)]
    samples = (ClipSample(p, f"synthetic-{p}", clip_key="synthetic", shot_starts=starts,
                          captions=[""] * args.shots) for p in count())
    return run, samples


def shard_run(cfg: TrainConfig, data: str) -> tuple[Run, Iterator[ClipSample]]:
    """The trainer's own run and sample stream over ``curate run`` shards (as ``train`` does)."""
    run = build_run(cfg, Path("."), resume=False)
    stream = ShardStream(data, cfg.data, run.enc.vae.temporal_stride, cfg.train.seed,
                         rank=run.ranks.dp_rank, world_size=run.ranks.dp_size,
                         is_cached=run.enc.latent_probe())
    loader = torch.utils.data.DataLoader(stream, batch_size=None,
                                         num_workers=cfg.data.num_workers)
    return run, iter(loader)


def measure(run: Run, samples: Iterator[ClipSample], timer: CollectiveTimer,
            steps: int) -> list[dict[str, Any]]:
    """This rank's timings of ``steps`` trainer steps."""
    cuda = run.ranks.device.type == "cuda"
    out = []
    for _ in range(steps):
        if cuda:
            torch.cuda.synchronize()
        timer.reset()
        start = time.perf_counter()
        # A fresh context each step (they are single-use); it covers the backward's recompute.
        with sdpa_kernel(KERNELS, set_priority=True) if cuda else nullcontext():
            record = train_step(run, samples)  # ends with a device synchronize
        seconds = time.perf_counter() - start
        out.append({"step_s": seconds, **timer.read(), "loss": record["loss"],
                    # the trainer's count: this rank's tokens times the number of ranks
                    "step_tokens": round(record["tokens_per_s"] * record["seconds"]),
                    "group_sizes": record["group_sizes"]})
    return out


def summarize(per_rank: list[dict[str, Any]], args: argparse.Namespace,
              cfg: TrainConfig, layers_full: int, world: int) -> dict[str, Any]:
    """One result from every rank's steps (``world`` GPUs): the slowest rank's step, the ranks'
    mean shares."""
    steps = []
    for i in range(args.warmup + args.steps):
        rows = [r["steps"][i] for r in per_rank]
        step_s = max(row["step_s"] for row in rows)
        steps.append({
            "step_s": step_s, "step_tokens": rows[0]["step_tokens"],
            "all_to_all_s": statistics.mean(row["all_to_all_single_s"] for row in rows),
            "all_gather_s": statistics.mean(row["all_gather_s"] for row in rows),
            "all_to_all_share": statistics.mean(row["all_to_all_single_s"] / row["step_s"]
                                                for row in rows),
            "all_to_all_gib_per_rank": rows[0]["all_to_all_single_bytes"] / 2**30,
            "loss": rows[0]["loss"], "group_sizes": rows[0]["group_sizes"]})
    timed = steps[args.warmup:]
    step_s = statistics.median(s["step_s"] for s in timed)
    tokens = statistics.median(s["step_tokens"] for s in timed)
    result = {
        "step_s": step_s, "tokens_per_step": tokens,
        "tokens_per_s_per_gpu": tokens / step_s / world,
        "all_to_all_s": statistics.median(s["all_to_all_s"] for s in timed),
        "all_to_all_share": statistics.median(s["all_to_all_share"] for s in timed),
        "all_gather_s": statistics.median(s["all_gather_s"] for s in timed),
        "peak_gib_per_gpu": [r["peak_gib"] for r in per_rank],
        "reserved_gib_per_gpu": [r["reserved_gib"] for r in per_rank],
        "steps": steps,
    }
    layers = cfg.model.num_layers
    if layers < layers_full:  # estimate: every per-step cost taken as proportional to depth
        result["step_s_scaled_to_full_depth"] = step_s * layers_full / layers
        result["tokens_per_s_per_gpu_scaled"] = (result["tokens_per_s_per_gpu"] * layers
                                                 / layers_full)
    return result


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--attention", choices=["moga", "dense"], default="moga")
    parser.add_argument("--sp", type=int, default=1, help="Ulysses degree (divides the heads)")
    parser.add_argument("--emulate-sp", type=int, metavar="P",
                        help="one process as rank 0 of a P-rank group (LoopbackGroup; CUDA, "
                        "synthetic sample; no communication)")
    parser.add_argument("--layers", type=int, help="time this many blocks (default: all)")
    parser.add_argument("--groups", type=int, default=20, help="MoGA groups M")
    parser.add_argument("--window-grid", type=int, nargs=2, default=[4, 4])
    parser.add_argument("--frames", type=int, default=361, help="latent frames (synthetic)")
    parser.add_argument("--height", type=int, default=32, help="token rows (synthetic)")
    parser.add_argument("--width", type=int, default=50, help="token columns (synthetic)")
    parser.add_argument("--shots", type=int, default=20, help="equal shots (synthetic)")
    parser.add_argument("--real-shards", metavar="DIR",
                        help="OUT/clips of `curate run`: the trainer's data path, real encoders")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="config override key.sub=value (e.g. encoders.vae_path=...)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=2, help="timed steps")
    parser.add_argument("--json", type=Path, help="rank 0 writes the result here")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.device == "cpu":  # the trainer picks CUDA whenever it sees it
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    elif not torch.cuda.is_available():
        sys.exit("scaling.py: --device cuda but no GPU; use --device cpu")
    if args.emulate_sp and (args.device == "cpu" or args.real_shards or args.sp != 1
                            or int(os.environ.get("WORLD_SIZE", "1")) > 1):
        sys.exit("scaling.py: --emulate-sp runs one CUDA process on the synthetic sample")
    sp = args.emulate_sp or args.sp
    base = load_train_config(args.config, args.overrides)
    overrides = [f"model.attention={args.attention}", f"model.num_groups={args.groups}",
                 f"model.window_grid={args.window_grid}", f"train.sequence_parallel={sp}",
                 *([f"model.num_layers={args.layers}"] if args.layers else []), *args.overrides]
    cfg = load_train_config(args.config, overrides)
    cuda = args.device == "cuda"
    ranks = loopback_ranks(sp) if args.emulate_sp else None  # before the timer wraps dist
    timer = CollectiveTimer(cuda)
    try:
        run, samples = (shard_run(cfg, args.real_shards) if args.real_shards else synthetic_run(
            cfg, args, ranks or init_ranks(cfg.train.sequence_parallel)))
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        mine: dict[str, Any] = {"steps": measure(run, samples, timer, args.warmup + args.steps)}
    except torch.OutOfMemoryError as err:
        mine = {"error": f"OOM: {err}"[:400]}
    mine["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    mine["reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30 if cuda else None
    world = int(os.environ.get("WORLD_SIZE", "1"))
    per_rank: list[Any] = [None] * world
    if world > 1:
        dist.all_gather_object(per_rank, mine)
    else:
        per_rank = [mine]
    if int(os.environ.get("RANK", "0")) == 0:
        errors = [r["error"] for r in per_rank if "error" in r]
        result = {"error": errors[0], "peak_gib_per_gpu": [r["peak_gib"] for r in per_rank]} \
            if errors else summarize(per_rank, args, cfg, base.model.num_layers, sp)
        header = {
            "torch": torch.__version__, "device": torch.cuda.get_device_name() if cuda else "cpu",
            "command": " ".join(sys.argv), "world": sp if args.emulate_sp else world, "sp": sp,
            "dp": 1 if args.emulate_sp else world // sp, "emulated_rank0_of_sp": args.emulate_sp,
            "attention": args.attention, "layers": cfg.model.num_layers,
            "layers_full": base.model.num_layers, "groups": args.groups,
            "window_grid": args.window_grid, "precision": cfg.train.precision,
            "activation_checkpointing": cfg.train.activation_checkpointing,
            "data": args.real_shards or {"grid": [args.frames, args.height, args.width],
                                         "tokens": args.frames * args.height * args.width,
                                         "shots": args.shots},
        }
        result = {**header, **result}
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=1))
        brief = {k: result.get(k) for k in ("world", "sp", "attention", "layers", "step_s",
                                            "tokens_per_s_per_gpu", "all_to_all_share",
                                            "peak_gib_per_gpu", "error")}
        print(json.dumps(brief), flush=True)
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
