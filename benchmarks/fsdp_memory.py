"""Peak GPU memory of FSDP training steps of the Wan2.1-14B-size MoGA-DiT (issue 16).

The model of configs/train-wan14b.yaml, sharded with FSDP2 over all local ranks as the trainer
does with ``train.fsdp`` (models/fsdp.py: per block then the root, bf16 gathers and compute,
fp32 reduce-scatter), with activation checkpointing, Ulysses over ``--sp`` ranks, and AdamW. A
step is the trainer's ``flow_loss`` + backward + clip + AdamW on one random sample with 128 text
tokens per shot: 187,200 tokens (120 latent frames of 30x52, 30 s at 480p/16 fps, 8 shots, as
benchmarks/dit_step.py) and 577,600 (361 of 32x50, 60 s at 480p/24 fps, 20 shots, as
benchmarks/scaling.py). ``--steps`` steps (default 2: the second has the AdamW state from the
start), peak = ``torch.cuda.max_memory_allocated`` over them, the maximum over ranks.

A whole 14B does not fit one GPU: fp32 weights, gradients and AdamW m and v are 16 B per
parameter, 229 GB, and the activations of 187k tokens at width 5120 are more than one GPU holds.
So the script measures what one GPU of the target run (``--target-gpus`` GPUs, Ulysses
``--target-sp``) holds, at fewer layers, and extrapolates:

- Tokens. Under Ulysses each GPU holds N/S tokens of every activation (inside attention N tokens
  of H/S heads, the same bytes). So a run here with ``--sp s`` uses a sample of about N s / S
  tokens: fewer latent frames and proportionally fewer shots. With s = S (8 GPUs, ``--sp 8``) it
  is the real sample.
- Memory of the last step, per rank: resident R before its forward (fp32 weight shards and AdamW
  m and v, no gradients), after its forward F (plus the activations kept for backward: each
  block's checkpointed input, the root's), and its peak P (plus gradient shards and the working
  set of one block's recompute and backward).
- Depth. F - R at two or more layer counts (``--layers``, default 1 2) fits activations = a0 +
  a1 x layers; the working set is P - F - this rank's gradient shards.
- Estimate, an upper bound: 12 B (16 B with an EMA) x all parameters / target GPUs (weights and
  AdamW) + 4 B x parameters / target GPUs (all gradient shards) + a0 + a1 x num_layers (all
  checkpointed inputs) + the working set. It holds everything at once, though gradients grow as
  backward frees checkpointed inputs: by up to the gradients (7 GiB for 14B on 8 GPUs) it is
  high.

It assumes activations per GPU depend only on the tokens per GPU (Ulysses' all-to-all buffers
are transients inside one block's attention) and that FSDP splits states evenly. The peak is the
allocator's: the CUDA context, NCCL buffers and fragmentation (see reserved) come on top. With
``--layers`` equal to the model's (e.g. 40 on 8 GPUs with ``--sp 8``) the peak is measured.
An out-of-memory error is recorded and the next run starts; if it hits only some of several
ranks, the others wait in a collective until NCCL's timeout, so bound the call with ``timeout``.

    python benchmarks/fsdp_memory.py                    # 1 GPU; JSON to $OUT/fsdp_memory.json
    torchrun --standalone --nproc-per-node 2 benchmarks/fsdp_memory.py --sp 2
    torchrun --standalone --nproc-per-node 8 benchmarks/fsdp_memory.py --sp 8 --layers 40
    python benchmarks/fsdp_memory.py --config configs/train-tiny.yaml --shape 4 4 4  # CPU smoke

Without a GPU it runs on the CPU in fp32 (gloo), which only checks the code path.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from models.dit import MoGADiT, ShotText  # noqa: E402
from models.fsdp import shard_model  # noqa: E402
from models.train_config import TrainConfig, load_train_config  # noqa: E402
from models.trainer import Ranks, flow_loss, init_ranks  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "train-wan14b.yaml"
# tokens -> (latent frames, token rows, token columns, shots)
SHAPES = {187_200: (120, 30, 52, 8), 577_600: (361, 32, 50, 20)}
# cuDNN first for every SDPA call, as in dit_step.py; backward recomputes with the same kernels.
KERNELS = [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION,
           SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
GIB = 2**30


def sharded_model(cfg: TrainConfig, layers: int, device: torch.device) -> MoGADiT:
    """The model with ``layers`` blocks, sharded on the meta device, then materialised with
    random weights on each rank's shard (no rank ever holds a full copy)."""
    with torch.device("meta"):
        core = MoGADiT(cfg.model.model_copy(update={"num_layers": layers}))
    shard_model(core, device, cfg.train.precision)
    core.to_empty(device=device)
    g = torch.Generator(device).manual_seed(dist.get_rank())
    with torch.no_grad():
        for name, param in core.named_parameters():
            local = param.to_local()
            if name.endswith("bias"):
                local.zero_()
            elif param.ndim == 1:  # norm scales
                local.fill_(1.0)
            else:  # a random head too: a zero head would leave the blocks without gradients
                local.normal_(0.0, 0.02, generator=g)
    core.activation_checkpointing = True
    return core


