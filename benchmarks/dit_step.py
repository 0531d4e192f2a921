"""One training step of MoGA-DiT, MoGA against dense cuDNN attention, in one process.

Default: the Wan2.1-1.3B-size model of configs/train-wan1.3b.yaml at 120 latent frames of 30x52
tokens = 187,200 tokens (30 s at 480p), batch 1, activation checkpointing, bf16 autocast, AdamW.
Each step is the trainer's own ``flow_loss`` + backward + clip + optimizer step on random
latents and random per-shot text embeddings (8 shots). Prints a table; ``--json`` saves it.
``--compile off`` runs the blocks' norms, modulation and RoPE eagerly (``compile_pointwise``);
on CUDA, ``--check`` first compares both ways against a float64 model on a small input.

    python benchmarks/dit_step.py --check --json $OUT/dit_step.json
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

from models.dit import DiTConfig, MoGADiT, ShotText
from models.train_config import FlowConfig, load_train_config
from models.trainer import flow_loss

CONFIG = Path(__file__).parents[1] / "configs" / "train-wan1.3b.yaml"


def step_time(attention: str, args: argparse.Namespace, device: torch.device) -> dict:
    """Median step seconds and peak memory of one attention kind."""
    cfg = load_train_config(CONFIG, [f"model.attention={attention}",
                                     f"model.num_layers={args.layers}",
                                     f"model.compile_pointwise={args.compile == 'on'}"]).model
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
        profile_step(one_step, args.profile / f"profile-{attention}-compile-{args.compile}.txt")
    timed = sorted(times[args.warmup:])
    tokens = args.frames * args.height * args.width
    return {"attention": attention, "compile": args.compile, "layers": args.layers,
            "tokens": tokens, "step_s": timed[len(timed) // 2],
            "all_step_s": times, "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda
            else None, "params": sum(p.numel() for p in model.parameters()), **record}


def profile_step(one_step: Callable[[], object], path: Path) -> None:
    """One more step under the profiler; its op tables, by self GPU and by self CPU time, go to
    ``path``."""
    activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=activities) as prof:
        one_step()
    path.parent.mkdir(parents=True, exist_ok=True)
    ops = prof.key_averages()
    path.write_text("\n".join(ops.table(sort_by=key, row_limit=45, max_name_column_width=90)
                              for key in ("self_device_time_total", "self_cpu_time_total")))


def check_pointwise(device: torch.device) -> dict:
    """Relative errors of a small DiT's output and gradients against its float64 twin: dense in
    bf16 autocast and MoGA in fp32 (bf16 routing would differ from float64's), each with the
    pointwise work compiled and eager."""
    g = torch.Generator().manual_seed(1)
    shape = dict(in_channels=16, dim=256, num_layers=2, num_heads=2, ffn_dim=512, text_dim=64,
                 num_groups=2)
    latents = torch.randn(1, 16, 6, 16, 16, generator=g).to(device)
    text = ShotText(torch.randn(1, 2, 8, 64, generator=g).to(device),
                    torch.ones(1, 2, 8, dtype=torch.bool, device=device))
    t = torch.tensor([700.0], device=device)
    out = {}
    for attention, bf16 in (("dense", True), ("moga", False)):
        torch.manual_seed(0)
        ref = MoGADiT(DiTConfig(**shape, attention=attention)).to(device)
        torch.nn.init.normal_(ref.head.weight, std=0.02)
        results = {}
        for name, dtype, compiled in (("float64", torch.float64, False),
                                      ("compiled", torch.float32, True),
                                      ("eager", torch.float32, False)):
            model = MoGADiT(DiTConfig(**shape, attention=attention, compile_pointwise=compiled))
            model.load_state_dict(ref.state_dict())
            model = model.to(device, dtype)
            with torch.autocast("cuda", torch.bfloat16, enabled=bf16 and name != "float64"):
                pred, _ = model(latents.to(dtype), t, ShotText(text.embeddings.to(dtype),
                                                                text.mask), [0, 3])
            pred.float().square().mean().backward()
            grads = torch.cat([p.grad.flatten().double() for p in model.parameters()
                               if p.grad is not None])
            results[name] = (pred.detach().double(), grads)
        want_out, want_grad = results.pop("float64")
        for name, (got_out, got_grad) in results.items():
            out[f"{attention} {'bf16' if bf16 else 'fp32'} {name}"] = {
                "out": float((got_out - want_out).norm() / want_out.norm()),
                "grad": float((got_grad - want_grad).norm() / want_grad.norm())}
    return out


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
    parser.add_argument("--compile", choices=["on", "off"], default="on",
                        help="compile_pointwise: fuse the blocks' norms, modulation and RoPE")
    parser.add_argument("--check", action="store_true",
                        help="first check compiled and eager against float64 (CUDA)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="profile one extra step per attention kind into DIR/profile-KIND.txt")
    args = parser.parse_args()
    device = torch.device(args.device)
    info = {"torch": torch.__version__, "device": torch.cuda.get_device_name(device)
            if device.type == "cuda" else "cpu", "results": []}
    if args.check and device.type == "cuda":
        info["check"] = check_pointwise(device)
        print(json.dumps(info["check"]), flush=True)
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
    print(f"{'attention':>9} {'compile':>7} {'tokens':>8} {'step s':>8} {'peak GiB':>9}")
    for r in info["results"]:
        peak = f"{r['peak_gib']:.2f}" if r.get("peak_gib") else "-"
        print(f"{r['attention']:>9} {args.compile:>7} {r.get('tokens', '-'):>8} "
              f"{r.get('step_s', float('nan')):8.2f} {peak:>9}")
    steps = {r["attention"]: r["step_s"] for r in info["results"] if "step_s" in r}
    if {"moga", "dense"} <= steps.keys():
        print(f"dense / moga step time: {steps['dense'] / steps['moga']:.2f}x (target >= 3x)")


if __name__ == "__main__":
    main()
