"""MoGA layer against a float64 dense attention with explicit group masks and gating.

The oracle below builds the three masks straight from their definitions (MoGA group equality,
STGA window x temporal group plus shot context, same frame) without the plan code it checks.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

from models import attention_core
from models.attention_core import Backend, attention, make_plan
from models.moga import MoGASelfAttention, moga_plan
from models.router import Routing, balance_loss, balance_metric, group_counts
from models.stga import frame_plan, temporal_groups, window_plan

DIM, HEADS, HEAD_DIM = 8, 2, 4


@dataclass(frozen=True)
class Case:
    grid: tuple[int, int, int]
    shot_starts: tuple[int, ...]
    groups: tuple[int, ...]  # MoGA group of each token (sample 0; sample 1 is a shuffle)
    num_groups: int
    window_grid: tuple[int, int] = (2, 2)
    temporal_frames: int = 2
    batch: int = 1


def _groups(sizes: list[int]) -> tuple[int, ...]:
    """Token groups, shuffled by a fixed seed, with sizes[i] tokens in group i."""
    ids = torch.cat([torch.full((n,), i) for i, n in enumerate(sizes)])
    return tuple(ids[torch.randperm(len(ids), generator=torch.Generator().manual_seed(1))].tolist())


CASES = {
    # 5 frames of 2x3: an empty group (2), a one-token group (3), unequal others.
    "unequal-empty-single": Case((5, 2, 3), (2,), _groups([14, 11, 0, 1, 4]), 5),
    "one-group": Case((4, 2, 2), (), _groups([16]), 1),
    "cuts-first-and-last-frame": Case((6, 2, 2), (0, 1, 5), _groups([9, 8, 7]), 3),
    "uneven-windows-batch2": Case((4, 3, 3), (2,), _groups([12, 12, 12]), 4, (2, 2), 3, 2),
}


def _module(case: Case, backend: str) -> MoGASelfAttention:
    """A float64 layer whose router sends token i to ``case.groups[i]`` through x (see _inputs)."""
    torch.manual_seed(0)
    layer = MoGASelfAttention(DIM, HEADS, case.num_groups, case.window_grid, 2, 0.1, backend,
                              temporal_frames=case.temporal_frames).double()
    with torch.no_grad():
        layer.router.weight.normal_(0, 0.1)
        layer.router.weight[:, :case.num_groups] += 3 * torch.eye(case.num_groups)
    return layer


def _inputs(case: Case) -> tuple[torch.Tensor, ...]:
    tokens = math.prod(case.grid)
    torch.manual_seed(2)
    ids = torch.tensor(case.groups)
    ids = torch.stack([ids] + [ids[torch.randperm(tokens)] for _ in range(case.batch - 1)])
    x = torch.randn(case.batch, tokens, DIM, dtype=torch.float64) * 0.1
    x[..., :case.num_groups] += F.one_hot(ids, case.num_groups).double()
    q, k, v = (torch.randn(case.batch, tokens, HEADS, HEAD_DIM, dtype=torch.float64)
               for _ in range(3))
    return x, q, k, v, ids


def _oracle_static_masks(case: Case) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, N) window and frame masks, written from the STGA definition."""
    frames, height, width = case.grid
    starts = sorted({0, *case.shot_starts}) + [frames]
    place = {}  # frame -> (shot, temporal group in the shot, groups in the shot)
    for j in range(len(starts) - 1):
        length = starts[j + 1] - starts[j]
        parts = -(-length // case.temporal_frames)
        for t in range(starts[j], starts[j + 1]):
            # group i covers [start + length*i//parts, start + length*(i+1)//parts)
            place[t] = (j, _piece(t - starts[j], length, parts), parts)
    coords = [(t, _piece(h, height, case.window_grid[0]), _piece(w, width, case.window_grid[1]))
              for t in range(frames) for h in range(height) for w in range(width)]
    window = torch.zeros(len(coords), len(coords), dtype=torch.bool)
    for a, (t, *win_a) in enumerate(coords):
        j, i, parts = place[t]
        for b, (u, *win_b) in enumerate(coords):
            same = place[u][:2] == (j, i)
            before = place[u][0] == j - 1 and i == 0 and u >= starts[j] - 2
            after = place[u][0] == j + 1 and i == parts - 1 and u < starts[j + 1] + 2
            window[a, b] = win_a == win_b and (same or before or after)
    frame = torch.tensor([[t == u for u, _, _ in coords] for t, _, _ in coords])
    return window, frame


def _piece(index: int, size: int, parts: int) -> int:
    """Which of ``parts`` pieces ``index`` falls in when ``size`` is cut at size*i//parts."""
    return max(i for i in range(parts) if size * i // parts <= index)


def _masked(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    scores = torch.einsum("nhd,mhd->hnm", q, k) / math.sqrt(q.shape[-1])
    weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
    return torch.einsum("hnm,mhd->nhd", weights, v)


def _oracle(layer: MoGASelfAttention, case: Case, x: torch.Tensor, q: torch.Tensor,
            k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    probs = torch.softmax(x @ layer.router.weight.T + layer.router.bias, dim=-1)
    gate, ids = probs.max(dim=-1)
    window, frame = _oracle_static_masks(case)
    outs = []
    for b in range(case.batch):
        moga = _masked(q[b], k[b], v[b], ids[b][:, None] == ids[b][None, :])
        outs.append((moga * gate[b][:, None, None] + _masked(q[b], k[b], v[b], window)
                     + _masked(q[b], k[b], v[b], frame)) / 3)
    counts = torch.bincount(ids.reshape(-1), minlength=case.num_groups).double()
    fraction = counts / counts.sum()
    share = torch.stack([gate[ids == i].sum() for i in range(case.num_groups)]) / counts.sum()
    return torch.stack(outs), 0.1 * case.num_groups * (fraction * share).sum()


@pytest.mark.parametrize("backend", ["reference", "gpu"])
@pytest.mark.parametrize("name", list(CASES))
def test_layer_matches_dense_oracle(name: str, backend: str) -> None:
    case = CASES[name]
    layer = _module(case, backend)
    x, q, k, v, ids = _inputs(case)
    leaves = [t.requires_grad_() for t in (q, k, v, x)]
    params = [layer.router.weight, layer.router.bias]
    out, stats = layer(x, q, k, v, case.grid, list(case.shot_starts))
    want, want_loss = _oracle(layer, case, x, q, k, v)
    assert stats.group_sizes == group_counts(ids, case.num_groups).tolist()
    torch.testing.assert_close(out, want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(stats.balance_loss, want_loss, rtol=1e-10, atol=1e-12)
    weight = torch.randn_like(out)
    got = torch.autograd.grad((out * weight).sum() + stats.balance_loss, leaves + params)
    expected = torch.autograd.grad((want * weight).sum() + want_loss, leaves + params)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-9, atol=1e-11)
    # With one group the gate is softmax over one logit, 1: no gradient reaches the router or x.
    nonzero = [bool(e.abs().max() > 0) for e in expected]
    assert nonzero == [True] * 3 + [case.num_groups > 1] * 3


@pytest.mark.parametrize("backend", [Backend.REFERENCE, Backend.GPU])
def test_one_group_is_dense_attention(backend: Backend) -> None:
    torch.manual_seed(3)
    q, k, v = (torch.randn(2, 10, HEADS, HEAD_DIM, dtype=torch.float64) for _ in range(3))
    plan = moga_plan(torch.zeros(2, 10, dtype=torch.long), 1)
    out = attention(*(t.reshape(20, HEADS, HEAD_DIM) for t in (q, k, v)), plan=plan,
                    backend=backend)
    dense = F.scaled_dot_product_attention(*(t.transpose(1, 2) for t in (q, k, v))).transpose(1, 2)
    torch.testing.assert_close(out.view(2, 10, HEADS, HEAD_DIM), dense, rtol=1e-12, atol=1e-12)


def test_dense_attention_is_sdpa_and_bad_backends_name_the_good_ones() -> None:
    """Without a plan, ``attention`` is the very SDPA call on (B, H, S, D) views, on any backend."""
    torch.manual_seed(4)
    q = torch.randn(2, 7, HEADS, HEAD_DIM)
    k, v = (torch.randn(2, 5, HEADS, HEAD_DIM) for _ in range(2))
    mask = torch.rand(2, 5) > 0.4
    mask[:, 0] = True
    for key_mask, sdpa_mask in ((None, None), (mask, mask[:, None, None, :])):
        want = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                              v.transpose(1, 2), attn_mask=sdpa_mask)
        for backend in Backend:
            got = attention(q, k, v, backend=backend, key_mask=key_mask)
            assert torch.equal(got, want.transpose(1, 2)), backend
    assert Backend.AUTO.resolve(q.bfloat16()) is Backend.REFERENCE  # CPU
    for bad in ("packed", "triton"):
        with pytest.raises(ValueError, match="auto, reference, gpu"):
            attention(q, k, v, backend=bad)
        with pytest.raises(ValueError, match="auto, reference, gpu"):
            MoGASelfAttention(DIM, HEADS, 2, backend=bad)


def test_temporal_groups_by_hand() -> None:
    """Shots [0,3), [3,6), [6,7) in groups of <= 2 frames, 2 context frames per adjacent shot."""
    got = [(list(q), kv) for q, kv in temporal_groups([(0, 3), (3, 6), (6, 7)], 2, 2)]
    assert got == [([0], [0]), ([1, 2], [1, 2, 3, 4]),
                   ([3], [1, 2, 3]), ([4, 5], [4, 5, 6]),
                   ([6], [4, 5, 6])]


def test_plans_cover_every_token_once() -> None:
    grid, batch = (7, 3, 5), 2
    tokens = batch * math.prod(grid)
    plans = [window_plan(batch, grid, (3, 6), (2, 2), 3, 2, torch.device("cpu")),
             frame_plan(batch, grid),
             moga_plan(torch.randint(0, 4, (batch, math.prod(grid))), 4)]
    for plan in plans:
        rows = torch.arange(tokens) if plan.q_gather is None else plan.q_gather.order
        assert torch.equal(rows.sort().values, torch.arange(tokens))
        assert sum(r.count * r.q_len for r in plan.runs) == tokens
    assert plans[1].runs == (plans[1].runs[0],) and plans[1].runs[0].count == batch * grid[0]


def test_plan_rejects_inconsistent_lengths() -> None:
    with pytest.raises(ValueError, match="rows"):
        make_plan(torch.arange(5), [2, 2])
    with pytest.raises(ValueError, match="no keys"):
        make_plan(None, [2, 2], torch.arange(2), [2, 0])


def test_packed_runs_suit_shape_stable_cudnn_plans(monkeypatch: pytest.MonkeyPatch) -> None:
    """cuDNN keys MoGA's changing group lengths by power-of-two buckets only for mask-free calls
    whose q, k, v are (B, S, H, D)-contiguous: the gathered MoGA and window runs must be that."""
    assert "TORCH_CUDNN_SDPA_AVOID_RECOMPILE" in os.environ
    layouts = []
    sdpa = F.scaled_dot_product_attention

    def spy(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *args: object,
            **kwargs: object) -> torch.Tensor:
        layouts.append(not args and not kwargs
                       and all(t.transpose(1, 2).is_contiguous() for t in (q, k, v)))
        return sdpa(q, k, v, *args, **kwargs)

    monkeypatch.setattr(attention_core.F, "scaled_dot_product_attention", spy)
    grid, batch = (5, 3, 4), 2
    rows = batch * math.prod(grid)
    q, k, v = (torch.randn(rows, HEADS, HEAD_DIM, dtype=torch.float64) for _ in range(3))
    ids = torch.randint(0, 3, (batch, math.prod(grid)), generator=torch.Generator().manual_seed(5))
    for plan in (moga_plan(ids, 3), window_plan(batch, grid, (2,), (2, 2), 2, 2,
                                                torch.device("cpu"))):
        attention(q, k, v, plan=plan, backend=Backend.GPU,
                  gate=torch.rand(rows, dtype=torch.float64))
    assert len(layouts) > 3 and all(layouts)


def _routing(ids: torch.Tensor, confidence: float) -> Routing:
    return Routing(ids, torch.full(ids.shape, confidence, dtype=torch.float64))


def test_balance_loss_is_lowest_for_uniform_groups() -> None:
    groups, tokens, confidence = 4, 400, 0.6
    uniform = torch.arange(tokens) % groups
    loss_uniform = balance_loss(_routing(uniform, confidence), group_counts(uniform, groups), 0.1)
    # Uniform: alpha * M * sum_i (1/M) * (confidence/M) = alpha * confidence.
    assert loss_uniform.item() == pytest.approx(0.1 * confidence)
    assert balance_metric(group_counts(uniform, groups)) == pytest.approx(1.0)
    generator = torch.Generator().manual_seed(4)
    for _ in range(20):
        ids = torch.randint(0, groups, (tokens,), generator=generator)
        loss = balance_loss(_routing(ids, confidence), group_counts(ids, groups), 0.1)
        assert loss > loss_uniform
    previous = loss_uniform
    for share in (0.4, 0.6, 0.8, 1.0):  # more and more tokens collapse into group 0
        ids = torch.where(torch.arange(tokens) < share * tokens, 0, uniform)
        loss = balance_loss(_routing(ids, confidence), group_counts(ids, groups), 0.1)
        assert loss > previous
        previous = loss
    assert previous.item() == pytest.approx(0.1 * groups * confidence)
    assert balance_metric(group_counts(ids, groups)) == pytest.approx(groups)


def test_bf16_reference_and_packed_agree_with_float64() -> None:
    case = CASES["unequal-empty-single"]
    x, q, k, v, _ = _inputs(case)
    want, _ = _module(case, "reference")(x, q, k, v, case.grid, list(case.shot_starts))
    for backend in ("reference", "gpu", "auto"):
        layer = _module(case, backend).to(torch.bfloat16)
        out, _ = layer(*(t.bfloat16() for t in (x, q, k, v)), case.grid, list(case.shot_starts))
        assert out.dtype == torch.bfloat16
        error = (out.double() - want).norm() / want.norm()
        assert error < 2e-2, backend


def test_layer_rejects_bad_shapes_and_shots() -> None:
    layer = MoGASelfAttention(DIM, HEADS, 2)
    x, q = torch.randn(1, 8, DIM), torch.randn(1, 8, HEADS, HEAD_DIM)
    with pytest.raises(ValueError, match="grid"):
        layer(x, q, q, q, (3, 2, 2), [])
    with pytest.raises(ValueError, match="shot starts"):
        layer(x, q, q, q, (2, 2, 2), [2])
    with pytest.raises(ValueError, match="backend"):
        MoGASelfAttention(DIM, HEADS, 2, backend="triton")
