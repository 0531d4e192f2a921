"""The mean of several grouped attentions in autograd nodes that keep no gathered copies.

``grouped_mean(q, k, v, plans, gate)`` is the mean over ``SegmentPlan``s of attention inside each
plan's groups, the first plan's output times ``gate``: MoGA's routed groups, STGA's windows and
per-frame attention. It computes what ``attention_core``'s packed core computes plan by plan, and
its peak over forward and backward stays near dense attention's:

- The work goes piece by piece. A piece is a run of equal-shape groups cut to at most 1/8 of the
  rows (a group is never cut). Each piece gathers its rows of q, k, v, calls a fused kernel and
  adds its output into the token-order result, so transients are one piece's size.
- One autograd node per plan, chained through the result, which each adds its share into in
  place. A node saves q, k, v (the inputs, shared by all), its kernel outputs and log-sum-exp and,
  for the first plan, the gate. No gathered copy is saved.
- The backward runs the nodes last plan first (the cheap ones: frames, then windows; MoGA's large
  groups last) and autograd frees each node's outputs once it is done, so the transients of the
  large groups meet one kept output instead of three. Each node re-gathers q, k, v and the
  output's gradient piece by piece, calls the fused backward kernel with the log-sum-exp and
  scatters into gradients shared by the nodes; the first plan's node hands them to autograd.

Kernels, each returning the log-sum-exp its backward needs: cuDNN
(``aten._scaled_dot_product_cudnn_attention`` and its backward) on CUDA for float16/bfloat16;
PyTorch's CPU flash kernels on CPU, any float dtype (the tests run float64); an explicit softmax
for groups of fewer than 16 keys, which cuDNN may reject. ``fused_supported`` tells whether a
tensor has kernels here (CUDA float32/float64 have none).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from models.attention_core import SegmentPlan

_PIECES = 8  # runs are cut into pieces of at most 1/_PIECES of the rows
_SMALL_KV = 16  # groups with fewer keys take the explicit softmax
_CUDA_DTYPES = (torch.float16, torch.bfloat16)
_Extra = tuple  # what a kernel's backward needs from its forward besides out and log-sum-exp


def fused_supported(x: torch.Tensor) -> bool:
    """Whether ``grouped_mean`` has kernels for the device and dtype of x."""
    if x.is_cuda:
        return x.dtype in _CUDA_DTYPES
    return x.device.type == "cpu" and x.is_floating_point()


@dataclass(frozen=True)
class _Piece:
    """``count`` groups of ``q_len`` queries and ``kv_len`` keys at packed offsets."""

    count: int
    q_len: int
    kv_len: int
    q_at: int
    kv_at: int


@dataclass(frozen=True)
class _Rows:
    """A plan's packed query and key rows (None: rows in place); ``kv_once``: no key repeats."""

    q: torch.Tensor | None
    kv: torch.Tensor | None
    kv_once: bool


