"""One training step of MoGA-DiT, MoGA against dense cuDNN attention, in one process.

Default: the Wan2.1-1.3B-size model of configs/train-wan1.3b.yaml at 120 latent frames of 30x52
tokens = 187,200 tokens (30 s at 480p), batch 1, activation checkpointing, bf16 autocast, AdamW.
Each step is the trainer's own ``flow_loss`` + backward + clip + optimizer step on random
latents and random per-shot text embeddings (8 shots). Prints a table; ``--json`` saves it.

    python benchmarks/dit_step.py --json $OUT/dit_step.json
    python benchmarks/dit_step.py --device cpu --layers 2 --frames 5 --height 8 --width 8  # smoke
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from models.dit import MoGADiT, ShotText
from models.train_config import FlowConfig, load_train_config
from models.trainer import flow_loss

CONFIG = Path(__file__).parents[1] / "configs" / "train-wan1.3b.yaml"


def step_time(attention: str, args: argparse.Namespace, device: torch.device) -> dict:
    """Median step seconds and peak memory of one attention kind."""
    cfg = load_train_config(CONFIG, [f"model.attention={attention}",
                                     f"model.num_layers={args.layers}"]).model
    torch.manual_seed(0)
    model = MoGADiT(cfg).to(device)
    model.activation_checkpointing = True
    torch.nn.init.normal_(model.head.weight, std=0.02)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(1, cfg.in_channels, args.frames, 2 * args.height, 2 * args.width,
                          generator=g).to(device)
    shots = [args.frames * i // args.shots for i in range(args.shots)]
    text = ShotText(torch.randn(1, args.shots, args.text_len, cfg.text_dim, generator=g).to(device),
                    torch.ones(1, args.shots, args.text_len, dtype=torch.bool, device=device))
    cuda = device.type == "cuda"
    # cuDNN first for every SDPA call of both models (dense self-attention, shot cross-attention);
    # the others only where cuDNN refuses a shape.
    kernels = [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION,
               SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
    times, record = [], {}
    if cuda:
        torch.cuda.reset_peak_memory_stats()

    def one_step() -> tuple[torch.Tensor, dict]:
        # Backward recomputes checkpointed blocks: it must pick the same kernels as forward.
        with sdpa_kernel(kernels, set_priority=True):
            with torch.autocast(device.type, torch.bfloat16, enabled=cuda):
                loss, info = flow_loss(model, model, latents, text, shots, FlowConfig(), g)
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        return loss, info

    for _ in range(args.warmup + args.repeat):
        start = time.perf_counter()
        loss, info = one_step()
        times.append(time.perf_counter() - start)
        metric = info["balance_metric"]
        record = {"loss": float(loss.detach()),
                  "balance_metric_mean": sum(metric) / len(metric) if metric else None,
                  "balance_metric_max": max(metric) if metric else None}
    if args.profile:
        profile_step(one_step, args.profile / f"profile-{attention}.txt")
    timed = sorted(times[args.warmup:])
    tokens = args.frames * args.height * args.width
    return {"attention": attention, "tokens": tokens, "step_s": timed[len(timed) // 2],
            "all_step_s": times, "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda
            else None, "params": sum(p.numel() for p in model.parameters()), **record}


def profile_step(one_step: Callable[[], object], path: Path) -> None:
    """One more step under the profiler; its op table, by self CPU time, goes to ``path``."""
    activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=activities) as prof:
        one_step()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30,
                                              max_name_column_width=90))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--layers", type=int, default=30)
    parser.add_argument("--frames", type=int, default=120, help="latent frames")
    parser.add_argument("--height", type=int, default=30, help="token rows (latent height / 2)")
    parser.add_argument("--width", type=int, default=52, help="token columns")
    parser.add_argument("--shots", type=int, default=8)
    parser.add_argument("--text-len", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--attention", nargs="+", default=["moga", "dense"])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="profile one extra step per attention kind into DIR/profile-KIND.txt")
    args = parser.parse_args()
    device = torch.device(args.device)
    info = {"torch": torch.__version__, "device": torch.cuda.get_device_name(device)
            if device.type == "cuda" else "cpu", "results": []}
    for attention in args.attention:
        try:
            info["results"].append(step_time(attention, args, device))
        except torch.OutOfMemoryError as err:
            info["results"].append({"attention": attention, "error": f"OOM: {err}"[:300]})
        if device.type == "cuda":
            torch.cuda.empty_cache()
        print(json.dumps(info["results"][-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(info, indent=1))
    print(f"torch {info['torch']} on {info['device']}")
    print(f"{'attention':>9} {'tokens':>8} {'step s':>8} {'peak GiB':>9}")
    for r in info["results"]:
        peak = f"{r['peak_gib']:.1f}" if r.get("peak_gib") else "-"
        print(f"{r['attention']:>9} {r.get('tokens', '-'):>8} {r.get('step_s', float('nan')):8.2f} "
              f"{peak:>9}")
    steps = {r["attention"]: r["step_s"] for r in info["results"] if "step_s" in r}
    if {"moga", "dense"} <= steps.keys():
        print(f"dense / moga step time: {steps['dense'] / steps['moga']:.2f}x (target >= 2x)")


if __name__ == "__main__":
    main()
