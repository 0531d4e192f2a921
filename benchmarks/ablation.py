"""Ablations of MoGA-DiT (paper Fig. 11, Table 4, appendix B) on a synthetic multi-shot task.

Each run trains a fresh model (the same seed, so the same initial weights and the same stream of
samples, noise and timesteps) with the trainer's own ``flow_loss`` (velocity MSE + balancing loss),
backward, clipping and AdamW, and logs per step the losses, the balance metric
(``M * sum_i F_i^2``: 1 for equal groups, M when all tokens share one group), the middle layer's
group sizes and the step's FLOPs (models/flops.py: 3 x forward). Runs: every ``--attention`` mode;
modes with a router (moga, moga_only) once per ``--groups`` M and ``--alphas`` balance_alpha. The
default compares alpha 0.1 with 0: the paper's appendix B says the router collapses (the metric
keeps rising) without the balancing loss. At the end each run's model is scored on a fixed
held-out set (``eval_loss``). Prints a table; writes JSON to ``--json``, else $OUT/ablation.json
if $OUT is set.

The synthetic task: each video cuts between two "characters" (of 16) shot / reverse-shot style,
2 to ``--shots`` shots at random latent frames; a character is a smooth random latent pattern that
drifts by a per-shot velocity, and each shot's caption is its character's fixed random embedding.
So a shot can borrow appearance from earlier shots of the same character (MoGA's cross-shot
path) and must move smoothly within a shot (STGA's local path).

    python benchmarks/ablation.py                    # GPU: Wan2.1-1.3B shape, 300 steps
    python benchmarks/ablation.py --attention moga moga_only stga_only dense --alphas 0.1
    python benchmarks/ablation.py --groups 1 2 4 8 --alphas 0.1    # Table 4's M sweep
    python benchmarks/ablation.py --tiny --steps 5   # CPU smoke test
    python benchmarks/ablation.py --config configs/train-wan1.3b.yaml --data OUT/clips \\
        --set encoders.vae_path=... --steps 300     # curated shards through models.trainer.train
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from models.dit import DiTConfig, MoGADiT, ShotText  # noqa: E402
from models.train_config import FlowConfig, load_train_config  # noqa: E402
from models.trainer import flow_loss, train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# cuDNN first for every SDPA call, forward and recomputed forward alike (as in dit_step.py).
KERNELS = [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION,
           SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
ROUTED = ("moga", "moga_only")


@dataclass
class Synthetic:
    """Multi-shot latents with recurring characters and per-shot captions (module docstring)."""

    channels: int
    grid: tuple[int, int, int]  # latent frames, token rows, token columns
    text_len: int
    text_dim: int
    max_shots: int
    characters: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        g = torch.Generator().manual_seed(self.seed)
        _, rows, cols = self.grid
        coarse = torch.randn(self.characters, self.channels, rows // 2 + 1, cols // 2 + 1,
                             generator=g)
        fine = F.interpolate(coarse, size=(2 * rows, 2 * cols), mode="bilinear")
        self.patterns = fine / fine.std(dim=(1, 2, 3), keepdim=True)
        self.captions = torch.randn(self.characters, self.text_len, self.text_dim, generator=g)

    def sample(self, g: torch.Generator) -> tuple[torch.Tensor, ShotText, list[int]]:
        """latents (1, C, F, H, W), the shots' captions, and the shot starts (latent frames)."""
        frames = self.grid[0]
        shots = int(torch.randint(2, max(2, min(self.max_shots, frames)) + 1, (1,), generator=g))
        cuts = (torch.randperm(frames - 1, generator=g)[:shots - 1] + 1).sort().values.tolist()
        starts = [0, *cuts]
        pair = torch.randperm(self.characters, generator=g)[:2]
        ids = pair[torch.arange(len(starts)) % 2]
        video = []
        for s, (a, b) in enumerate(zip(starts, [*cuts, frames], strict=True)):
            dy, dx = torch.randint(-1, 2, (2,), generator=g).tolist()
            offset = torch.randint(0, 4, (2,), generator=g).tolist()
            for t in range(b - a):
                shift = (offset[0] + dy * t, offset[1] + dx * t)
                video.append(self.patterns[ids[s]].roll(shift, dims=(1, 2)))
        latents = torch.stack(video, dim=1)[None]
        latents = latents + 0.1 * torch.randn(latents.shape, generator=g)
        text = self.captions[ids][None]
        return latents, ShotText(text, torch.ones(text.shape[:3], dtype=torch.bool)), starts


def to_device(sample: tuple[torch.Tensor, ShotText, list[int]], device: torch.device
              ) -> tuple[torch.Tensor, ShotText, list[int]]:
    """A synthetic sample on ``device``."""
    latents, text, starts = sample
    return (latents.to(device), ShotText(text.embeddings.to(device), text.mask.to(device)),
            starts)


