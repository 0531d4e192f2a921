"""MoGA layer memory and speed: the fused path against the per-branch path and dense cuDNN, one GPU.

The fused path is ``grouped_autograd.grouped_mean`` (one autograd node per branch, re-gathering
q, k, v in the backward, each node's outputs freed as soon as its backward is done); the
per-branch path is one ``attention_core.attention`` call per branch, what the layer ran before
and still runs where the fused path has no kernels. Sizes, layer and router calibration as in
``benchmarks/attention.py`` (bf16, B = 1, H = 12, D = 128; 187,200 and 577,600 tokens). Per size:
peak memory over fwd+bwd and memory held after the forward, GiB above the inputs, for dense,
per-branch and fused; CUDA-event medians of the layer's fwd and fwd+bwd, per-branch and fused
interleaved, twice each; dense times at 30 s only, and a kernel profile of both paths there.
First, correctness on the GPU against float64: the layer (fused bf16 and fp16, per-branch bf16,
fp32) and ``grouped_mean`` alone on groups of 1 to 1,450 tokens, outputs and every gradient.

    python benchmarks/attention_memory.py [--sizes 30s,60s] [--out DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.attention import (  # noqa: E402
    DIM,
    HEAD_DIM,
    HEADS,
    SIZES,
    calibrated_layer,
    dense,
    held_gib,
    layer_steps,
    median_ms,
    peak_gib,
    profile_layer,
)
from models import moga  # noqa: E402
from models.attention_core import Backend, attention  # noqa: E402
from models.grouped_autograd import grouped_mean  # noqa: E402
from models.moga import MoGASelfAttention, moga_plan  # noqa: E402
from models.stga import frame_plan, window_plan  # noqa: E402


@contextlib.contextmanager
def per_branch() -> Iterator[None]:
    """The layer's per-branch path: as if the fused kernels were missing."""
    saved = moga.fused_supported
    moga.fused_supported = lambda x: False
    try:
        yield
    finally:
        moga.fused_supported = saved


PATHS = {"fused": contextlib.nullcontext, "per-branch": per_branch}


def poison() -> None:
    """Fill the allocator's free blocks with NaN, so that an unwritten output row shows."""
    torch.full((2**28,), float("nan"), device="cuda")
    torch.cuda.synchronize()


def rel(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got.double() - want.double()).norm() / want.double().norm())


def check_layer() -> dict[str, dict[str, float]]:
    """Each variant of the layer against the float64 reference backend on the same inputs
    (bf16 numbers, so every variant routes every token alike)."""
    grid, shots, groups = (6, 16, 24), [0, 2, 5], 5
    torch.manual_seed(3)
    x, *qkv, grad = (torch.randn(2, math.prod(grid), *shape, device="cuda", dtype=torch.bfloat16)
                     for shape in ((DIM,), *[(HEADS, HEAD_DIM)] * 4))
    base = MoGASelfAttention(DIM, HEADS, groups, backend=Backend.GPU).cuda().to(torch.bfloat16)

    def run(dtype: torch.dtype, backend: Backend) -> list[torch.Tensor]:
        layer = copy.deepcopy(base).to(dtype)
        layer.backend = backend
        inputs = [t.to(dtype).requires_grad_() for t in qkv]
        poison()
        out, stats = layer(x.to(dtype), *inputs, grid, shots)
        grads = torch.autograd.grad([out, stats.balance_loss], [*inputs, layer.router.weight],
                                    [grad.to(dtype), torch.ones_like(stats.balance_loss)])
        return [out.detach(), *grads]

    want = run(torch.float64, Backend.REFERENCE)
    variants = {"fused bf16": (torch.bfloat16, contextlib.nullcontext),
                "fused fp16": (torch.float16, contextlib.nullcontext),
                "per-branch bf16": (torch.bfloat16, per_branch),
                "fp32 (per-branch: no fused fp32 kernels)": (torch.float32,
                                                              contextlib.nullcontext)}
    errors = {}
    for label, (dtype, context) in variants.items():
        with context():
            got = run(dtype, Backend.GPU)
        errors[label] = {n: rel(g, w) for n, g, w in zip(["out", "dq", "dk", "dv", "drouter"],
                                                         got, want, strict=True)}
        print(f"layer {label:42s} rel. error vs float64: "
              + ", ".join(f"{n} {e:.1e}" for n, e in errors[label].items()), flush=True)
    return errors


