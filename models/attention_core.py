"""The one attention entry point of the models: ``attention``, with a ``Backend`` enum.

``attention(q, k, v)`` is dense attention, one ``scaled_dot_product_attention`` call on
token-major (B, S, H, D) tensors: the DiT's dense self-attention and, with ``key_mask``, its
per-shot cross-attention. ``attention(q, k, v, plan=...)`` is attention inside groups after a
permutation, the core behind MoGA, STGA and per-frame attention. A grouping is a ``SegmentPlan``:
the token rows of each group packed one group after another, for queries and for keys/values
(keys may add rows that are not queries, as STGA's shot context does). Tokens are rows of a
flattened ``(B * N, H, D)`` tensor. ``Backend`` picks how a plan runs:

- ``REFERENCE``: one gather and one explicit softmax attention per group, any dtype, any device.
- ``GPU`` (the packed core): one gather for all groups, runs of equal-shape groups as one batched
  ``scaled_dot_product_attention`` call (cuDNN first on CUDA), one gather back. The gathers'
  gradients are gathers too, plus an add for rows repeated as shot context; the tests run this
  backend on CPU in float64.
- ``AUTO``: ``GPU`` for CUDA float16/bfloat16 tensors, else ``REFERENCE``.

Dense attention is the same SDPA call whatever the backend. The MoGA layer runs its three
groupings on the GPU backend through ``grouped_autograd.grouped_mean`` instead, which calls the
fused kernels directly and keeps no gathered copies for the backward.

cuDNN builds an execution plan for every attention shape it has not seen and caches it by exact
shape: about 0.12 s of host time per new length for forward plus backward on an H100. MoGA's
group sizes change with every router update, so in training nearly every MoGA call built plans,
which cost the 1.3B DiT step more than the attention kernels did. PyTorch's
``TORCH_CUDNN_SDPA_AVOID_RECOMPILE`` runs mask-free calls whose q, k, v and output are
(B, S, H, D)-contiguous, as the packed runs here are, through cuDNN's padding-mask path with the
lengths as data and the plan keyed by lengths rounded up to powers of two, so a few plans serve
every step. PyTorch reads it once, at the first cuDNN attention call of the process, so importing
this module sets it; a value already in the environment wins.
"""

from __future__ import annotations

import math
import os
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from enum import StrEnum

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

os.environ.setdefault("TORCH_CUDNN_SDPA_AVOID_RECOMPILE", "1")

_FAST_DTYPES = (torch.float16, torch.bfloat16)
# cuDNN is the fastest fused attention PyTorch has on Hopper; the others are fallbacks for shapes
# or dtypes it rejects.
_CUDA_PRIORITY = [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION,
                  SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


class Backend(StrEnum):
    """How grouped attention runs; a str config value becomes one with ``Backend(value)``."""

    AUTO = "auto"  # GPU for CUDA float16/bfloat16 tensors, else REFERENCE
    REFERENCE = "reference"  # pure PyTorch, explicit softmax per group
    GPU = "gpu"  # the packed core: cuDNN on CUDA, PyTorch's SDPA elsewhere

    @classmethod
    def _missing_(cls, value: object) -> Backend:
        raise ValueError(f"backend must be one of {', '.join(cls)}, got {value!r}")

    def resolve(self, x: torch.Tensor) -> Backend:
        """REFERENCE or GPU: AUTO decided by the device and dtype of ``x``, others as they are."""
        if self is not Backend.AUTO:
            return self
        return Backend.GPU if x.is_cuda and x.dtype in _FAST_DTYPES else Backend.REFERENCE


@dataclass(frozen=True)
class Run:
    """``count`` consecutive groups of one shape, computed as one batched call."""

    count: int
    q_len: int
    kv_len: int


@dataclass(frozen=True)
class RowGather:
    """``x[order]`` over the rows of x, each row taken at least once.

    Its gradient gathers each row's first occurrence and adds only the repeats, so a permutation
    needs no atomics at all and STGA's shot context adds only its few repeated rows.
    """

    order: torch.Tensor  # (L,) rows of x
    first: torch.Tensor  # (rows,) position in ``order`` of each row's first occurrence
    repeat_at: torch.Tensor  # positions in ``order`` that repeat an earlier row
    repeat_rows: torch.Tensor  # the rows they repeat


def row_gather(order: torch.Tensor, num_rows: int, permutation: bool = False) -> RowGather:
    """A ``RowGather``; ``permutation`` skips the search for repeats."""
    positions = torch.arange(order.numel(), device=order.device)
    first = torch.full((num_rows,), order.numel(), device=order.device)
    first = first.scatter_reduce(0, order, positions, "amin")
    if permutation:
        return RowGather(order, first, positions[:0], order[:0])
    if bool((first == order.numel()).any()):
        raise ValueError("every row must be gathered at least once")
    repeat = first[order] != positions
    return RowGather(order, first, positions[repeat], order[repeat])


class _Gather(torch.autograd.Function):
    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor,
                gather: RowGather) -> torch.Tensor:
        ctx.gather = gather
        return x.index_select(0, gather.order)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx,
                 grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        gather: RowGather = ctx.gather
        grad_x = grad.index_select(0, gather.first)
        if gather.repeat_at.numel():
            grad_x.index_add_(0, gather.repeat_rows, grad.index_select(0, gather.repeat_at))
        return grad_x, None