def _pieces(plan: SegmentPlan, rows: int) -> list[_Piece]:
    """The plan's runs cut into pieces of at most ``rows / _PIECES`` rows or one group."""
    cap = -(-rows // _PIECES)
    pieces, q_at, kv_at = [], 0, 0
    for run in plan.runs:
        step = max(1, cap // max(run.q_len, run.kv_len))
        for start in range(0, run.count, step):
            count = min(step, run.count - start)
            pieces.append(_Piece(count, run.q_len, run.kv_len, q_at, kv_at))
            q_at, kv_at = q_at + count * run.q_len, kv_at + count * run.kv_len
    return pieces


def _rows(plan: SegmentPlan) -> _Rows:
    kv = plan.kv_gather or plan.q_gather
    return _Rows(None if plan.q_gather is None else plan.q_gather.order,
                 None if kv is None else kv.order, kv is None or kv.repeat_at.numel() == 0)


def _take(x: torch.Tensor, rows: torch.Tensor | None, at: int, n: int) -> torch.Tensor:
    """Packed rows [at, at + n) of x: a slice in place, else a gather."""
    return x[at:at + n] if rows is None else x.index_select(0, rows[at:at + n])


def _put(dst: torch.Tensor, rows: torch.Tensor | None, at: int, src: torch.Tensor, add: bool,
         alpha: float = 1.0) -> None:
    """Write (``add``: add) ``alpha * src`` into the token rows of packed rows
    [at, at + len(src)) of dst. Adds go through index_put_'s sorted accumulation, deterministic
    for repeated rows and faster than index_add_'s per-element atomics; src may be scaled in
    place."""
    if rows is None:
        target = dst[at:at + src.shape[0]]
        if add:
            target.add_(src, alpha=alpha)
        else:
            torch.mul(src, alpha, out=target)
        return
    rows = rows[at:at + src.shape[0]]
    if alpha != 1:
        src = src.mul_(alpha)
    if add:
        dst.index_put_((rows,), src, accumulate=True)
    else:
        _copy_rows(dst, rows, src)


def _copy_rows(dst: torch.Tensor, rows: torch.Tensor, src: torch.Tensor) -> None:
    """``dst[rows] = src`` for contiguous rows; 8-byte words where the row size allows, since
    index_copy_ costs per element."""
    row_bytes = math.prod(src.shape[1:]) * src.element_size()
    if row_bytes % 8 or not (dst.is_contiguous() and src.is_contiguous()):
        dst.index_copy_(0, rows, src)
        return
    dst_words = dst.view(dst.shape[0], -1).view(torch.int64)
    dst_words.index_copy_(0, rows, src.reshape(src.shape[0], -1).view(torch.int64))


def _heads(x: torch.Tensor, count: int) -> torch.Tensor:
    """(count * len, H, D) token rows -> (count, H, len, D), a strided view."""
    return x.view(count, -1, *x.shape[1:]).transpose(1, 2)


def _tokens(x: torch.Tensor) -> torch.Tensor:
    """(count, H, len, D) -> (count * len, H, D) token rows; a view for (B, S, H, D) memory."""
    return x.transpose(1, 2).reshape(-1, x.shape[1], x.shape[3])


def _gather_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rows: _Rows,
                piece: _Piece) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The piece's q, k, v as (count, H, len, D) views of (B, S, H, D)-contiguous rows."""
    kv_rows = piece.count * piece.kv_len
    return (_heads(_take(q, rows.q, piece.q_at, piece.count * piece.q_len), piece.count),
            _heads(_take(k, rows.kv, piece.kv_at, kv_rows), piece.count),
            _heads(_take(v, rows.kv, piece.kv_at, kv_rows), piece.count))


def _math_forward(q: torch.Tensor, k: torch.Tensor,
                  v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Explicit softmax attention in at least float32: output and log-sum-exp (B, H, Sq)."""
    compute = torch.promote_types(q.dtype, torch.float32)
    scores = q.to(compute) @ k.to(compute).transpose(-1, -2) * (1 / math.sqrt(q.shape[-1]))
    lse = scores.logsumexp(-1)
    return (torch.exp(scores - lse[..., None]) @ v.to(compute)).to(q.dtype), lse


def _math_backward(dout: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                   out: torch.Tensor, lse: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of ``_math_forward`` from its output and log-sum-exp."""
    scale = 1 / math.sqrt(q.shape[-1])
    qc, kc, vc, dc = (t.to(lse.dtype) for t in (q, k, v, dout))
    probs = torch.exp(qc @ kc.transpose(-1, -2) * scale - lse[..., None])
    delta = (dc * out.to(lse.dtype)).sum(-1, keepdim=True)
    dscores = probs * (dc @ vc.transpose(-1, -2) - delta) * scale
    return ((dscores @ kc).to(q.dtype), (dscores.transpose(-1, -2) @ qc).to(k.dtype),
            (probs.transpose(-1, -2) @ dc).to(v.dtype))


def _kernel_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    stats: bool) -> tuple[torch.Tensor, torch.Tensor | None, _Extra]:
    """Output (B, H, Sq, D), log-sum-exp (None without ``stats`` on cuDNN), backward extras."""
    if k.shape[2] < _SMALL_KV:
        return (*_math_forward(q, k, v), ())
    if q.is_cuda:
        out, lse, cum_q, cum_k, max_q, max_k, seed, offset, _ = \
            torch.ops.aten._scaled_dot_product_cudnn_attention(q, k, v, None, stats)
        return out, lse, (seed, offset, None, cum_q, cum_k, max_q, max_k)
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v)
    return out, lse, ()


