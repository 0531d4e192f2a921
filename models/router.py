"""MoGA router: hard top-1 group per token, its gate, and the group-balancing loss.

Follows arXiv 2510.18692 v1, eqs. (2)-(8): ``p = softmax(W x + b)``, ``g(x) = argmax p``, gate
``p(g(x)|x)``; no capacity limit, no dropped tokens, one group per token shared by all heads.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class Routing:
    """One layer's assignment of a (B, N) block of tokens."""

    group_ids: torch.Tensor  # (B, N) int64 in [0, M)
    gate: torch.Tensor  # (B, N) top-1 probability; the diffusion loss reaches the router here


class _Logits(torch.autograd.Function):
    """``x W^T + b`` in at least float32 that saves x as given, not its float32 copy.

    bf16 logits would tie often enough to make the argmax unstable; keeping a float32 copy of
    x for the backward would cost two bytes more per hidden value than the whole q tensor.
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor, weight: torch.Tensor,
                bias: torch.Tensor | None) -> torch.Tensor:
        compute = torch.promote_types(x.dtype, torch.float32)
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        bias = None if bias is None else bias.to(compute)
        return F.linear(x.to(compute), weight.to(compute), bias)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
                 ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        x, weight = ctx.saved_tensors
        grad_x = (grad @ weight.to(grad.dtype)).to(x.dtype) if ctx.needs_input_grad[0] else None
        rows = grad.reshape(-1, grad.shape[-1])
        grad_w = (rows.T @ x.reshape(-1, x.shape[-1]).to(grad.dtype)).to(weight.dtype)
        grad_b = rows.sum(0).to(weight.dtype) if ctx.has_bias else None
        return grad_x, grad_w, grad_b


def route(router: nn.Linear, x: torch.Tensor) -> Routing:
    """Top-1 routing of hidden states x (B, N, d), logits in at least float32."""
    probs = torch.softmax(_Logits.apply(x, router.weight, router.bias), dim=-1)
    gate, group_ids = probs.max(dim=-1)
    return Routing(group_ids, gate)


def group_counts(group_ids: torch.Tensor, num_groups: int) -> torch.Tensor:
    """Tokens per group, (M,) int64."""
    return torch.bincount(group_ids.reshape(-1), minlength=num_groups)


def balance_loss(routing: Routing, counts: torch.Tensor, alpha: float) -> torch.Tensor:
    """``alpha * M * sum_i F_i * P_i`` (paper eqs. 6-8), with P_i summed over tokens of group i.

    ``counts`` are the tokens per group over the whole sequence. When ``routing`` holds only a
    shard of it (sequence parallelism), the result is this shard's share of the loss: the shares
    of all shards sum to the loss of the whole sequence.
    """
    num_groups = counts.numel()
    total = counts.sum()
    fraction = counts.to(routing.gate.dtype) / total  # F_i, no gradient
    gate_sum = torch.zeros(num_groups, dtype=routing.gate.dtype, device=routing.gate.device)
    gate_sum = gate_sum.index_add(0, routing.group_ids.reshape(-1), routing.gate.reshape(-1))
    return alpha * num_groups * (fraction * gate_sum / total).sum()


def balance_metric(counts: torch.Tensor) -> float:
    """``M * sum_i F_i^2``: grouped-attention cost over that of equal groups.

    1.0 for equal groups, ``1 + CV^2`` in general (CV of the group sizes), M under full collapse.
    """
    fraction = counts.double() / counts.sum()
    return float(counts.numel() * (fraction * fraction).sum())
