"""Compute per training step: attention query-key pairs per branch and training FLOPs.

Pairs are query-key pairs per head (every head computes the same ones), summed over layers and
samples, read off what the layers computed: MoGA's from the plan of the step's routing
(``MoGAStats.pairs``), the static branches' from the same cached ``SegmentPlan``s the layers use.

- ``moga``: sum over samples and groups of (group size)^2.
- ``window``: STGA, queries x keys (shot context frames included) per window x temporal group.
- ``frame``: (tokens per frame)^2 per latent frame.
- ``dense``: N^2 per sample.
- ``cross``: N x text_len per sample (each shot's tokens x its caption's tokens, padding
  included: SDPA computes padded keys and masks them).

FLOPs: a multiply-add is 2 FLOPs. Forward = every ``nn.Linear`` (2 x rows x in x out, the
router included) + attention (4 x head_dim x heads x pairs: q k^T and p v). ``flops`` is the
usual training convention, 3 x forward (backward ~ 2 x forward, as in 6 x params x tokens). Not
counted: the forward that activation checkpointing recomputes, elementwise work (norms, softmax,
RoPE, GELU, modulation) and the frozen VAE and text encoder.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from models.dit import MoGADiT, SelfAttention
from models.moga import MoGAStats

PAIR_KINDS = ("moga", "window", "frame", "dense", "cross")


@dataclass
class Counts:
    """Query-key pairs per head by branch (``PAIR_KINDS``) and training FLOPs."""

    pairs: dict[str, int]
    flops: int


def forward_counts(model: MoGADiT, latents_shape: Sequence[int], text_len: int,
                   shot_starts: Sequence[int], stats: list[MoGAStats]) -> Counts:
    """Counts of one forward + backward of ``model`` on latents of ``latents_shape``
    (B, C, F, H, W) with ``len(shot_starts)`` captions of ``text_len`` tokens, whose forward
    returned ``stats`` (one per block with a router, none without)."""
    cfg = model.cfg
    batch = latents_shape[0]
    grid = tuple(s // p for s, p in zip(latents_shape[2:], cfg.patch_size, strict=True))
    tokens = math.prod(grid)
    device = next(model.parameters()).device
    pairs = dict.fromkeys(PAIR_KINDS, 0)
    for i, block in enumerate(model.blocks):
        layer = self_attention_pairs(block.self_attn, batch, grid, tuple(shot_starts), device,
                                     stats[i] if stats else None)
        for kind, n in layer.items():
            pairs[kind] += n
    pairs["cross"] = len(model.blocks) * batch * tokens * text_len
    head_dim = cfg.dim // cfg.num_heads
    attention = 4 * head_dim * cfg.num_heads * sum(pairs.values())
    linear = linear_flops(model, batch, batch * tokens, batch * len(shot_starts) * text_len)
    return Counts(pairs, 3 * (linear + attention))


def self_attention_pairs(layer: SelfAttention, batch: int, grid: tuple[int, int, int],
                         shot_starts: tuple[int, ...], device: torch.device,
                         stats: MoGAStats | None) -> dict[str, int]:
    """Query-key pairs per head of one self-attention layer, by branch."""
    if layer.moga is None:
        return {"dense": batch * math.prod(grid) ** 2}
    plans = layer.moga.static_plans(batch, grid, shot_starts, device)
    pairs = {name: plan.pairs for name, plan in plans.items()}
    if stats is not None:
        pairs["moga"] = stats.pairs
    return pairs


def linear_flops(model: MoGADiT, batch: int, tokens: int, text_tokens: int) -> int:
    """Forward FLOPs of every ``nn.Linear``: 2 x rows x in x out, where rows are the ``batch``
    timesteps (timestep embedding), the ``text_tokens`` caption tokens (text embedding,
    cross-attention keys/values) or the ``tokens`` video tokens (all others)."""
    total = 0
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        if name.startswith(("time_embed", "time_proj")):
            rows = batch
        elif name.startswith("text_embed") or name.endswith("cross_attn.kv"):
            rows = text_tokens
        else:
            rows = tokens
        total += 2 * rows * module.in_features * module.out_features
    return total


def step_counts(counts: list[Counts], device: torch.device, sp_size: int) -> Counts:
    """Sum over a step's micro-batches and all data-parallel ranks. The ranks of a
    sequence-parallel group count the same whole samples, so each is counted once. The
    all-reduce is in float64: exact to 2^53, within 1e-16 beyond."""
    values = [sum(c.pairs[k] for c in counts) for k in PAIR_KINDS] + [sum(c.flops for c in counts)]
    if dist.is_initialized() and dist.get_world_size() > 1:
        total = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(total)
        values = [round(v / sp_size) for v in total.tolist()]
    return Counts(dict(zip(PAIR_KINDS, values[:-1], strict=True)), values[-1])
