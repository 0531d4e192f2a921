"""MoGA self-attention layer: routed group attention plus STGA windows plus per-frame attention.

The layer owns only the router; the caller owns the q/k/v/out projections and RoPE. Output per
token (paper section 3.2): ``mean(p(g(x)|x) * MoGA(x), window(x), frame(x))``, each branch a
``SegmentPlan``. On the GPU backend the three are one ``grouped_autograd.grouped_mean`` call, which
saves no gathered copies (CUDA float32/float64, which it has no kernels for, and the REFERENCE
backend run one ``attention_core.attention`` call per branch). The paper's Fig. 11 ablation keeps
a subset of the three branches (``BRANCHES``) and takes the mean of those.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.distributed import ProcessGroup

from models import sequence_parallel as sp
from models.attention_core import Backend, SegmentPlan, attention, make_plan
from models.grouped_autograd import fused_supported, grouped_mean
from models.router import balance_loss, balance_metric, group_counts, route
from models.stga import frame_plan, window_plan

# The branches of each ``DiTConfig.attention`` mode that has any: "moga" is the routed groups,
# "window" STGA's spatial windows x temporal groups, "frame" per-frame attention.
BRANCHES: dict[str, tuple[str, ...]] = {
    "moga": ("moga", "window", "frame"),
    "moga_only": ("moga",),
    "stga_only": ("window", "frame"),
}


@dataclass
class MoGAStats:
    """What the trainer logs for one layer call."""

    balance_loss: torch.Tensor  # scalar, alpha * M * sum_i F_i * P_i (alpha already applied)
    balance_metric: float  # M * sum_i F_i^2: 1 for equal groups, 1 + CV^2, M under collapse
    group_sizes: list[int]  # tokens per group over the whole sequence (all ranks, all samples)
    pairs: int = 0  # query-key pairs per head of the MoGA groups: sum of (group size)^2 per sample


def moga_plan(group_ids: torch.Tensor, num_groups: int) -> SegmentPlan:
    """Tokens of (B, N) ``group_ids`` sorted by (sample, group); one segment per non-empty group."""
    batch, tokens = group_ids.shape
    offsets = torch.arange(batch, device=group_ids.device)[:, None] * num_groups
    keys = (group_ids + offsets).reshape(-1)
    order = torch.argsort(keys, stable=True)
    sizes = torch.bincount(keys, minlength=batch * num_groups).tolist()  # the one host sync
    return make_plan(order, [s for s in sizes if s])


class MoGASelfAttention(nn.Module):
    """Mixture of Groups attention beside STGA window and per-frame attention.

    Args:
        dim: hidden size of the router input.
        num_heads: attention heads of q, k, v.
        num_groups: MoGA groups M.
        window_grid: STGA spatial windows per frame (rows, columns).
        shot_context_frames: latent frames of each adjacent shot added to STGA keys/values.
        balance_alpha: weight of the group-balancing loss.
        backend: a ``Backend`` or its value: "reference" (pure PyTorch, any dtype and device),
            "gpu" (fused kernels: cuDNN on CUDA, see ``grouped_autograd``) or "auto" ("gpu" for
            CUDA fp16/bf16, else "reference"); any other value raises ValueError.
        temporal_frames: most latent frames in one STGA temporal group. The paper does not state
            it; 3 reproduces its sparsity figures for 5 s videos (1 - 1/M - 8.75%).
        branches: which of "moga", "window", "frame" run (a ``BRANCHES`` value); the output is
            their mean. Without "moga" there is no router and no stats.
    """

    def __init__(self, dim: int, num_heads: int, num_groups: int,
                 window_grid: tuple[int, int] = (2, 2), shot_context_frames: int = 2,
                 balance_alpha: float = 0.1, backend: Backend | str = Backend.AUTO,
                 temporal_frames: int = 3,
                 branches: tuple[str, ...] = BRANCHES["moga"]) -> None:
        super().__init__()
        backend = Backend(backend)
        if num_groups < 1 or min(window_grid) < 1 or temporal_frames < 1 or shot_context_frames < 0:
            raise ValueError("num_groups, window_grid and temporal_frames must be >= 1, "
                             "shot_context_frames >= 0")
        if not branches or not set(branches) <= set(BRANCHES["moga"]):
            raise ValueError(f"branches must be some of {BRANCHES['moga']}, got {branches}")
        self.num_heads, self.num_groups = num_heads, num_groups
        self.window_grid = tuple(window_grid)
        self.shot_context_frames, self.temporal_frames = shot_context_frames, temporal_frames
        self.balance_alpha, self.backend = balance_alpha, backend
        self.branches = tuple(b for b in BRANCHES["moga"] if b in branches)
        self.router = nn.Linear(dim, num_groups) if "moga" in self.branches else None

    def forward(self, x: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                grid: tuple[int, int, int], shot_starts: list[int],
                sp_group: ProcessGroup | None = None) -> tuple[torch.Tensor, MoGAStats | None]:
        """Attend; shapes are per rank.

        Args:
            x: (B, n, dim) hidden states the router reads.
            q, k, v: (B, n, H, D), RoPE already applied.
            grid: (T, Hh, Ww) latent frames, height, width of the whole sequence, whose tokens
                are in (t, h, w) raster order.
            shot_starts: latent frames where shots start (0 may be given or not).
            sp_group: Ulysses sequence-parallel group, or None. With P ranks each holds the
                contiguous slice n = T * Hh * Ww / P of the sequence, and H must divide by P.

        Returns:
            (B, n, H, D) output, and the layer's stats (None without the "moga" branch).
        """
        world = 1 if sp_group is None else torch.distributed.get_world_size(sp_group)
        self._check(x, q, k, v, grid, world)
        routing = group_ids = gate = None
        if self.router is not None:
            routing = route(self.router, x)  # on local tokens, before the all-to-all
            counts = group_counts(routing.group_ids, self.num_groups)
            group_ids, gate = routing.group_ids, routing.gate
            if sp_group is not None:
                counts = sp.all_reduce_sum(counts, sp_group)
                group_ids, gate = sp.gather_seq(group_ids, sp_group), sp.gather_seq(gate, sp_group)
        if sp_group is not None:
            q, k, v = (sp.seq_to_heads(t, sp_group) for t in (q, k, v))
        out, pairs = self._attend(q, k, v, group_ids, gate, grid, tuple(shot_starts))
        if sp_group is not None:
            out = sp.heads_to_seq(out, sp_group)
        if routing is None:
            return out, None
        stats = MoGAStats(balance_loss(routing, counts, self.balance_alpha),
                          balance_metric(counts), counts.tolist(), pairs)
        return out, stats

    def static_plans(self, batch: int, grid: tuple[int, int, int], shot_starts: tuple[int, ...],
                     device: torch.device) -> dict[str, SegmentPlan]:
        """The (cached) plans of the layer's static branches, "window" and "frame", over ``batch``
        whole sequences of ``grid``."""
        plans = {}
        if "window" in self.branches:
            plans["window"] = window_plan(batch, grid, tuple(shot_starts), self.window_grid,
                                          self.temporal_frames, self.shot_context_frames, device)
        if "frame" in self.branches:
            plans["frame"] = frame_plan(batch, grid)
        return plans

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                group_ids: torch.Tensor | None, gate: torch.Tensor | None,
                grid: tuple[int, int, int], shot_starts: tuple[int, ...]
                ) -> tuple[torch.Tensor, int]:
        """Mean of the branches' outputs (MoGA's gated) over whole sequences, and the MoGA
        groups' query-key pairs per head (0 without that branch)."""
        batch, tokens, heads, dim = q.shape
        q, k, v = (t.reshape(batch * tokens, heads, dim) for t in (q, k, v))
        plans, gates = self.static_plans(batch, grid, shot_starts, q.device), {}
        if group_ids is not None:
            plans = {"moga": moga_plan(group_ids, self.num_groups), **plans}
            gates["moga"] = gate.reshape(-1).to(q.dtype)
        if self.backend.resolve(q) is Backend.GPU and fused_supported(q):
            out = grouped_mean(q, k, v, list(plans.values()), gates.get("moga"))  # MoGA first
        else:
            outs = [attention(q, k, v, plan=plan, backend=self.backend, gate=gates.get(name))
                    for name, plan in plans.items()]
            out = outs[0]
            for other in outs[1:]:
                out = out + other
            out = out / len(outs)
        pairs = plans["moga"].pairs if "moga" in plans else 0
        return out.view(batch, tokens, heads, dim), pairs

    def _check(self, x: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               grid: tuple[int, int, int], world: int) -> None:
        if q.dim() != 4 or q.shape != k.shape or q.shape != v.shape:
            raise ValueError(f"q, k, v must share one (B, N, H, D) shape, got {q.shape}, "
                             f"{k.shape}, {v.shape}")
        if x.shape[:2] != q.shape[:2]:
            raise ValueError(f"x has {tuple(x.shape[:2])} tokens, q has {tuple(q.shape[:2])}")
        if q.shape[2] != self.num_heads:
            raise ValueError(f"expected {self.num_heads} heads, got {q.shape[2]}")
        if q.shape[1] * world != grid[0] * grid[1] * grid[2]:
            raise ValueError(f"{world} x {q.shape[1]} tokens do not fill the grid {grid}")
