"""Time the MoGA layer and its grouped attention core against dense cuDNN attention on one GPU.

bf16, B = 1, H = 12, D = 128, router dim 1536, fwd and fwd+bwd, CUDA-event medians. Sizes:
30 s at 480p/16 fps (120 latent frames of 30x52 = 187,200 tokens, M = 5, 2x2 windows) and
60 s at 24 fps (361 latent frames of 32x50 = 577,600 tokens, M = 20, 4x4 windows). The router is
calibrated (bias only) so that its groups have a size CV of about 0.2. TFLOP/s count the pairs
computed: fwd 4 * pairs * D * H, fwd+bwd 3.5 times that. A float64 check of the layer against
the reference backend comes first.

    python benchmarks/attention.py [--sizes 30s,60s] [--out DIR]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from models.attention_core import Backend, SegmentPlan, attention, make_plan  # noqa: E402
from models.moga import MoGASelfAttention, moga_plan  # noqa: E402
from models.router import route  # noqa: E402
from models.stga import frame_plan, window_plan  # noqa: E402

HEADS, HEAD_DIM, DIM = 12, 128, 1536
SIZES = {  # grid, M, window grid, shot starts (latent frames)
    "30s": ((120, 30, 52), 5, (2, 2), [0, 9, 23, 31, 46, 58, 70, 84, 97, 108]),
    "60s": ((361, 32, 50), 20, (4, 4), [0, 14, 33, 51, 70, 88, 101, 125, 140, 162, 180, 199,
                                        215, 236, 250, 271, 290, 305, 322, 344]),
}


def median_ms(fn: Callable[[], object], reps: int, warmup: int = 2) -> float:
    """Median CUDA-event time of fn() in ms."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def peak_gib(fn: Callable[[], object]) -> float:
    """Peak memory fn() allocates above what is allocated before it, GiB."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    result = fn()
    torch.cuda.synchronize()
    del result
    return (torch.cuda.max_memory_allocated() - base) / 2**30


def held_gib(fn: Callable[[], object]) -> float:
    """Memory fn()'s result keeps (outputs plus what autograd saved for backward), GiB."""
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    result = fn()
    torch.cuda.synchronize()
    held = torch.cuda.memory_allocated() - base
    del result
    return held / 2**30


def tflops(pairs: int, ms: float, backward: bool) -> float:
    return 4 * pairs * HEAD_DIM * HEADS * (3.5 if backward else 1) / ms / 1e9


def calibrated_layer(x: torch.Tensor, groups: int, window_grid: tuple[int, int],
                     cv: float = 0.2) -> MoGASelfAttention:
    """A layer whose router (random weights, fitted bias) gives group sizes of CV ~ cv on x."""
    torch.manual_seed(0)
    layer = MoGASelfAttention(DIM, HEADS, groups, window_grid, backend=Backend.GPU).cuda()
    z = torch.randn(groups, generator=torch.Generator().manual_seed(1))
    target = 1 + cv * (z - z.mean()) / z.std(correction=0)
    target = (target / target.sum()).cuda()
    with torch.no_grad():
        layer.router.bias.zero_()
        for _ in range(30):
            counts = torch.bincount(route(layer.router, x).group_ids.reshape(-1), minlength=groups)
            # Damped: an empty group would otherwise make the step huge.
            layer.router.bias += 0.5 * torch.log(target / counts.clamp(min=1) * counts.sum())
    return layer


def fwd_bwd(fn: Callable[[], torch.Tensor], inputs: list[torch.Tensor],
            grad: torch.Tensor) -> Callable[[], object]:
    return lambda: torch.autograd.grad(fn(), inputs, grad)


def layer_steps(layer: MoGASelfAttention, x: torch.Tensor, q: torch.Tensor, k: torch.Tensor,
                v: torch.Tensor, grad: torch.Tensor, grid: tuple[int, int, int],
                shots: list[int]) -> tuple[Callable[[], object], Callable[[], object]]:
    """The layer's forward and its fwd+bwd (router included)."""
    params = [q, k, v, layer.router.weight, layer.router.bias]

    def forward() -> torch.Tensor:
        return layer(x, q, k, v, grid, shots)[0]

    def step() -> object:
        out, stats = layer(x, q, k, v, grid, shots)
        return torch.autograd.grad([out, stats.balance_loss], params,
                                   [grad, torch.ones_like(stats.balance_loss)])

    return forward, step


