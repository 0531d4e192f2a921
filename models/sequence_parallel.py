"""Ulysses sequence parallelism: collectives that move tokens between sequence and head shards.

Each rank of ``group`` holds an equal, contiguous slice of the sequence with all heads before
attention, and the whole sequence with ``H / P`` heads inside it. Works with NCCL and gloo.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch.distributed import ProcessGroup


def _all_to_all(x: torch.Tensor, group: ProcessGroup) -> torch.Tensor:
    """Exchange dim-0 chunks of x: chunk r goes to rank r, chunk r received comes from rank r."""
    x = x.contiguous()
    out = torch.empty_like(x)
    dist.all_to_all_single(out, x, group=group)
    return out


def _seq_to_heads(x: torch.Tensor, group: ProcessGroup) -> torch.Tensor:
    world = dist.get_world_size(group)
    batch, tokens, heads, dim = x.shape
    chunks = x.reshape(batch, tokens, world, heads // world, dim).permute(2, 0, 1, 3, 4)
    received = _all_to_all(chunks, group)  # (P: sequence slice, B, n, H/P, D)
    return received.permute(1, 0, 2, 3, 4).reshape(batch, world * tokens, heads // world, dim)


def _heads_to_seq(x: torch.Tensor, group: ProcessGroup) -> torch.Tensor:
    world = dist.get_world_size(group)
    batch, tokens, heads, dim = x.shape
    chunks = x.reshape(batch, world, tokens // world, heads, dim).permute(1, 0, 2, 3, 4)
    received = _all_to_all(chunks, group)  # (P: head slice, B, n, H/P, D)
    return received.permute(1, 2, 0, 3, 4).reshape(batch, tokens // world, world * heads, dim)


class _SeqToHeads(torch.autograd.Function):
    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor,
                group: ProcessGroup) -> torch.Tensor:
        ctx.group = group
        return _seq_to_heads(x, group)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx,
                 grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return _heads_to_seq(grad, ctx.group), None


class _HeadsToSeq(torch.autograd.Function):
    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor,
                group: ProcessGroup) -> torch.Tensor:
        ctx.group = group
        return _heads_to_seq(x, group)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx,
                 grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return _seq_to_heads(grad, ctx.group), None


def seq_to_heads(x: torch.Tensor, group: ProcessGroup) -> torch.Tensor:
    """(B, N/P, H, D) sequence shard -> (B, N, H/P, D) head shard; differentiable."""
    if x.shape[2] % dist.get_world_size(group):
        raise ValueError(f"{x.shape[2]} heads do not split over {dist.get_world_size(group)} ranks")
    return _SeqToHeads.apply(x, group)


def heads_to_seq(x: torch.Tensor, group: ProcessGroup) -> torch.Tensor:
    """(B, N, H/P, D) head shard -> (B, N/P, H, D) sequence shard; differentiable."""
    return _HeadsToSeq.apply(x, group)


def _gather(x: torch.Tensor, group: ProcessGroup) -> torch.Tensor:
    x = x.contiguous()
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size(group))]
    dist.all_gather(parts, x, group=group)
    return torch.cat(parts, dim=1)


class _GatherSeq(torch.autograd.Function):
    """All-gather along dim 1; the gradient of the local slice is summed over ranks."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor,
                group: ProcessGroup) -> torch.Tensor:
        ctx.group, ctx.local = group, x.shape[1]
        return _gather(x, group)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx,
                 grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        # Each rank saw the whole sequence for its heads only: sum, then keep our own slice.
        grad = grad.contiguous()
        dist.all_reduce(grad, group=ctx.group)
        rank = dist.get_rank(ctx.group)
        return grad[:, rank * ctx.local:(rank + 1) * ctx.local], None


def gather_seq(x: torch.Tensor, group: ProcessGroup) -> torch.Tensor:
    """(B, N/P, ...) -> (B, N, ...) in rank order; differentiable for floating-point x."""
    if x.is_floating_point():
        return _GatherSeq.apply(x, group)
    return _gather(x, group)


def all_reduce_sum(x: torch.Tensor, group: ProcessGroup) -> torch.Tensor:
    """Sum of x over the ranks of ``group`` (no gradient)."""
    x = x.clone()
    dist.all_reduce(x, group=group)
    return x