@dataclass(frozen=True)
class SegmentPlan:
    """Groups packed one after another; see ``make_plan``."""

    q_gather: RowGather | None  # query rows, group by group; None: rows in place
    out_gather: RowGather | None  # packed outputs back to token order
    kv_gather: RowGather | None  # key/value rows; None: the same rows as the queries
    q_lens: tuple[int, ...]
    kv_lens: tuple[int, ...]
    runs: tuple[Run, ...]

    @property
    def pairs(self) -> int:
        """Query-key pairs the plan computes (per head)."""
        return sum(q * kv for q, kv in zip(self.q_lens, self.kv_lens, strict=True))


def make_plan(q_order: torch.Tensor | None, q_lens: list[int], kv_order: torch.Tensor | None = None,
              kv_lens: list[int] | None = None) -> SegmentPlan:
    """A plan from packed row indices and group lengths; empty groups are dropped.

    ``q_order`` must be a permutation of all token rows (every token is a query in exactly one
    group), None for rows already in place. ``kv_order`` may repeat rows but must take each at
    least once; when None the keys are the queries' rows.
    """
    kv_lens = list(q_lens) if kv_lens is None else list(kv_lens)
    if len(kv_lens) != len(q_lens):
        raise ValueError(f"{len(q_lens)} query groups but {len(kv_lens)} key groups")
    if any((q > 0) != (kv > 0) for q, kv in zip(q_lens, kv_lens, strict=True)):
        raise ValueError("a group has queries but no keys, or keys but no queries")
    rows = sum(q_lens)
    q_gather = out_gather = kv_gather = None
    if q_order is not None:
        if q_order.numel() != rows:
            raise ValueError(f"q_order has {q_order.numel()} rows, q_lens sum to {rows}")
        q_gather = row_gather(q_order, rows, permutation=True)
        out_gather = row_gather(q_gather.first, rows, permutation=True)
    if kv_order is not None:
        if kv_order.numel() != sum(kv_lens):
            raise ValueError(f"kv_order has {kv_order.numel()} rows, kv_lens sum to "
                             f"{sum(kv_lens)}")
        kv_gather = row_gather(kv_order, rows)
    shapes = [(q, kv) for q, kv in zip(q_lens, kv_lens, strict=True) if q > 0]
    runs: list[Run] = []
    for q, kv in shapes:
        if runs and (runs[-1].q_len, runs[-1].kv_len) == (q, kv):
            runs[-1] = Run(runs[-1].count + 1, q, kv)
        else:
            runs.append(Run(1, q, kv))
    return SegmentPlan(q_gather, out_gather, kv_gather, tuple(q for q, _ in shapes),
                       tuple(kv for _, kv in shapes), tuple(runs))


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
              plan: SegmentPlan | None = None, backend: Backend | str = Backend.AUTO,
              gate: torch.Tensor | None = None,
              key_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax attention: grouped with ``plan``, else dense.

    With ``plan``: each query attends to its group's keys on ``backend``, times ``gate`` if given;
    q, k, v: (L, H, D) token rows, gate: (L,) per query. Returns (L, H, D) in token order.
    Without: q (B, Sq, H, D) attends to all of k, v (B, Sk, H, D) except the keys where
    ``key_mask`` (B, Sk) is False; one SDPA call on every backend. Returns (B, Sq, H, D).
    """
    backend = Backend(backend)
    if plan is None:
        if gate is not None:
            raise ValueError("gate needs a plan: dense attention has no groups to gate")
        return _dense(q, k, v, key_mask)
    if key_mask is not None:
        raise ValueError("key_mask is for dense attention; a plan names its keys itself")
    return _grouped(q, k, v, plan, backend.resolve(q), gate)


def _dense(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
           key_mask: torch.Tensor | None) -> torch.Tensor:
    """SDPA on (B, H, S, D) views of token-major q, k, v; the output back to (B, Sq, H, D)."""
    if q.dim() != 4 or k.shape != v.shape or q.shape[2:] != k.shape[2:]:
        raise ValueError(f"q must be (B, Sq, H, D) and k, v one (B, Sk, H, D) shape, got "
                         f"{q.shape}, {k.shape}, {v.shape}")
    mask = None if key_mask is None else key_mask[:, None, None, :]
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                         v.transpose(1, 2), attn_mask=mask)
    return out.transpose(1, 2)


def _grouped(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: SegmentPlan,
             backend: Backend, gate: torch.Tensor | None) -> torch.Tensor:
    """The checks and the core of ``backend`` (REFERENCE or GPU) for ``attention`` with a plan."""
    if q.dim() != 3 or q.shape != k.shape or q.shape != v.shape:
        raise ValueError(f"q, k, v must share one (L, H, D) shape, got {q.shape}, {k.shape}, "
                         f"{v.shape}")
    if q.shape[0] != sum(plan.q_lens):
        raise ValueError(f"plan covers {sum(plan.q_lens)} query rows, q has {q.shape[0]}")
    if gate is not None and gate.shape != q.shape[:1]:
        raise ValueError(f"gate must have shape {tuple(q.shape[:1])}, got {tuple(gate.shape)}")
    core = _packed if backend is Backend.GPU else _reference
    return core(q, k, v, plan, gate)


def _reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: SegmentPlan,
               gate: torch.Tensor | None) -> torch.Tensor:
    """Per group: gather, explicit softmax(q k^T / sqrt(D)) v at >= float32, scatter back."""
    rows = torch.arange(q.shape[0], device=q.device) if plan.q_gather is None \
        else plan.q_gather.order
    kv_rows = rows if plan.kv_gather is None else plan.kv_gather.order
    compute = torch.promote_types(q.dtype, torch.float32)
    outs, q_at, kv_at = [], 0, 0
    for q_len, kv_len in zip(plan.q_lens, plan.kv_lens, strict=True):
        qi, ki = rows[q_at:q_at + q_len], kv_rows[kv_at:kv_at + kv_len]
        scores = torch.einsum("qhd,khd->hqk", q[qi].to(compute), k[ki].to(compute))
        weights = torch.softmax(scores / math.sqrt(q.shape[-1]), dim=-1)
        outs.append(torch.einsum("hqk,khd->qhd", weights, v[ki].to(compute)).to(q.dtype))
        q_at, kv_at = q_at + q_len, kv_at + kv_len
    out = torch.zeros_like(q).index_copy(0, rows, torch.cat(outs))
    return out if gate is None else out * gate[:, None, None]


def _packed(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: SegmentPlan,
            gate: torch.Tensor | None) -> torch.Tensor:
    """Gather once, one batched SDPA call per run of equal shapes, gather back once."""
    if plan.q_gather is not None:
        q = _Gather.apply(q, plan.q_gather)
        gate = None if gate is None else _Gather.apply(gate, plan.q_gather)
    kv_gather = plan.kv_gather or plan.q_gather
    if kv_gather is not None:
        k, v = _Gather.apply(k, kv_gather), _Gather.apply(v, kv_gather)
    _, heads, dim = q.shape
    q_runs = q.split([r.count * r.q_len for r in plan.runs])
    k_runs = k.split([r.count * r.kv_len for r in plan.runs])
    v_runs = v.split([r.count * r.kv_len for r in plan.runs])
    g_runs = [None] * len(plan.runs) if gate is None \
        else gate.split([r.count * r.q_len for r in plan.runs])
    outs = []
    with _kernel_priority(q.device):
        for run, qr, kr, vr, gr in zip(plan.runs, q_runs, k_runs, v_runs, g_runs, strict=True):
            # (count * len, H, D) -> (count, H, len, D): a strided view, no copy.
            qb = qr.view(run.count, run.q_len, heads, dim).transpose(1, 2)
            kb = kr.view(run.count, run.kv_len, heads, dim).transpose(1, 2)
            vb = vr.view(run.count, run.kv_len, heads, dim).transpose(1, 2)
            o = F.scaled_dot_product_attention(qb, kb, vb)
            if gr is not None:  # saves the tensor SDPA saves anyway: no extra memory
                o = o * gr.view(run.count, 1, run.q_len, 1)
            outs.append(o.transpose(1, 2).reshape(run.count * run.q_len, heads, dim))
    out = outs[0] if len(outs) == 1 else torch.cat(outs)
    return out if plan.out_gather is None else _Gather.apply(out, plan.out_gather)


def _kernel_priority(device: torch.device) -> AbstractContextManager:
    """cuDNN first on CUDA; elsewhere SDPA's own choice (math for float64)."""
    if device.type == "cuda":
        return sdpa_kernel(_CUDA_PRIORITY, set_priority=True)
    return nullcontext()
