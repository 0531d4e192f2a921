"""``grouped_autograd.grouped_mean``: the MoGA layer's three branches in one autograd function.

Checked against the float64 reference backend (outputs and every gradient: q, k, v, the gate and
through it the router), on sizes where both its kernels run (CPU flash for groups of 16 keys or
more, explicit softmax below), and for what its forward keeps for the backward: bytes saved
beyond the inputs, against dense attention, counted with ``saved_tensors_hooks``, and how much
of it is still alive when MoGA's groups run their backward.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable

import pytest
import torch

from models import grouped_autograd, moga
from models.attention_core import Backend, SegmentPlan, attention
from models.grouped_autograd import fused_supported, grouped_mean
from models.moga import MoGASelfAttention, moga_plan
from models.stga import frame_plan, window_plan

GRID, SHOTS, BATCH, HEADS, HEAD_DIM = (7, 4, 5), (2, 3), 2, 2, 8
TOKENS = math.prod(GRID)


def _plans(sizes: list[int]) -> dict[str, SegmentPlan]:
    """MoGA groups of ``sizes`` tokens (shuffled, per sample), STGA windows with shot context
    (rows repeated as keys), per-frame groups of 20 tokens."""
    generator = torch.Generator().manual_seed(7)
    ids = torch.cat([torch.full((n,), i) for i, n in enumerate(sizes)])
    ids = torch.stack([ids[torch.randperm(TOKENS, generator=generator)] for _ in range(BATCH)])
    return {"moga": moga_plan(ids, len(sizes)),
            "window": window_plan(BATCH, GRID, SHOTS, (2, 2), 2, 2, torch.device("cpu")),
            "frame": frame_plan(BATCH, GRID)}


def _leaves(dtype: torch.dtype = torch.float64) -> list[torch.Tensor]:
    torch.manual_seed(11)
    q, k, v = (torch.randn(BATCH * TOKENS, HEADS, HEAD_DIM, dtype=dtype) for _ in range(3))
    gate = torch.rand(BATCH * TOKENS, dtype=dtype) + 0.5
    return [t.requires_grad_() for t in (q, k, v, gate)]


def _reference_mean(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plans: list[SegmentPlan],
                    gate: torch.Tensor | None) -> torch.Tensor:
    outs = [attention(q, k, v, plan=plan, backend=Backend.REFERENCE,
                      gate=gate if i == 0 else None) for i, plan in enumerate(plans)]
    return sum(outs) / len(outs)


@pytest.mark.parametrize("order", [("moga", "window", "frame"), ("window", "frame", "moga"),
                                   ("frame",), ("moga",)])
@pytest.mark.parametrize("gated", [True, False])
def test_every_gradient_matches_the_float64_reference(order: tuple[str, ...], gated: bool) -> None:
    """Groups of 1, 3, 12 and 52 tokens per sample; a first plan with key repeats (windows)."""
    plans = [_plans([1, 3, 12, 52, 0, 72])[name] for name in order]
    q, k, v, gate = _leaves()
    gate_in = gate if gated else None
    weight = torch.randn(BATCH * TOKENS, HEADS, HEAD_DIM, dtype=torch.float64)
    got = grouped_mean(q, k, v, plans, gate_in)
    want = _reference_mean(q, k, v, plans, gate_in)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    inputs = [q, k, v, gate] if gated else [q, k, v]
    got_grads = torch.autograd.grad((got * weight).sum(), inputs)
    want_grads = torch.autograd.grad((want * weight).sum(), inputs)
    for name, g, e in zip("qkvg", got_grads, want_grads, strict=False):
        torch.testing.assert_close(g, e, rtol=1e-9, atol=1e-11, msg=name)
    with torch.no_grad():
        torch.testing.assert_close(grouped_mean(q, k, v, plans, gate_in), got, rtol=0, atol=0)


def test_both_kernels_and_cut_runs_are_exercised(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cases above reach the CPU flash kernel and the explicit softmax, runs are cut into
    pieces, and every fused call sees (B, S, H, D)-contiguous q, k, v (cuDNN's plan reuse)."""
    kinds, layouts, pieces = set(), [], []
    forward, cut = grouped_autograd._kernel_forward, grouped_autograd._pieces

    def spy(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, stats: bool) -> object:
        kinds.add("math" if k.shape[2] < grouped_autograd._SMALL_KV else "fused")
        layouts.append(all(t.transpose(1, 2).is_contiguous() for t in (q, k, v)))
        return forward(q, k, v, stats)

    def cut_spy(plan: SegmentPlan, rows: int) -> list:
        pieces.append((plan, cut(plan, rows)))
        return pieces[-1][1]

    monkeypatch.setattr(grouped_autograd, "_kernel_forward", spy)
    monkeypatch.setattr(grouped_autograd, "_pieces", cut_spy)
    q, k, v, gate = _leaves()
    grouped_mean(q, k, v, list(_plans([1, 3, 12, 52, 0, 72]).values()), gate).sum().backward()
    assert kinds == {"math", "fused"} and all(layouts)
    for plan, cuts in pieces:
        assert sum(p.count for p in cuts) == sum(r.count for r in plan.runs)
        assert cuts[-1].q_at + cuts[-1].count * cuts[-1].q_len == BATCH * TOKENS
        cap = math.ceil(BATCH * TOKENS / grouped_autograd._PIECES)
        assert all(p.count == 1 or p.count * max(p.q_len, p.kv_len) <= cap for p in cuts)
    frames = [cuts for plan, cuts in pieces if plan.q_gather is None]
    assert frames and all(len(cuts) > 1 for cuts in frames)  # the frames' one run is cut


