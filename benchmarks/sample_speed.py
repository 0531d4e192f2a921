"""Sampling speed of MoGA-DiT, MoGA against dense attention: the sampler's own Euler step.

Each step is ``models.sampler.euler_step``: two forward passes (caption, then empty caption) for
classifier-free guidance, no_grad, bf16 autocast over fp32 weights, as ``curate sample`` runs.
Weights, latents and caption embeddings are random (timing only; no VAE, no text encoder).
A run times ``--timed`` steps of a ``--steps``-step schedule after one warm-up step (cuDNN plans,
torch.compile) and reports the median step times ``--steps``. Every step costs the same: the
shapes do not depend on t (MoGA's group sizes move a little with the router's choices).

Default: the Wan2.1-1.3B-size model of configs/train-wan1.3b.yaml at 120 latent frames of
30x52 tokens = 187,200 tokens, 8 shots of 128-token captions. ``--layers 1 2`` times several
depths and fits ``a + b * layers`` to estimate the full model (for 578k-token dense attention,
minutes per step).

    python benchmarks/sample_speed.py --json $OUT/sample_187k.json
    python benchmarks/sample_speed.py --frames 361 --height 32 --width 50 --shots 20 \\
        --groups 20 --window-grid 4 4 --attention moga --json $OUT/sample_578k_moga.json
    python benchmarks/sample_speed.py --device cpu --layers 1 2 --frames 4 --height 4 --width 4 \\
        --shots 2 --text-len 8 --timed 1  # smoke
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from models.dit import MoGADiT, ShotText  # noqa: E402
from models.sampler import euler_step, flow_times  # noqa: E402
from models.train_config import load_train_config  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "train-wan1.3b.yaml"
KERNELS = [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION,
           SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]  # as dit_step.py


def time_steps(attention: str, layers: int, args: argparse.Namespace,
               device: torch.device) -> dict:
    """Seconds of each sampler step (warm-up first) at one depth, and the peak memory."""
    overrides = [f"model.attention={attention}", f"model.num_layers={layers}",
                 f"model.num_groups={args.groups}", f"model.window_grid={args.window_grid}",
                 f"model.compile_pointwise={args.compile == 'on'}"]
    cfg = load_train_config(CONFIG, overrides).model
    torch.manual_seed(0)
    with device:  # initialise on the device: seconds, not minutes, at 1.4 B parameters
        model = MoGADiT(cfg).eval()
        torch.nn.init.normal_(model.head.weight, std=0.02)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, cfg.in_channels, args.frames, 2 * args.height, 2 * args.width,
                    generator=g).to(device)

    def captions() -> ShotText:
        emb = torch.randn(1, args.shots, args.text_len, cfg.text_dim, generator=g).to(device)
        return ShotText(emb, torch.ones(emb.shape[:3], dtype=torch.bool, device=device))

    cond, uncond = captions(), captions()
    starts = [args.frames * i // args.shots for i in range(args.shots)]
    ts = flow_times(args.steps, args.shift)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    seconds = []
    for i in range(1 + args.timed):  # a schedule's first steps, the first one a warm-up
        start = time.perf_counter()
        with sdpa_kernel(KERNELS, set_priority=True) if cuda else nullcontext():
            x = euler_step(model, x, ts[i], ts[i + 1], cond, uncond, starts, args.guidance)
        if cuda:
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    if not torch.isfinite(x).all():
        raise RuntimeError(f"{attention}: non-finite latents after {len(seconds)} steps")
    step_s = statistics.median(seconds[1:])
    return {"layers": layers, "step_s": step_s, "all_step_s": seconds,
            "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None}


def summarize(attention: str, runs: list[dict], args: argparse.Namespace) -> dict:
    """One attention kind's result: measured at full depth, or a straight-line fit over depths."""
    full = [r for r in runs if r["layers"] == args.full_layers]
    if full:
        step_s, method = full[0]["step_s"], "measured"
    else:
        xs, ys = [r["layers"] for r in runs], [r["step_s"] for r in runs]
        slope, intercept = statistics.linear_regression(xs, ys)
        step_s = intercept + slope * args.full_layers
        method = (f"fit a + b*layers over layers {xs}: a = {intercept:.3f} s, "
                  f"b = {slope:.4f} s/layer, at {args.full_layers} layers")
    return {"attention": attention, "runs": runs, "step_s": step_s, "method": method,
            "sample_s": step_s * args.steps,
            "tokens": args.frames * args.height * args.width}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--attention", nargs="+", default=["moga", "dense"])
    parser.add_argument("--layers", type=int, nargs="+", default=[30],
                        help="depths to time; without the full depth, a straight-line fit")
    parser.add_argument("--full-layers", type=int, default=30)
    parser.add_argument("--frames", type=int, default=120, help="latent frames")
    parser.add_argument("--height", type=int, default=30, help="token rows (latent height / 2)")
    parser.add_argument("--width", type=int, default=52, help="token columns")
    parser.add_argument("--shots", type=int, default=8)
    parser.add_argument("--text-len", type=int, default=128)
    parser.add_argument("--groups", type=int, default=5, help="MoGA groups M")
    parser.add_argument("--window-grid", type=int, nargs=2, default=[2, 2])
    parser.add_argument("--steps", type=int, default=50, help="sampler steps of the schedule")
    parser.add_argument("--timed", type=int, default=2, help="steps timed after the warm-up")
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--shift", type=float, default=5.0)
    parser.add_argument("--compile", choices=["on", "off"], default="on")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    device = torch.device(args.device)
    info = {"torch": torch.__version__, "device": torch.cuda.get_device_name(device)
            if device.type == "cuda" else "cpu", "args": {k: str(v) for k, v in
                                                          vars(args).items()}, "results": []}
    for attention in args.attention:
        runs = []
        for layers in args.layers:
            runs.append(time_steps(attention, layers, args, device))
            print(json.dumps({"attention": attention, **runs[-1]}), flush=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()
        info["results"].append(summarize(attention, runs, args))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(info, indent=1))
    print(f"torch {info['torch']} on {info['device']}, {args.steps} steps, CFG {args.guidance}")
    print(f"{'attention':>9} {'tokens':>8} {'step s':>8} {f'{args.steps} steps s':>12}  method")
    for r in info["results"]:
        print(f"{r['attention']:>9} {r['tokens']:>8} {r['step_s']:8.2f} {r['sample_s']:12.1f}  "
              f"{r['method']}")
    steps = {r["attention"]: r["step_s"] for r in info["results"]}
    if {"moga", "dense"} <= steps.keys():
        print(f"dense / moga sampling time: {steps['dense'] / steps['moga']:.2f}x")


if __name__ == "__main__":
    main()
