"""The DiT block's fused-pointwise helpers, the sampler's step, and the one-process SP emulation."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from models.dit import DiTConfig, MoGADiT, ShotText, modulated_norm, norm_rope, pointwise
from models.rope import apply_rope, rope_angles, rope_cos_sin
from models.sampler import euler_step, flow_times
from tests.test_dit import GRID, SHOTS, TINY, _inputs, _model

ROOT = Path(__file__).parents[1]


def test_helpers_compute_what_the_modules_do() -> None:
    """Same values as nn.LayerNorm / nn.RMSNorm + apply_rope, in float64; eager on CPU."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 24, 12, generator=g, dtype=torch.float64)
    scale, shift = torch.randn(2, 2, 12, generator=g, dtype=torch.float64)
    ln = torch.nn.LayerNorm(12, eps=1e-6, elementwise_affine=False).double()
    want = ln(x) * (1 + scale[:, None]) + shift[:, None]
    assert torch.allclose(modulated_norm(x, None, None, scale, shift, 1e-6), want)
    affine = torch.nn.LayerNorm(12, eps=1e-6).double()
    torch.nn.init.normal_(affine.weight)
    torch.nn.init.normal_(affine.bias)
    assert torch.allclose(modulated_norm(x, affine.weight, affine.bias, None, None, 1e-6),
                          affine(x))
    rms = torch.nn.RMSNorm(12, eps=1e-6).double()
    torch.nn.init.normal_(rms.weight)
    angles = rope_angles(GRID, 6).double()
    want = apply_rope(rms(x).view(2, 24, 2, 6), angles)
    got = norm_rope(x, rms.weight, 1e-6, 2, rope_cos_sin(angles))
    assert torch.allclose(got, want)
    assert pointwise(norm_rope, x, compiled=True) is norm_rope  # CPU never compiles
    assert norm_rope(x.float(), rms.weight.float(), 1e-6, 2, None).dtype == torch.float32


def test_rotation_is_the_complex_product_of_each_channel_pair() -> None:
    """Pairs (2i, 2i+1) as complex numbers, times exp(i * angle): Wan2.1's rope_apply."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 210, 2, 16, generator=g, dtype=torch.float64)
    angles = rope_angles((6, 5, 7), 16).double()
    want = torch.view_as_real(torch.view_as_complex(x.unflatten(-1, (-1, 2)))
                              * torch.polar(torch.ones_like(angles), angles)[:, None])
    assert torch.allclose(apply_rope(x, angles), want.flatten(-2))


def test_compile_pointwise_changes_nothing_on_cpu() -> None:
    latents, t, text = _inputs()
    out = {}
    for compiled in (True, False):
        torch.manual_seed(0)
        model = MoGADiT(DiTConfig(**TINY, attention="moga", compile_pointwise=compiled))
        torch.nn.init.normal_(model.head.weight, std=0.1)
        out[compiled] = model(latents, t, text, SHOTS)[0]
    assert torch.equal(out[True], out[False])


def test_euler_step_with_guidance_runs_two_passes() -> None:
    model = _model("dense")
    latents, _, text = _inputs()
    empty = ShotText(torch.zeros_like(text.embeddings), text.mask)
    ts = flow_times(50, 5.0)
    assert ts[0] == 1 and ts[-1] == 0 and len(ts) == 51
    guided = euler_step(model, latents, ts[0], ts[1], text, empty, SHOTS, 5.0)
    plain = euler_step(model, latents, ts[0], ts[1], text, empty, SHOTS, 1.0)
    assert guided.shape == latents.shape and not torch.equal(guided, plain)


@pytest.mark.parametrize("attention", ["dense", "moga"])
def test_loopback_group_gives_rank_zero_shapes(attention: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """scaling.py --emulate-sp: one process sees rank 0 of 2's shapes, counts and gradients."""
    for name in ("get_world_size", "get_rank", "all_to_all_single", "all_gather", "all_reduce"):
        monkeypatch.setattr(dist, name, getattr(dist, name))  # restored after the test
    spec = importlib.util.spec_from_file_location("scaling", ROOT / "benchmarks" / "scaling.py")
    scaling = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scaling)
    group = scaling.LoopbackGroup(2)
    model = _model(attention)
    latents, t, text = _inputs()
    tokens, stats = model(latents, t, text, SHOTS, sp_group=group)
    assert tokens.shape == (1, 12, 16)  # half of the 24 tokens
    for s in stats:
        assert sum(s.group_sizes) == 24  # counted over both (emulated) ranks
    tokens.square().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