def _layer(backend: str, dtype: torch.dtype) -> MoGASelfAttention:
    torch.manual_seed(0)
    layer = MoGASelfAttention(16, HEADS, 4, (2, 2), 2, 0.1, backend, temporal_frames=2)
    with torch.no_grad():
        layer.router.weight.normal_(0, 1.0)
    return layer.to(dtype)


def test_layer_gradients_reach_the_router_like_the_reference() -> None:
    """Through the gate: router weight and bias, and x, besides q, k, v."""
    torch.manual_seed(12)
    x = torch.randn(BATCH, TOKENS, 16, dtype=torch.float64, requires_grad=True)
    q, k, v = (torch.randn(BATCH, TOKENS, HEADS, HEAD_DIM, dtype=torch.float64,
                           requires_grad=True) for _ in range(3))
    weight = torch.randn(BATCH, TOKENS, HEADS, HEAD_DIM, dtype=torch.float64)
    results = []
    for backend in ("gpu", "reference"):
        layer = _layer(backend, torch.float64)
        out, stats = layer(x, q, k, v, GRID, list(SHOTS))
        leaves = [x, q, k, v, layer.router.weight, layer.router.bias]
        results.append([out, *torch.autograd.grad((out * weight).sum() + stats.balance_loss,
                                                  leaves)])
    assert min(stats.group_sizes) > 0 and max(stats.group_sizes) >= 16
    for name, got, want in zip(("out", "x", "q", "k", "v", "W", "b"), *results, strict=True):
        assert want.abs().max() > 0, name
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-11, msg=name)


def _saved_bytes(fn: Callable[[], object], inputs: list[torch.Tensor]) -> int:
    """Bytes of the storages autograd saves while fn runs, those of ``inputs`` left out."""
    owned = {t.untyped_storage().data_ptr() for t in inputs}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in owned:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        result = fn()
    del result
    return sum(saved.values())


def test_saved_for_backward_is_one_output_per_branch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Beyond its inputs, dense attention keeps its output and log-sum-exp. The layer keeps one
    kernel output per branch, their log-sum-exp, the gate and the router's probabilities: within
    (3 + 0.25) x dense. The per-branch path (gathered copies of q, k, v besides the outputs)
    keeps several times that, which this count sees."""
    heads, dim, grid = 4, 32, (8, 6, 8)
    tokens = math.prod(grid)
    torch.manual_seed(13)
    x = torch.randn(1, tokens, 64, requires_grad=True)
    q, k, v = (torch.randn(1, tokens, heads, dim, requires_grad=True) for _ in range(3))
    layer = MoGASelfAttention(64, heads, 4, (2, 2), backend="gpu")
    inputs = [x, q, k, v, *layer.parameters()]
    dense = _saved_bytes(lambda: attention(q, k, v), inputs)
    assert dense >= q.numel() * 4  # its output at least
    fused = _saved_bytes(lambda: layer(x, q, k, v, grid, [0, 5]), inputs)
    assert fused <= (len(layer.branches) + 0.25) * dense, (fused, dense)
    monkeypatch.setattr(moga, "fused_supported", lambda t: False)
    per_branch = _saved_bytes(lambda: layer(x, q, k, v, grid, [0, 5]), inputs)
    assert per_branch > 2.5 * fused, (per_branch, fused)


def test_each_branch_frees_its_outputs_before_the_next_backward(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The backward runs frames, then windows, then MoGA, and autograd drops each branch's kept
    outputs when its node is done: MoGA's large groups meet one kept output, not three."""
    q, k, v, gate = _leaves()
    alive: list[torch.Tensor] = []  # weak references to what the nodes saved, inputs left out
    owned = {t.untyped_storage().data_ptr() for t in (q, k, v, gate)}
    seen: list[tuple[bool, int]] = []  # (a MoGA piece, bytes still kept) per piece backward
    backward = grouped_autograd._piece_backward

    def spy(*args: object) -> None:
        refs = [ref() for ref in alive]
        kept = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
                for t in refs if t is not None}
        seen.append((args[-1] is not None, sum(kept.values())))
        del refs
        backward(*args)

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.untyped_storage().data_ptr() not in owned:
            alive.append(weakref.ref(t))
        return t

    monkeypatch.setattr(grouped_autograd, "_piece_backward", spy)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = grouped_mean(q, k, v, list(_plans([1, 3, 12, 52, 0, 72]).values()), gate)
    out.sum().backward()
    one_output = q.numel() * q.element_size()
    order = [moga for moga, _ in seen]
    assert order == sorted(order)  # MoGA last
    assert max(b for _, b in seen) > 2.9 * one_output  # all three kept at the start
    assert max(b for moga, b in seen if moga) < 1.25 * one_output


def test_bf16_on_cpu_and_what_has_no_kernels() -> None:
    q, k, v, gate = (t.detach().bfloat16() for t in _leaves())
    plans = list(_plans([40, 30, 30, 40]).values())
    want = _reference_mean(*(t.double() for t in (q, k, v)), plans, gate.double())
    got = grouped_mean(q, k, v, plans, gate)
    assert got.dtype == torch.bfloat16
    assert (got.double() - want).norm() / want.norm() < 1e-2
    assert fused_supported(q) and not fused_supported(q.long())
    with pytest.raises(ValueError, match="no fused kernels"):
        grouped_mean(q.long(), k.long(), v.long(), plans)
    with pytest.raises(ValueError, match="cover"):
        grouped_mean(q[:-1], k[:-1], v[:-1], plans)