def check_grouped_mean() -> dict[str, float]:
    """``grouped_mean`` in bf16 on groups of 1, 5, 15, 16, 17, 200, 600 and 1,450 tokens, STGA
    windows with shot context and frames, against the float64 reference, gate included."""
    grid, batch = (6, 16, 24), 2
    tokens = math.prod(grid)
    sizes = [1, 5, 15, 16, 17, 200, 600]
    sizes.append(tokens - sum(sizes))
    generator = torch.Generator().manual_seed(9)
    ids = torch.cat([torch.full((n,), i) for i, n in enumerate(sizes)])
    ids = torch.stack([ids[torch.randperm(tokens, generator=generator)] for _ in range(batch)])
    plans = [moga_plan(ids.cuda(), len(sizes)),
             window_plan(batch, grid, (2, 5), (2, 2), 3, 2, torch.device("cuda")),
             frame_plan(batch, grid)]
    torch.manual_seed(4)
    q, k, v, grad = (torch.randn(batch * tokens, HEADS, HEAD_DIM, device="cuda",
                                 dtype=torch.bfloat16) for _ in range(4))
    gate = torch.rand(batch * tokens, device="cuda", dtype=torch.bfloat16) + 0.5
    results = []
    for dtype in (torch.float64, torch.bfloat16):
        leaves = [t.to(dtype).requires_grad_() for t in (q, k, v, gate)]
        poison()
        if dtype == torch.float64:
            outs = [attention(*leaves[:3], plan=p, backend=Backend.REFERENCE,
                              gate=leaves[3] if i == 0 else None) for i, p in enumerate(plans)]
            out = sum(outs) / len(outs)
        else:
            out = grouped_mean(*leaves[:3], plans, leaves[3])
        results.append([out.detach(), *torch.autograd.grad(out, leaves, grad.to(dtype))])
    errors = {n: rel(g, w) for n, w, g in zip(["out", "dq", "dk", "dv", "dgate"], *results,
                                              strict=True)}
    print("grouped_mean bf16 rel. error vs float64: "
          + ", ".join(f"{n} {e:.1e}" for n, e in errors.items()), flush=True)
    return errors


def measure_memory(step: Callable[[], object], forward: Callable[[], object],
                   dense_step: Callable[[], object], dense_forward: Callable[[], object]
                   ) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Peak over fwd+bwd and held after the forward, GiB, of dense and both layer paths; and
    how far the fused path's gradients are from the per-branch path's."""
    memory = {"dense": {"peak": peak_gib(dense_step), "held": held_gib(dense_forward)}}
    grads = {}
    for path, context in PATHS.items():
        with context():
            grads[path] = step()
            memory[path] = {"peak": peak_gib(step), "held": held_gib(forward)}
    agreement = {n: rel(a, b) for n, a, b in zip(["dq", "dk", "dv", "dW", "db"],
                                                 grads["fused"], grads["per-branch"], strict=True)}
    for path, row in memory.items():
        ratio = row["peak"] / memory["dense"]["peak"]
        print(f"  {path:11s} peak fwd+bwd {row['peak']:6.2f} ({ratio:.2f}x dense)   held after "
              f"fwd {row['held']:6.2f}", flush=True)
    print("  fused vs per-branch grads, rel. diff: "
          + ", ".join(f"{n} {e:.1e}" for n, e in agreement.items()), flush=True)
    return memory, agreement


def time_paths(step: Callable[[], object], forward: Callable[[], object]
               ) -> dict[str, list[dict[str, float]]]:
    """Medians of 5 of fwd and fwd+bwd for each layer path, the two interleaved, twice."""
    times: dict[str, list[dict[str, float]]] = {path: [] for path in PATHS}
    for _ in range(2):
        for path, context in PATHS.items():
            with context():
                with torch.no_grad():
                    fwd = median_ms(forward, 5)
                both = median_ms(step, 5)
            times[path].append({"fwd_ms": fwd, "fwdbwd_ms": both})
            print(f"  {path:11s} fwd {fwd:7.1f} ms   fwd+bwd {both:7.1f} ms", flush=True)
    return times


def bench_size(name: str, out_dir: Path) -> dict[str, object]:
    grid, groups, window_grid, shots = SIZES[name]
    tokens = math.prod(grid)
    torch.manual_seed(5)
    x = torch.randn(1, tokens, DIM, device="cuda", dtype=torch.bfloat16)
    q, k, v = (torch.randn(1, tokens, HEADS, HEAD_DIM, device="cuda", dtype=torch.bfloat16,
                           requires_grad=True) for _ in range(3))
    grad = torch.randn_like(q)
    layer = calibrated_layer(x, groups, window_grid).to(torch.bfloat16)
    forward, step = layer_steps(layer, x, q, k, v, grad, grid, shots)

    def dense_forward() -> torch.Tensor:
        return dense(q, k, v)

    def dense_step() -> object:
        return torch.autograd.grad(dense(q, k, v), [q, k, v], grad)

    unit = q.numel() * 2 / 2**30
    print(f"{name}: N={tokens}; GiB above inputs (one N x H x D bf16 tensor is {unit:.2f}):",
          flush=True)
    memory, agreement = measure_memory(step, forward, dense_step, dense_forward)
    times = time_paths(step, forward)
    if tokens < 300_000:
        with torch.no_grad():
            dense_fwd = median_ms(dense_forward, 3, warmup=1)
        times["dense"] = [{"fwd_ms": dense_fwd, "fwdbwd_ms": median_ms(dense_step, 3, warmup=1)}]
        print(f"  dense       fwd {dense_fwd:7.1f} ms   fwd+bwd "
              f"{times['dense'][0]['fwdbwd_ms']:7.1f} ms", flush=True)
        for path, context in PATHS.items():
            with context():
                profile_layer(step, out_dir / f"profile_{path}_{name}.txt")
    return {"tokens": tokens, "grid": grid, "groups": groups, "unit_gib": unit,
            "memory_gib": memory, "times": times, "fused_vs_per_branch": agreement}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="30s,60s")
    parser.add_argument("--out", type=Path, default=Path("."))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    info = {"torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(), "card": torch.cuda.get_device_name()}
    print(info, flush=True)
    report = {"info": info, "check_layer": check_layer(), "check_grouped_mean":
              check_grouped_mean()}
    for name in args.sizes.split(","):
        report[name] = bench_size(name, args.out)
        torch.cuda.empty_cache()
        (args.out / "attention_memory.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