def synthetic_run(cfg: DiTConfig, data: Synthetic, args: argparse.Namespace,
                  device: torch.device) -> list[dict[str, Any]]:
    """Step records of one training run on the synthetic task (the last one has eval_loss)."""
    torch.manual_seed(args.seed)
    model = MoGADiT(cfg).to(device)
    model.activation_checkpointing = not args.tiny
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr)
    noise, stream = torch.Generator().manual_seed(args.seed), torch.Generator().manual_seed(1)
    cuda = device.type == "cuda"
    records = []
    for step in range(1, args.steps + 1):
        start = time.perf_counter()
        latents, text, starts = to_device(data.sample(stream), device)
        with sdpa_kernel(KERNELS, set_priority=True):
            with torch.autocast(device.type, torch.bfloat16, enabled=cuda):
                loss, info = flow_loss(model, model, latents, text, starts, FlowConfig(), noise)
            loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        metric = info["balance_metric"]
        records.append({
            "step": step, "loss": float(loss.detach()), "flow_loss": float(info["flow_loss"]),
            "balance_metric": sum(metric) / len(metric) if metric else None,
            "balance_metric_max": max(metric) if metric else None,
            "group_sizes": info["group_sizes"], "grad_norm": float(grad_norm),
            "flops": info["counts"].flops, "attn_pairs": info["counts"].pairs,
            "seconds": time.perf_counter() - start})
        if step % max(1, args.steps // 10) == 0:
            print(json.dumps({k: records[-1][k] for k in ("step", "loss", "balance_metric")}),
                  flush=True)
    records[-1]["eval_loss"] = eval_loss(model, data, args.seed, device)
    return records


@torch.no_grad()
def eval_loss(model: MoGADiT, data: Synthetic, seed: int, device: torch.device) -> float:
    """Velocity MSE on 8 held-out samples at t = 0.25, 0.5, 0.75, the same for every run."""
    g = torch.Generator().manual_seed(seed + 10_000)
    cuda = device.type == "cuda"
    losses = []
    for _ in range(8):
        latents, text, starts = to_device(data.sample(g), device)
        noise = torch.randn(latents.shape, generator=g).to(device)
        for t in (0.25, 0.5, 0.75):
            with sdpa_kernel(KERNELS, set_priority=True):
                with torch.autocast(device.type, torch.bfloat16, enabled=cuda):
                    pred, _ = model((1 - t) * latents + t * noise,
                                    torch.full((1,), 1000.0 * t, device=device), text, starts)
            target = model.patchify(noise - latents)
            losses.append(float(F.mse_loss(pred.float(), target.float())))
    return sum(losses) / len(losses)


def shards_run(args: argparse.Namespace, overrides: list[str]) -> list[dict[str, Any]]:
    """Step records of ``models.trainer.train`` on curated shards, written to a temp folder."""
    cfg = load_train_config(args.config, [*args.set, *overrides, f"train.steps={args.steps}",
                                          "train.log_every=1",
                                          f"train.checkpoint_every={args.steps}"])
    with tempfile.TemporaryDirectory() as tmp:
        return train(cfg, args.data, Path(tmp), resume=False)


def summarize(name: str, overrides: dict[str, Any], records: list[dict[str, Any]]
              ) -> dict[str, Any]:
    """A run's table row: means over its first and last tenth of steps (flow_loss is the
    velocity MSE, loss adds the balancing loss), and the records."""
    tenth = max(1, len(records) // 10)

    def mean(key: str, part: list[dict[str, Any]]) -> float | None:
        values = [r[key] for r in part if r.get(key) is not None]
        return sum(values) / len(values) if values else None

    metric_max = [r["balance_metric_max"] for r in records if r["balance_metric_max"]]
    return {
        "run": name, **overrides, "steps": len(records),
        "flow_loss_first": mean("flow_loss", records[:tenth]),
        "flow_loss_last": mean("flow_loss", records[-tenth:]),
        "loss_last": mean("loss", records[-tenth:]),
        "eval_loss": records[-1].get("eval_loss"),
        "balance_first": mean("balance_metric", records[:tenth]),
        "balance_last": mean("balance_metric", records[-tenth:]),
        "balance_max": max(metric_max) if metric_max else None,
        "group_sizes_last": records[-1]["group_sizes"],
        "tflops_per_step": statistics.mean(r["flops"] for r in records) / 1e12,
        "step_s": statistics.median(r["seconds"] for r in records), "records": records,
    }


def plan_runs(args: argparse.Namespace) -> list[tuple[str, dict[str, Any]]]:
    """(name, model overrides) of every run."""
    runs = []
    for attention in args.attention:
        if attention not in ROUTED:
            runs.append((attention, {"attention": attention}))
            continue
        for m in args.groups or [None]:
            for alpha in args.alphas:
                over = {"attention": attention, "balance_alpha": alpha,
                        **({"num_groups": m} if m else {})}
                runs.append((f"{attention}{f' M={m}' if m else ''} a={alpha:g}", over))
    return runs


def model_config(args: argparse.Namespace) -> tuple[DiTConfig, Synthetic]:
    """The base model config and the synthetic task of the chosen shape."""
    if args.tiny:
        model = load_train_config(ROOT / "configs" / "train-tiny.yaml").model
        grid, text_len, shots = (5, 4, 4), 8, 3
    else:
        model = load_train_config(ROOT / "configs" / "train-wan1.3b.yaml").model
        grid, text_len, shots = (args.frames, args.height, args.width), args.text_len, args.shots
    fields = {k: v for k, v in model.model_dump().items() if k in DiTConfig.model_fields}
    if args.layers:
        fields["num_layers"] = args.layers
    cfg = DiTConfig(**fields)
    return cfg, Synthetic(cfg.in_channels, grid, text_len, cfg.text_dim, shots, seed=args.seed)


def print_table(rows: list[dict[str, Any]]) -> None:
    """One line per run."""
    def f(v: float | None, width: int, digits: int) -> str:
        return f"{'-':>{width}}" if v is None else f"{v:{width}.{digits}f}"

    print(f"{'run':<22} {'flow first':>10} {'flow last':>10} {'eval':>8} {'balance':>8} "
          f"{'-> last':>8} {'max':>6} {'GFLOP/step':>11} {'s/step':>7}  groups (mid layer)")
    for r in rows:
        print(f"{r['run']:<22} {f(r['flow_loss_first'], 10, 4)} {f(r['flow_loss_last'], 10, 4)} "
              f"{f(r['eval_loss'], 8, 4)} {f(r['balance_first'], 8, 3)} "
              f"{f(r['balance_last'], 8, 3)} {f(r['balance_max'], 6, 2)} "
              f"{r['tflops_per_step'] * 1e3:11.4g} {r['step_s']:7.3f}  {r['group_sizes_last']}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tiny", action="store_true", help="configs/train-tiny.yaml's model, CPU")
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--attention", nargs="+", default=["moga"],
                   choices=["moga", "moga_only", "stga_only", "dense"])
    p.add_argument("--alphas", nargs="+", type=float, default=[0.1, 0.0])
    p.add_argument("--groups", nargs="+", type=int, help="MoGA M values (default: the config's)")
    p.add_argument("--layers", type=int, help="blocks (default: the config's)")
    p.add_argument("--frames", type=int, default=21, help="latent frames (not --tiny)")
    p.add_argument("--height", type=int, default=16, help="token rows (not --tiny)")
    p.add_argument("--width", type=int, default=16, help="token columns (not --tiny)")
    p.add_argument("--shots", type=int, default=5, help="most shots per video (not --tiny)")
    p.add_argument("--text-len", type=int, default=32, help="caption tokens (not --tiny)")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", type=Path, help="with --data: train on curated shards")
    p.add_argument("--data", help="curated shards (OUT/clips); needs --config")
    p.add_argument("--set", action="append", default=[], help="config override, repeatable")
    p.add_argument("--json", type=Path, help="default: $OUT/ablation.json if $OUT is set")
    args = p.parse_args(argv)
    if bool(args.config) != bool(args.data):
        p.error("--config and --data go together")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run every ablation, print the table, write the JSON; returns what the JSON holds."""
    args = parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() and not args.tiny
                                          else "cpu"))
    base, data = model_config(args)
    rows = []
    for name, over in plan_runs(args):
        print(f"== {name}", flush=True)
        if args.data:
            records = shards_run(args, [f"model.{k}={v}" for k, v in over.items()])
        else:
            records = synthetic_run(DiTConfig(**{**base.model_dump(), **over}), data, args,
                                    device)
        rows.append(summarize(name, over, records))
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print_table(rows)
    info = {"torch": torch.__version__, "device": torch.cuda.get_device_name(device)
            if device.type == "cuda" else "cpu", "args": {k: str(v) for k, v in vars(args).items()},
            "model": base.model_dump(mode="json"), "runs": rows}
    out = args.json
    if out is None and os.environ.get("OUT"):
        out = Path(os.environ["OUT"]) / "ablation.json"
    if out:
        out.write_text(json.dumps(info, indent=1))
        print(f"wrote {out}")
    return info


if __name__ == "__main__":
    main()