def _kernel_backward(dout: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     out: torch.Tensor, lse: torch.Tensor, extra: _Extra
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """dq, dk, dv of ``_kernel_forward`` for the same shapes; dout laid out like out."""
    if k.shape[2] < _SMALL_KV:
        return _math_backward(dout, q, k, v, out, lse)
    if q.is_cuda:
        return torch.ops.aten._scaled_dot_product_cudnn_attention_backward(
            dout, q, k, v, out, lse, *extra, 0.0, False)
    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
        dout, q, k, v, out, lse, 0.0, False)


_Kept = tuple  # a piece's kernel output (count, H, len, D), log-sum-exp and backward extras


def _plan_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: SegmentPlan,
                  gate: torch.Tensor | None, weight: float, acc: torch.Tensor | None,
                  keep: bool) -> tuple[torch.Tensor, list[_Kept]]:
    """Add ``weight`` times the plan's attention (times ``gate`` per query if given) into acc,
    or into a new tensor when acc is None; with ``keep``, also each piece's ``_Kept``."""
    rows, first = _rows(plan), acc is None
    acc = torch.empty_like(q) if acc is None else acc
    scale = None if gate is None else gate * weight
    kept = []
    for piece in _pieces(plan, q.shape[0]):
        out, lse, extra = _kernel_forward(*_gather_qkv(q, k, v, rows, piece), stats=keep)
        if keep:
            kept.append((out, lse, extra))
        rows_out, alpha = _tokens(out), weight
        if scale is not None:
            rows_out = rows_out * _take(scale, rows.q, piece.q_at, rows_out.shape[0])[:, None, None]
            alpha = 1.0
        elif keep and rows.q is not None:  # _put would scale the kept output in place
            rows_out, alpha = rows_out * weight, 1.0
        _put(acc, rows.q, piece.q_at, rows_out, add=not first, alpha=alpha)
    return acc, kept


@dataclass
class _Grads:
    """Token-order gradients that the plans' backward passes fill in turn."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    gate: torch.Tensor | None = None


def _piece_backward(grad: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    rows: _Rows, piece: _Piece, kept: _Kept, grads: _Grads, first: bool,
                    weight: float, scale: torch.Tensor | None) -> None:
    """One piece's gradients into ``grads``; ``first``: the plan writes them first."""
    qp, kp, vp = _gather_qkv(q, k, v, rows, piece)
    out, lse, extra = kept
    dout = _take(grad, rows.q, piece.q_at, qp.shape[0] * qp.shape[2])
    alpha = 1.0
    if scale is not None:
        if grads.gate is not None:
            dgate = (dout * _tokens(out)).sum((1, 2)) * weight
            _put(grads.gate, rows.q, piece.q_at, dgate, add=False)
        dout = dout * _take(scale, rows.q, piece.q_at, dout.shape[0])[:, None, None]
    elif rows.q is not None:
        dout = dout.mul_(weight)  # a gathered copy
    else:
        alpha = weight  # a slice of grad: scale the gradients instead
    dq, dk, dv = _kernel_backward(_heads(dout, piece.count), qp, kp, vp, out, lse, extra)
    _put(grads.q, rows.q, piece.q_at, _tokens(dq), add=not first, alpha=alpha)
    for dst, src in ((grads.k, dk), (grads.v, dv)):
        _put(dst, rows.kv, piece.kv_at, _tokens(src), add=not (first and rows.kv_once),
             alpha=alpha)