def sample(cfg: TrainConfig, shape: tuple[int, int, int, int], ranks: Ranks,
           g: torch.Generator) -> tuple[torch.Tensor, ShotText, list[int]]:
    """Random latents and per-shot caption embeddings of one sample, the same on every rank."""
    frames, rows, cols, shots = shape
    m, device, text_len = cfg.model, ranks.device, cfg.encoders.text_len
    latents = torch.randn(1, m.in_channels, frames, m.patch_size[1] * rows,
                          m.patch_size[2] * cols, generator=g).to(device)
    text = ShotText(torch.randn(1, shots, text_len, m.text_dim, generator=g).to(device),
                    torch.ones(1, shots, text_len, dtype=torch.bool, device=device))
    return latents, text, [frames * i // shots for i in range(shots)]


def measure(cfg: TrainConfig, ranks: Ranks, layers: int, shape: tuple[int, int, int, int],
            steps: int) -> dict[str, Any]:
    """Memory (resident, after forward, peak) of the last of ``steps`` training steps on this
    rank, and every step's time."""
    cuda = ranks.device.type == "cuda"
    core = sharded_model(cfg, layers, ranks.device)
    opt = torch.optim.AdamW(core.parameters(), lr=cfg.optim.lr, betas=cfg.optim.betas)
    g = torch.Generator().manual_seed(0)  # the same sample on every rank
    latents, text, starts = sample(cfg, shape, ranks, g)
    memory = torch.cuda.memory_allocated if cuda else (lambda: 0)
    times, loss, mem = [], float("nan"), {}
    for _ in range(steps):
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        start, mem["resident"] = time.perf_counter(), memory()
        with sdpa_kernel(KERNELS, set_priority=True) if cuda else nullcontext():
            with torch.autocast(ranks.device.type, torch.bfloat16, enabled=cuda):
                out, _ = flow_loss(core, core, latents, text, starts, cfg.flow, g, ranks.sp_group)
            mem["forward"] = memory()
            out.backward()
        torch.nn.utils.clip_grad_norm_(core.parameters(), cfg.optim.grad_clip or float("inf"))
        opt.step()
        opt.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        loss = float(out.detach())
    return {**{f"{k}_gib": v / GIB for k, v in mem.items()},
            "peak_gib": torch.cuda.max_memory_allocated() / GIB if cuda else 0.0,
            "reserved_gib": torch.cuda.max_memory_reserved() / GIB if cuda else 0.0,
            "step_s": times, "loss": loss}


def safe_measure(cfg: TrainConfig, ranks: Ranks, layers: int, shape: tuple[int, int, int, int],
                 steps: int) -> dict[str, Any]:
    """:func:`measure`, with an out-of-memory error recorded instead of raised; memory freed."""
    try:
        result = measure(cfg, ranks, layers, shape, steps)
    except torch.OutOfMemoryError as err:
        result = {"error": f"OOM: {err}"[:300]}
    gc.collect()
    if ranks.device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def local_shape(tokens: int, local_sp: int, target_sp: int) -> tuple[int, int, int, int]:
    """The sample whose tokens per rank at ``local_sp`` match ``tokens`` at ``target_sp``."""
    frames, rows, cols, shots = SHAPES[tokens]
    keep = max(1, round(frames * local_sp / target_sp))
    while keep * rows * cols % local_sp:
        keep += 1
    return keep, rows, cols, max(1, min(keep, round(shots * keep / frames)))


def param_counts(cfg: TrainConfig) -> dict[str, int]:
    """Parameters of the whole model, of one block and of the rest (the root)."""
    with torch.device("meta"):
        one = MoGADiT(cfg.model.model_copy(update={"num_layers": 1}))
    layer = sum(p.numel() for p in one.blocks[0].parameters())
    root = sum(p.numel() for p in one.parameters()) - layer
    return {"total": root + cfg.model.num_layers * layer, "layer": layer, "root": root}


def gathered(result: dict[str, Any]) -> dict[str, Any]:
    """The largest value of each memory and time figure over the ranks."""
    everyone: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, result)
    errors = [r["error"] for r in everyone if "error" in r]
    if errors:
        return {"error": errors[0]}
    out = {k: max(r[k] for r in everyone) for k in result if k.endswith("_gib")}
    out["step_s"] = [max(r["step_s"][i] for r in everyone) for i in range(len(result["step_s"]))]
    return {**out, "loss": result["loss"]}