def time_pair(name: str, fn: Callable[[], object], step: Callable[[], object], pairs: int,
              reps: int, warmup: int = 2) -> dict[str, float]:
    """Medians and TFLOP/s of fn (forward, timed without autograd) and step (fwd+bwd)."""
    with torch.no_grad():
        fwd = median_ms(fn, reps, warmup)
    both = median_ms(step, reps, warmup)
    row = {"fwd_ms": fwd, "fwd_tflops": tflops(pairs, fwd, False), "fwdbwd_ms": both,
           "fwdbwd_tflops": tflops(pairs, both, True)}
    print(f"  {name:34s} fwd {fwd:9.1f} ms {row['fwd_tflops']:5.0f} TF/s   fwd+bwd {both:9.1f} "
          f"ms {row['fwdbwd_tflops']:5.0f} TF/s", flush=True)
    return row


def dense(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
        return attention(q, k, v)


def varlen_fa2(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               plan: SegmentPlan) -> Callable[[], torch.Tensor]:
    """The paper's route: PyTorch's FA2 varlen over the already permuted groups."""
    from torch.nn.attention.varlen import varlen_attn

    lens = torch.tensor([0, *plan.q_lens], device=q.device)
    cu = torch.cumsum(lens, 0).to(torch.int32)
    longest = max(plan.q_lens)
    return lambda: varlen_attn(q, k, v, cu, cu, longest, longest)


def check_correctness() -> dict[str, float]:
    """Relative errors of the bf16 gpu layer against the float64 reference on the same bf16 data.

    Inputs and router weights are bf16 numbers in both, so the two route every token alike.
    """
    grid, shots, groups = (6, 16, 24), [0, 2, 5], 5
    tokens = math.prod(grid)
    torch.manual_seed(3)
    x, *qkv, grad = (torch.randn(2, tokens, *shape, device="cuda", dtype=torch.bfloat16)
                     for shape in ((DIM,), *[(HEADS, HEAD_DIM)] * 4))
    fast = MoGASelfAttention(DIM, HEADS, groups, backend=Backend.GPU).cuda().to(torch.bfloat16)
    reference = copy.deepcopy(fast).double()
    reference.backend = Backend.REFERENCE
    results = []
    for layer, dtype in ((reference, torch.float64), (fast, torch.bfloat16)):
        inputs = [t.to(dtype).requires_grad_() for t in qkv]
        out, stats = layer(x.to(dtype), *inputs, grid, shots)
        grads = torch.autograd.grad([out, stats.balance_loss], [*inputs, layer.router.weight],
                                    [grad.to(dtype), torch.ones_like(stats.balance_loss)])
        results.append([out.detach(), *grads])
    names = ["out", "dq", "dk", "dv", "drouter"]
    errors = {n: float((g.double() - r).norm() / r.norm())
              for n, r, g in zip(names, *results, strict=True)}
    print("bf16 gpu layer vs float64 reference, relative error:",
          ", ".join(f"{n} {e:.1e}" for n, e in errors.items()), flush=True)
    return errors


def profile_layer(step: Callable[[], object], path: Path) -> None:
    """One profiled fwd+bwd of the layer: CUDA kernels by total time, to ``path``."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=25,
                                      max_name_column_width=90)
    path.write_text(table)
    print("\n".join(table.splitlines()[:16]), flush=True)


def time_parts(flat: list[torch.Tensor], grad: torch.Tensor, plan: SegmentPlan,
               static: list[SegmentPlan], reps: int) -> dict[str, dict[str, float]]:
    """The grouped core on the MoGA groups (three ways) and on the two static groupings."""
    def timed(name: str, fn: Callable[[], torch.Tensor], inputs: list[torch.Tensor],
              pairs: int) -> tuple[str, dict[str, float]]:
        return name, time_pair(name, fn, fwd_bwd(fn, inputs, grad), pairs, reps)

    def core(tensors: list[torch.Tensor], p: SegmentPlan) -> Callable[[], torch.Tensor]:
        return lambda: attention(*tensors, plan=p, backend=Backend.GPU)

    permuted = [t.detach()[plan.q_gather.order].requires_grad_() for t in flat]
    in_place = make_plan(None, list(plan.q_lens))
    rows = dict([
        timed("core: MoGA groups, with permutes", core(flat, plan), flat, plan.pairs),
        timed("core: MoGA groups, kernels only", core(permuted, in_place), permuted,
              plan.pairs)])
    try:
        rows.update([timed("FA2 varlen_attn (paper's route)", varlen_fa2(*permuted, plan),
                           permuted, plan.pairs)])
    except (ImportError, RuntimeError) as err:
        print(f"  FA2 varlen_attn unavailable: {err}", flush=True)
    for label, static_plan in zip(("STGA windows", "per-frame"), static, strict=True):
        rows.update([timed(label, core(flat, static_plan), flat, static_plan.pairs)])
    return rows


def bench_size(name: str, out_dir: Path) -> dict[str, object]:
    grid, groups, window_grid, shots = SIZES[name]
    tokens = math.prod(grid)
    reps = 5 if tokens < 300_000 else 3
    torch.manual_seed(5)
    x = torch.randn(1, tokens, DIM, device="cuda", dtype=torch.bfloat16)
    q, k, v = (torch.randn(1, tokens, HEADS, HEAD_DIM, device="cuda", dtype=torch.bfloat16,
                           requires_grad=True) for _ in range(3))
    grad = torch.randn_like(q)
    layer = calibrated_layer(x, groups, window_grid).to(torch.bfloat16)
    with torch.no_grad():
        plan = moga_plan(route(layer.router, x).group_ids, groups)
    sizes = torch.tensor(plan.q_lens, dtype=torch.float64)
    cv = float(sizes.std(correction=0) / sizes.mean())
    flat = [t.view(tokens, HEADS, HEAD_DIM) for t in (q, k, v)]
    static = [window_plan(1, grid, tuple(shots), window_grid, layer.temporal_frames,
                          layer.shot_context_frames, q.device), frame_plan(1, grid)]
    layer_pairs = plan.pairs + sum(p.pairs for p in static)
    print(f"{name}: N={tokens} grid={grid} M={groups} group sizes={list(plan.q_lens)} "
          f"(CV {cv:.2f}) FLOP ratio dense/layer={tokens**2 / layer_pairs:.2f}", flush=True)
    layer_fwd, layer_step = layer_steps(layer, x, q, k, v, grad, grid, shots)

    rows = {"dense cuDNN SDPA": time_pair("dense cuDNN SDPA", lambda: dense(q, k, v),
                                          fwd_bwd(lambda: dense(q, k, v), [q, k, v], grad),
                                          tokens**2, reps, warmup=1),
            "MoGA layer": time_pair("MoGA layer (router..merge)", layer_fwd, layer_step,
                                    layer_pairs, reps)}
    rows.update(time_parts(flat, grad.view(tokens, HEADS, HEAD_DIM), plan, static, reps))
    memory = {"dense": peak_gib(lambda: torch.autograd.grad(dense(q, k, v), [q, k, v], grad)),
              "layer": peak_gib(layer_step), "dense_saved": held_gib(lambda: dense(q, k, v)),
              "layer_saved": held_gib(layer_fwd)}
    print(f"  memory above inputs, GiB: fwd+bwd peak dense {memory['dense']:.2f}, layer "
          f"{memory['layer']:.2f}; held after fwd dense {memory['dense_saved']:.2f}, layer "
          f"{memory['layer_saved']:.2f} (one N x H x D bf16 tensor: "
          f"{q.numel() * 2 / 2**30:.2f})", flush=True)
    if tokens < 300_000:
        profile_layer(layer_step, out_dir / f"profile_{name}.txt")
    speedup = rows["dense cuDNN SDPA"]["fwdbwd_ms"] / rows["MoGA layer"]["fwdbwd_ms"]
    ratio = tokens**2 / layer_pairs
    print(f"  fwd+bwd speedup {speedup:.2f}x vs FLOP ratio {ratio:.2f}x -> {speedup / ratio:.2f} "
          f"of the promise; fwd speedup "
          f"{rows['dense cuDNN SDPA']['fwd_ms'] / rows['MoGA layer']['fwd_ms']:.2f}x",
          flush=True)
    return {"tokens": tokens, "grid": grid, "groups": groups, "group_sizes": list(plan.q_lens),
            "cv": cv, "pairs": {"moga": plan.pairs, "windows": static[0].pairs,
                                "frames": static[1].pairs, "dense": tokens**2},
            "flop_ratio": ratio, "speedup_fwdbwd": speedup, "memory_gib": memory, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="30s,60s")
    parser.add_argument("--out", type=Path, default=Path("."))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    info = {"torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(), "card": torch.cuda.get_device_name()}
    print(info, flush=True)
    report = {"info": info, "check": check_correctness()}
    for name in args.sizes.split(","):
        report[name] = bench_size(name, args.out)
        torch.cuda.empty_cache()
        (args.out / "attention.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
