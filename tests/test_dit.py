"""MoGA-DiT: RoPE, shot-level text conditioning, shapes, checkpointing, sequence parallelism."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from pydantic import ValidationError

from models.dit import DiTConfig, MoGADiT, ShotCrossAttention, ShotText, shot_token_spans
from models.rope import apply_rope, axis_dims, rope_angles

TINY = dict(in_channels=4, dim=32, num_layers=2, num_heads=2, ffn_dim=64, text_dim=16,
            freq_dim=32, num_groups=2)
GRID, SHOTS = (4, 2, 3), [0, 1, 3]  # 4 latent frames of 2x3 tokens after 1x2x2 patches


def _inputs(seed: int = 0, batch: int = 1) -> tuple[torch.Tensor, torch.Tensor, ShotText]:
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(batch, 4, GRID[0], 2 * GRID[1], 2 * GRID[2], generator=g)
    text = ShotText(torch.randn(batch, len(SHOTS), 5, 16, generator=g),
                    torch.tensor([True, True, True, False, False]).expand(batch, len(SHOTS), 5))
    return latents, torch.tensor([250.0] * batch), text


def _model(attention: str, seed: int = 0) -> MoGADiT:
    torch.manual_seed(seed)
    model = MoGADiT(DiTConfig(**TINY, attention=attention))
    torch.nn.init.normal_(model.head.weight, std=0.1)  # the zero head would hide everything
    return model


def test_rope_is_relative_in_every_axis() -> None:
    assert axis_dims(128) == (44, 42, 42) and sum(axis_dims(16)) == 16
    grid, head_dim = (6, 5, 7), 16
    angles = rope_angles(grid, head_dim).view(*grid, -1)
    q, k = torch.randn(2, head_dim, dtype=torch.float64)

    def score(p: tuple[int, int, int], r: tuple[int, int, int]) -> float:
        qr = apply_rope(q.view(1, 1, 1, -1), angles[p].view(1, -1).double())
        kr = apply_rope(k.view(1, 1, 1, -1), angles[r].view(1, -1).double())
        return float((qr * kr).sum())

    assert score((1, 2, 3), (0, 1, 1)) == pytest.approx(score((5, 3, 6), (4, 2, 4)), rel=1e-5)
    assert score((1, 2, 3), (0, 1, 1)) != pytest.approx(score((1, 2, 3), (0, 1, 2)), rel=1e-3)
    rotated = apply_rope(torch.randn(1, 210, 2, head_dim), rope_angles(grid, head_dim))
    assert rotated.shape == (1, 210, 2, head_dim)


def test_shot_token_spans_tile_and_clip() -> None:
    assert shot_token_spans(SHOTS, 4, 6) == [(0, 0, 6), (1, 6, 18), (2, 18, 24)]
    assert shot_token_spans(SHOTS, 4, 6, (12, 24)) == [(1, 0, 6), (2, 6, 12)]
    with pytest.raises(ValueError, match="start at 0"):
        shot_token_spans([1, 2], 4, 6)


def test_each_shot_sees_only_its_own_caption() -> None:
    """Changing shot 1's caption (or any masked-out token) moves shot 1's tokens only."""
    torch.manual_seed(0)
    layer = ShotCrossAttention(16, 2, 1e-6)
    spans = shot_token_spans(SHOTS, *GRID[:1], GRID[1] * GRID[2])
    x = torch.randn(2, 24, 16)
    text = torch.randn(2, 3, 5, 16, requires_grad=True)
    mask = torch.ones(2, 3, 5, dtype=torch.bool)
    mask[:, 2, 3:] = False
    out = layer(x, text, mask, spans)
    jac = torch.autograd.grad(out[:, 6:18].sum(), text, retain_graph=True)[0]  # shot 1's tokens
    assert jac[:, 1].abs().sum() > 0 and jac[:, [0, 2]].abs().sum() == 0
    moved = text.detach().clone()
    moved[:, 1] += 1.0
    moved[:, 2, 3:] += 5.0  # padding of shot 2's caption
    diff = (layer(x, moved, mask, spans) - out).abs().amax(dim=(0, 2))
    assert diff[6:18].min() > 1e-4
    assert diff[:6].max() == 0 and diff[18:].max() == 0


@pytest.mark.parametrize("attention", ["dense", "moga"])
def test_forward_shapes_stats_and_checkpointing(attention: str) -> None:
    model = _model(attention)
    latents, t, text = _inputs(batch=2)
    tokens, stats = model(latents, t, text, SHOTS)
    assert tokens.shape == (2, 24, 16)
    assert model.unpatchify(tokens, GRID).shape == latents.shape
    assert torch.equal(model.unpatchify(model.patchify(latents), GRID), latents)
    assert len(stats) == (2 if attention == "moga" else 0)
    for s in stats:
        assert sum(s.group_sizes) == 48 and torch.isfinite(s.balance_loss)
    loss = tokens.square().mean() + sum(s.balance_loss for s in stats)
    grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
    model.activation_checkpointing = True
    tokens_ckpt, stats_ckpt = model(latents, t, text, SHOTS)
    loss_ckpt = tokens_ckpt.square().mean() + sum(s.balance_loss for s in stats_ckpt)
    grads_ckpt = torch.autograd.grad(loss_ckpt, list(model.parameters()), allow_unused=True)
    assert torch.equal(tokens, tokens_ckpt)
    for g, gc in zip(grads, grads_ckpt, strict=True):
        assert (g is None and gc is None) or torch.allclose(g, gc, atol=1e-6)
    if attention == "moga":
        names = [name for name, _ in model.named_parameters()]
        assert grads[names.index("blocks.0.self_attn.moga.router.weight")].abs().sum() > 0


def test_config_errors_name_the_problem() -> None:
    with pytest.raises(ValidationError, match="not divisible by num_heads"):
        DiTConfig(dim=30, num_heads=4)
    with pytest.raises(ValidationError, match="nonsense"):
        DiTConfig(nonsense=1)
    with pytest.raises(ValueError, match="2 shot captions for 3 shots"):
        latents, t, text = _inputs()
        _model("dense")(latents, t, ShotText(text.embeddings[:, :2], text.mask[:, :2]), SHOTS)


def _sp_worker(rank: int, init_file: str, results: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        out = {}
        for attention in ("dense", "moga"):
            model = _model(attention)
            latents, t, text = _inputs()
            tokens, stats = model(latents, t, text, SHOTS, sp_group=dist.group.WORLD)
            balance = sum((s.balance_loss for s in stats), torch.zeros(()))
            grads = torch.autograd.grad(tokens.square().sum() + balance, model.parameters())
            for g in grads:  # each rank holds the gradient of its share: sum them
                dist.all_reduce(g)
            out[attention] = (tokens.detach(), [g.clone() for g in grads])
        torch.save(out, f"{results}.{rank}")
    finally:
        dist.destroy_process_group()


def test_sequence_parallel_matches_one_process(tmp_path: Path) -> None:
    mp.spawn(_sp_worker, args=(str(tmp_path / "init"), str(tmp_path / "out")), nprocs=2)
    ranks = [torch.load(tmp_path / f"out.{r}") for r in range(2)]
    for attention in ("dense", "moga"):
        model = _model(attention)
        latents, t, text = _inputs()
        tokens, stats = model(latents, t, text, SHOTS)
        balance = sum((s.balance_loss for s in stats), torch.zeros(()))
        grads = torch.autograd.grad(tokens.square().sum() + balance, model.parameters())
        torch.testing.assert_close(torch.cat([r[attention][0] for r in ranks], 1), tokens)
        for g, g_sp in zip(grads, ranks[0][attention][1], strict=True):
            torch.testing.assert_close(g_sp, g, atol=1e-5, rtol=1e-4)