def estimate(runs: list[dict[str, Any]], params: dict[str, int], cfg: TrainConfig, world: int,
             target_gpus: int) -> dict[str, Any] | None:
    """Upper bound of the whole model's per-GPU peak on ``target_gpus`` GPUs, from runs of one
    sample at two or more depths (see the module docstring); None without two depths."""
    ok = [r for r in runs if "error" not in r]
    if len({r["layers"] for r in ok}) < 2:
        return None
    xs = [r["layers"] for r in ok]
    ys = [r["forward_gib"] - r["resident_gib"] for r in ok]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    per_layer = (sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
                 / sum((x - mx) ** 2 for x in xs))
    deepest = max(ok, key=lambda r: r["layers"])
    local_grads = 4 * (params["root"] + deepest["layers"] * params["layer"]) / world / GIB
    parts = {
        "states_gib": (12 + 4 * bool(cfg.optim.ema_decay)) * params["total"] / target_gpus / GIB,
        "grads_gib": 4 * params["total"] / target_gpus / GIB,
        "activations_gib": my - per_layer * mx + per_layer * cfg.model.num_layers,
        "working_gib": max(0.0, deepest["peak_gib"] - deepest["forward_gib"] - local_grads)}
    return {**parts, "activations_per_layer_gib": per_layer,
            "estimate_gib": sum(parts.values())}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; ``--help`` lists them."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="config override (repeatable)")
    parser.add_argument("--sp", type=int, default=1, help="Ulysses ranks here (divides world)")
    parser.add_argument("--layers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--tokens", type=int, nargs="+", default=list(SHAPES),
                        choices=list(SHAPES))
    parser.add_argument("--shape", type=int, nargs=3, metavar=("FRAMES", "ROWS", "COLS"),
                        help="one custom sample of latent frames x token rows x columns, run "
                        "as is (no per-GPU scaling) instead of --tokens")
    parser.add_argument("--shots", type=int, default=2, help="shots of the --shape sample")
    parser.add_argument("--target-gpus", type=int, default=8)
    parser.add_argument("--target-sp", type=int, nargs="+", default=[8])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--json", type=Path, help="default: $OUT/fsdp_memory.json if $OUT is set")
    args = parser.parse_args(argv)
    if args.json is None and os.environ.get("OUT"):
        args.json = Path(os.environ["OUT"]) / "fsdp_memory.json"
    for sp in args.target_sp:
        if sp < args.sp or args.target_gpus % sp:
            parser.error(f"--target-sp {sp} must be >= --sp and divide --target-gpus")
    return args