class _Shared:
    """The gradients the plans' nodes fill; the first plan's node hands them to autograd."""

    def __init__(self) -> None:
        self.grads: _Grads | None = None


class _PlanMean(torch.autograd.Function):
    """Plan ``index`` of ``count``: adds its share of the mean into ``acc`` in place (plan 0
    creates it) and keeps its kernel outputs; see the module docstring for the backward."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, q: torch.Tensor, k: torch.Tensor,
                v: torch.Tensor, gate: torch.Tensor | None, acc: torch.Tensor | None,
                plan: SegmentPlan, index: int, count: int, shared: _Shared) -> torch.Tensor:
        out, kept = _plan_forward(q, k, v, plan, gate, 1 / count, acc, keep=True)
        if acc is not None:
            ctx.mark_dirty(out)
        ctx.plan, ctx.index, ctx.count, ctx.shared = plan, index, count, shared
        ctx.extras = [extra for _, _, extra in kept]
        ctx.save_for_backward(q, k, v, gate, *(o for o, _, _ in kept),
                              *(lse for _, lse, _ in kept))
        return out

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple:
        q, k, v, gate, *saved = ctx.saved_tensors
        kept = list(zip(saved[:len(saved) // 2], saved[len(saved) // 2:], ctx.extras,
                        strict=True))
        first = ctx.index == ctx.count - 1  # the node the backward runs first
        if first:
            zero_kv = not _rows(ctx.plan).kv_once
            ctx.shared.grads = _Grads(torch.empty_like(q), *(
                torch.zeros_like(t) if zero_kv else torch.empty_like(t) for t in (k, v)))
        grads = ctx.shared.grads
        if ctx.index == 0 and gate is not None and ctx.needs_input_grad[3]:
            grads.gate = torch.empty_like(gate)
        weight = 1 / ctx.count
        scale = None if gate is None else gate * weight
        rows, grad = _rows(ctx.plan), grad.contiguous()
        for piece, piece_kept in zip(_pieces(ctx.plan, q.shape[0]), kept, strict=True):
            _piece_backward(grad, q, k, v, rows, piece, piece_kept, grads, first, weight, scale)
        if ctx.index > 0:
            return None, None, None, None, grad, None, None, None, None
        ctx.shared.grads = None
        return grads.q, grads.k, grads.v, grads.gate, None, None, None, None, None


def grouped_mean(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plans: Sequence[SegmentPlan],
                 gate: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over ``plans`` of softmax attention inside each plan's groups, the first's times gate.

    q, k, v: (L, H, D) token rows on a device and dtype ``fused_supported`` accepts; gate: (L,)
    per query. Returns (L, H, D) in token order.
    """
    if not plans:
        raise ValueError("grouped_mean needs at least one plan")
    if q.dim() != 3 or q.shape != k.shape or q.shape != v.shape:
        raise ValueError(f"q, k, v must share one (L, H, D) shape, got {q.shape}, {k.shape}, "
                         f"{v.shape}")
    if any(sum(plan.q_lens) != q.shape[0] for plan in plans):
        raise ValueError(f"every plan must cover the {q.shape[0]} query rows")
    if gate is not None and gate.shape != q.shape[:1]:
        raise ValueError(f"gate must have shape {tuple(q.shape[:1])}, got {tuple(gate.shape)}")
    if not fused_supported(q):
        raise ValueError(f"no fused kernels for {q.dtype} on {q.device.type}")
    q, k, v = (t.contiguous() for t in (q, k, v))
    gate = None if gate is None else gate.to(q.dtype)
    tracked = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (q, k, v, gate))
    out, shared = None, _Shared()
    for index, plan in enumerate(plans):
        plan_gate = gate if index == 0 else None
        if tracked:
            out = _PlanMean.apply(q, k, v, plan_gate, out, plan, index, len(plans), shared)
        else:
            out = _plan_forward(q, k, v, plan, plan_gate, 1 / len(plans), out, keep=False)[0]
    return out