def cases(args: argparse.Namespace) -> list[dict[str, Any]]:
    """(tokens, target sp, sample here) of every sample to run."""
    if args.shape:
        frames, rows, cols = args.shape
        return [{"tokens": frames * rows * cols, "target_sp": args.sp,
                 "shape": (frames, rows, cols, args.shots)}]
    return [{"tokens": t, "target_sp": s, "shape": local_shape(t, args.sp, s)}
            for t in args.tokens for s in args.target_sp]


def run_all(args: argparse.Namespace, cfg: TrainConfig, ranks: Ranks) -> dict[str, Any]:
    """Every case at every depth, then the estimates; what rank 0 reports."""
    params = param_counts(cfg)
    world = dist.get_world_size() if dist.is_initialized() else 1
    info: dict[str, Any] = {
        "torch": torch.__version__, "world": world, "sp": args.sp, "config": str(args.config),
        "device": torch.cuda.get_device_name(ranks.device) if ranks.device.type == "cuda"
        else "cpu", "params": params, "target_gpus": args.target_gpus, "runs": [],
        "estimates": []}
    for case in cases(args):
        frames, rows, cols, shots = case["shape"]
        runs = []
        for layers in args.layers:
            result = gathered(safe_measure(cfg, ranks, layers, case["shape"], args.steps))
            runs.append({**case, "local_tokens": frames * rows * cols // args.sp,
                         "shots": shots, "layers": layers, **result})
            if ranks.rank == 0:
                print(json.dumps(runs[-1]), flush=True)
        info["runs"] += runs
        found = estimate(runs, params, cfg, world, args.target_gpus)
        if found:
            info["estimates"].append({"tokens": case["tokens"], "target_sp": case["target_sp"],
                                      **found})
    return info


def report(info: dict[str, Any], cfg: TrainConfig) -> None:
    """Tables of the runs and estimates."""
    print(f"torch {info['torch']} on {info['world']} x {info['device']}, sp {info['sp']}; "
          f"{info['params']['total'] / 1e9:.2f} B parameters in {cfg.model.num_layers} layers")
    print(f"{'tokens':>8} {'tgt sp':>6} {'tok/GPU':>8} {'layers':>6} {'resid':>6} {'fwd':>6} "
          f"{'peak':>6} {'reserv':>6} {'step s':>7}   (GiB per GPU, max over ranks)")
    for r in info["runs"]:
        if "error" in r:
            print(f"{r['tokens']:>8} {r['target_sp']:>6} {r['local_tokens']:>8} "
                  f"{r['layers']:>6}  {r['error'][:60]}")
            continue
        print(f"{r['tokens']:>8} {r['target_sp']:>6} {r['local_tokens']:>8} {r['layers']:>6} "
              f"{r['resident_gib']:6.1f} {r['forward_gib']:6.1f} {r['peak_gib']:6.1f} "
              f"{r['reserved_gib']:6.1f} {r['step_s'][-1]:7.2f}")
    print(f"estimate for {cfg.model.num_layers} layers on {info['target_gpus']} GPUs "
          "(upper bound; add the CUDA context and NCCL buffers):")
    print(f"{'tokens':>8} {'sp':>3} {'states':>7} {'grads':>6} {'activ':>6} {'/layer':>7} "
          f"{'work':>6} {'total':>6}")
    for e in info["estimates"]:
        print(f"{e['tokens']:>8} {e['target_sp']:>3} {e['states_gib']:7.1f} "
              f"{e['grads_gib']:6.1f} {e['activations_gib']:6.1f} "
              f"{e['activations_per_layer_gib']:7.3f} {e['working_gib']:6.1f} "
              f"{e['estimate_gib']:6.1f}")


def main() -> None:
    args = parse_args()
    cfg = load_train_config(args.config, [*args.overrides, f"train.sequence_parallel={args.sp}",
                                          "train.fsdp=true"])
    ranks = init_ranks(args.sp)
    info = run_all(args, cfg, ranks)
    if ranks.rank == 0:
        report(info, cfg)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(info, indent=1))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
