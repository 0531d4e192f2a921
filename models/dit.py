"""MoGA-DiT: a Wan2.1-style video diffusion transformer with shot-level text conditioning.

Latents (B, C, F, H, W) are cut into 1x2x2 patches, giving N = T*Hh*Ww tokens in (t, h, w)
raster order. Each block is: adaLN-modulated visual self-attention (MoGA + STGA, or dense attention
as the baseline) with 3D RoPE on q and k, then cross-attention in which the tokens of each shot
attend only to the text tokens of that shot's caption, then an adaLN-modulated GELU MLP. All three
attentions go through ``attention_core.attention``; ``DiTConfig.attention_backend`` (a
``Backend``) picks how MoGA's grouped attention runs.

``DiTConfig.attention`` also selects the paper's ablations (Fig. 11): ``moga_only`` (the routed
groups alone) and ``stga_only`` (STGA windows + per-frame attention, no router); ``num_groups: 1``
with ``moga`` is Table 4's M = 1, full attention + STGA.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn
from torch.distributed import ProcessGroup
from torch.utils.checkpoint import checkpoint

from models import sequence_parallel as sp
from models.attention_core import Backend, attention
from models.moga import BRANCHES, MoGASelfAttention, MoGAStats
from models.rope import axis_dims, rope_angles, rope_cos_sin, rotate, upcast


class DiTConfig(BaseModel):
    """Model shape; the defaults are Wan2.1-1.3B's with MoGA M = 5."""

    model_config = ConfigDict(extra="forbid")

    in_channels: int = Field(16, ge=1, description="VAE latent channels (also the output).")
    dim: int = Field(1536, ge=8)
    num_layers: int = Field(30, ge=1)
    num_heads: int = Field(12, ge=1)
    ffn_dim: int = Field(8960, ge=1)
    text_dim: int = Field(4096, ge=1, description="Text encoder hidden size (umt5-xxl: 4096).")
    freq_dim: int = Field(256, ge=2, description="Sinusoidal timestep embedding size.")
    patch_size: tuple[int, int, int] = (1, 2, 2)
    attention: Literal["moga", "moga_only", "stga_only", "dense"] = Field(
        "moga", description="Self-attention: moga = mean(gated MoGA groups, STGA windows, "
        "per-frame); moga_only = the gated MoGA groups alone; stga_only = mean(STGA windows, "
        "per-frame), no router; dense = full attention (the baseline).")
    num_groups: int = Field(5, ge=1, description="MoGA groups M; 1 with attention moga is full "
                            "attention + STGA (the paper's Table 4 M = 1).")
    window_grid: tuple[int, int] = (2, 2)
    temporal_frames: int = Field(3, ge=1, description="Most latent frames in one STGA temporal "
                                 "group (not stated in the paper).")
    shot_context_frames: int = Field(2, ge=0, description="Latent frames of each adjacent shot "
                                     "added to STGA keys/values at a shot cut.")
    balance_alpha: float = Field(0.1, ge=0)
    attention_backend: Backend = Backend.AUTO
    compile_pointwise: bool = Field(True, description="On CUDA, torch.compile each block's "
                                    "norms, adaLN modulation and q/k RoPE into fused kernels "
                                    "(same math, fewer passes over memory); CPU runs them eagerly.")
    rope_theta: float = 10000.0
    eps: float = 1e-6

    @model_validator(mode="after")
    def _check_heads(self) -> DiTConfig:
        if self.dim % self.num_heads:
            raise ValueError(f"dim {self.dim} is not divisible by num_heads {self.num_heads}")
        axis_dims(self.dim // self.num_heads)  # raises for an unusable head size
        if self.patch_size[0] != 1:
            raise ValueError("patch_size[0] must be 1: shot boundaries are latent-frame indices")
        return self


@dataclass
class ShotText:
    """Per-shot caption embeddings: ``embeddings`` (B, S, L, text_dim), ``mask`` (B, S, L) bool."""

    embeddings: torch.Tensor
    mask: torch.Tensor


def shot_token_spans(shot_starts: list[int], num_frames: int, frame_tokens: int,
                     local: tuple[int, int] | None = None) -> list[tuple[int, int, int]]:
    """(shot, a, b): token range [a, b) of each shot, from latent-frame shot starts.

    Tokens are in t-major raster order, so a shot is one contiguous range. With ``local`` =
    (lo, hi), ranges are clipped to that slice, made relative to ``lo``, and empty ones dropped.
    """
    if not shot_starts or shot_starts[0] != 0 or sorted(set(shot_starts)) != shot_starts:
        raise ValueError(f"shot_starts must be increasing and start at 0, got {shot_starts}")
    if shot_starts[-1] >= num_frames:
        raise ValueError(f"shot start {shot_starts[-1]} is past the last latent frame {num_frames}")
    lo, hi = local or (0, num_frames * frame_tokens)
    ends = [*shot_starts[1:], num_frames]
    spans = [(s, max(a * frame_tokens, lo) - lo, min(b * frame_tokens, hi) - lo)
             for s, (a, b) in enumerate(zip(shot_starts, ends, strict=True))]
    return [span for span in spans if span[2] > span[1]]


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of timesteps in [0, 1000): (B,) -> (B, dim), fp32."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([args.cos(), args.sin()], dim=-1)


def modulated_norm(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None,
                   scale: torch.Tensor | None, shift: torch.Tensor | None,
                   eps: float) -> torch.Tensor:
    """LayerNorm of x (B, n, dim) in at least fp32, then ``* (1 + scale) + shift`` ((B, dim)
    each) where given; returned in x's dtype."""
    h = F.layer_norm(upcast(x), x.shape[-1:], weight, bias, eps)
    if scale is not None:
        h = h * (1 + upcast(scale)[:, None]) + upcast(shift)[:, None]
    return h.to(x.dtype)


def norm_rope(x: torch.Tensor, weight: torch.Tensor, eps: float, heads: int,
              rope: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
    """RMSNorm of x (B, n, dim) in at least fp32, split into heads (B, n, H, D), then RoPE where
    ``rope`` (``rope_cos_sin``) is given; returned in x's dtype."""
    h = F.rms_norm(upcast(x), x.shape[-1:], weight, eps).unflatten(-1, (heads, -1))
    return (h if rope is None else rotate(h, *rope)).to(x.dtype)


_COMPILED: dict[Callable, Callable] = {}


def pointwise(fn: Callable[..., torch.Tensor], x: torch.Tensor,
              compiled: bool) -> Callable[..., torch.Tensor]:
    """``fn`` as one torch.compile'd kernel where ``compiled`` and ``x`` is on CUDA, else as is.

    Eagerly each of these takes 4 to 10 passes over the block's activations in fp32, and as many
    again in backward; fused it is one bf16 read and write each way.
    """
    if not (compiled and x.is_cuda):
        return fn
    if fn not in _COMPILED:
        _COMPILED[fn] = torch.compile(fn)
    return _COMPILED[fn]


class SelfAttention(nn.Module):
    """q/k/v projections, q/k RMSNorm, 3D RoPE, then MoGA and/or STGA (``cfg.attention``'s
    branches) or dense attention."""

    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        self.num_heads, self.eps, self.compiled = cfg.num_heads, cfg.eps, cfg.compile_pointwise
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim)
        self.q_norm = nn.RMSNorm(cfg.dim, eps=cfg.eps)
        self.k_norm = nn.RMSNorm(cfg.dim, eps=cfg.eps)
        self.out = nn.Linear(cfg.dim, cfg.dim)
        self.moga: MoGASelfAttention | None = None
        if cfg.attention != "dense":
            self.moga = MoGASelfAttention(
                cfg.dim, cfg.num_heads, cfg.num_groups, window_grid=cfg.window_grid,
                shot_context_frames=cfg.shot_context_frames, balance_alpha=cfg.balance_alpha,
                backend=cfg.attention_backend, temporal_frames=cfg.temporal_frames,
                branches=BRANCHES[cfg.attention])

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor],
                grid: tuple[int, int, int], shot_starts: list[int], sp_group: ProcessGroup | None
                ) -> tuple[torch.Tensor, MoGAStats | None]:
        """x (B, n, dim), rope (``rope_cos_sin`` of n tokens) -> (B, n, dim) and MoGA stats
        (None without a router: dense or stga_only).

        n is this rank's slice of the N = prod(grid) tokens under sequence parallelism, else N.
        """
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        v = v.unflatten(-1, (self.num_heads, -1))  # (B, n, H, D)
        # Norm and rotate in fp32, then back to the compute dtype (bf16 under autocast), which
        # the fused attention kernels need.
        fn = pointwise(norm_rope, x, self.compiled)
        q = fn(q, self.q_norm.weight, self.eps, self.num_heads, rope)  # (B, n, H, D)
        k = fn(k, self.k_norm.weight, self.eps, self.num_heads, rope)
        if self.moga is not None:
            o, stats = self.moga(x, q, k, v, grid, shot_starts, sp_group=sp_group)
            return self.out(o.flatten(2)), stats
        if sp_group is not None:  # Ulysses: whole sequence, H/P heads inside attention
            q, k, v = (sp.seq_to_heads(t, sp_group) for t in (q, k, v))
        o = attention(q, k, v)
        if sp_group is not None:
            o = sp.heads_to_seq(o, sp_group)
        return self.out(o.flatten(2)), None


class ShotCrossAttention(nn.Module):
    """Cross-attention where the video tokens of shot s attend only to shot s's text tokens."""

    def __init__(self, dim: int, num_heads: int, eps: float, compiled: bool = False) -> None:
        super().__init__()
        self.num_heads, self.eps, self.compiled = num_heads, eps, compiled
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.q_norm = nn.RMSNorm(dim, eps=eps)
        self.k_norm = nn.RMSNorm(dim, eps=eps)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, text: torch.Tensor, mask: torch.Tensor,
                spans: list[tuple[int, int, int]]) -> torch.Tensor:
        """x (B, n, dim), text (B, S, L, dim), mask (B, S, L), (shot, a, b) spans tiling n
        -> (B, n, dim)."""
        k, v = self.kv(text).chunk(2, dim=-1)
        q = pointwise(norm_rope, x, self.compiled)(self.q(x), self.q_norm.weight, self.eps,
                                                   self.num_heads, None)  # (B, n, H, D)
        k = norm_rope(k, self.k_norm.weight, self.eps, self.num_heads, None)  # (B, S, L, H, D)
        v = v.unflatten(-1, (self.num_heads, -1))
        # Shots are contiguous token ranges, so one dense call per shot gives the block-diagonal
        # shot-to-caption pattern without an n x (S*L) mask.
        outs = [attention(q[:, a:b], k[:, s], v[:, s], key_mask=mask[:, s]) for s, a, b in spans]
        return self.out(torch.cat(outs, dim=1).flatten(2))


@dataclass
class BlockInputs:
    """What every block reads besides the hidden states (one forward pass's constants)."""

    e: torch.Tensor  # (B, 6, dim) timestep modulation
    rope: tuple[torch.Tensor, torch.Tensor]  # RoPE cos, sin (n, 1, head_dim) of this rank
    grid: tuple[int, int, int]  # whole-sequence token grid
    shot_starts: list[int]
    spans: list[tuple[int, int, int]]  # this rank's (shot, a, b) token spans
    context: torch.Tensor  # (B, S, L, dim) embedded captions
    mask: torch.Tensor  # (B, S, L)
    sp_group: ProcessGroup | None


class DiTBlock(nn.Module):
    """Modulated self-attention, shot cross-attention and MLP, each residual."""

    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.dim, eps=cfg.eps, elementwise_affine=False)
        self.self_attn = SelfAttention(cfg)
        self.norm2 = nn.LayerNorm(cfg.dim, eps=cfg.eps)
        self.cross_attn = ShotCrossAttention(cfg.dim, cfg.num_heads, cfg.eps,
                                             cfg.compile_pointwise)
        self.norm3 = nn.LayerNorm(cfg.dim, eps=cfg.eps, elementwise_affine=False)
        self.mlp = nn.Sequential(nn.Linear(cfg.dim, cfg.ffn_dim), nn.GELU(approximate="tanh"),
                                 nn.Linear(cfg.ffn_dim, cfg.dim))
        self.modulation = nn.Parameter(torch.randn(1, 6, cfg.dim) / cfg.dim**0.5)
        self.eps, self.compiled = cfg.eps, cfg.compile_pointwise

    def forward(self, x: torch.Tensor, inp: BlockInputs) -> tuple[torch.Tensor, MoGAStats | None]:
        """x (B, n, dim) -> (B, n, dim) and the layer's MoGA stats (None without a router)."""
        # The residual stream stays in x's dtype (bf16 under autocast): that halves the block
        # inputs activation checkpointing keeps (17 GB instead of 35 GB at 187k tokens, 30 layers).
        mod = (self.modulation + inp.e).to(x.dtype)
        shift1, scale1, gate1, shift2, scale2, gate2 = mod.unbind(1)
        norm = pointwise(modulated_norm, x, self.compiled)
        h = norm(x, None, None, scale1, shift1, self.eps)
        attn, stats = self.self_attn(h, inp.rope, inp.grid, inp.shot_starts, inp.sp_group)
        x = torch.addcmul(x, gate1[:, None], attn)
        h = norm(x, self.norm2.weight, self.norm2.bias, None, None, self.eps)
        x = x + self.cross_attn(h, inp.context, inp.mask, inp.spans)
        h = norm(x, None, None, scale2, shift2, self.eps)
        return torch.addcmul(x, gate2[:, None], self.mlp(h)), stats


class MoGADiT(nn.Module):
    """The full model: velocity prediction for rectified flow on VAE latents, per patch token."""

    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        out_dim = math.prod(cfg.patch_size) * cfg.in_channels
        # A linear map of flattened patches: the same function as Wan's strided Conv3d, and on
        # CPU far faster to differentiate.
        self.patch_embed = nn.Linear(out_dim, cfg.dim)
        self.text_embed = nn.Sequential(nn.Linear(cfg.text_dim, cfg.dim),
                                        nn.GELU(approximate="tanh"), nn.Linear(cfg.dim, cfg.dim))
        self.time_embed = nn.Sequential(nn.Linear(cfg.freq_dim, cfg.dim), nn.SiLU(),
                                        nn.Linear(cfg.dim, cfg.dim))
        self.time_proj = nn.Sequential(nn.SiLU(), nn.Linear(cfg.dim, 6 * cfg.dim))
        self.blocks = nn.ModuleList(DiTBlock(cfg) for _ in range(cfg.num_layers))
        self.head_norm = nn.LayerNorm(cfg.dim, eps=cfg.eps, elementwise_affine=False)
        self.head_modulation = nn.Parameter(torch.randn(1, 2, cfg.dim) / cfg.dim**0.5)
        self.head = nn.Linear(cfg.dim, out_dim)
        # A zero head makes the untrained model predict zero velocity: a calm start.
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.activation_checkpointing = False

    def forward(self, latents: torch.Tensor, timesteps: torch.Tensor, text: ShotText,
                shot_starts: list[int], sp_group: ProcessGroup | None = None
                ) -> tuple[torch.Tensor, list[MoGAStats]]:
        """latents (B, C, F, H, W), timesteps (B,) in [0, 1000), shot starts in latent frames
        -> velocity tokens (B, n, pt*ph*pw*C) (see :meth:`unpatchify`) and one MoGAStats per
        block (none without a router: dense, stga_only). n = N, or this rank's contiguous N/P
        slice with ``sp_group``."""
        if text.embeddings.shape[1] != len(shot_starts):
            raise ValueError(f"{text.embeddings.shape[1]} shot captions for "
                             f"{len(shot_starts)} shots")
        pt, ph, pw = self.cfg.patch_size
        grid = (latents.shape[2] // pt, latents.shape[3] // ph, latents.shape[4] // pw)
        x = self.patch_embed(self.patchify(latents))  # (B, N, dim)
        lo, hi = token_slice(x.shape[1], sp_group)
        x = x[:, lo:hi]
        t_emb = self.time_embed(timestep_embedding(timesteps, self.cfg.freq_dim).to(x.dtype))
        angles = rope_angles(grid, self.cfg.dim // self.cfg.num_heads, self.cfg.rope_theta,
                             x.device)[lo:hi]
        inp = BlockInputs(
            e=self.time_proj(t_emb).unflatten(1, (6, -1)), rope=rope_cos_sin(angles), grid=grid,
            shot_starts=list(shot_starts),
            spans=shot_token_spans(list(shot_starts), grid[0], grid[1] * grid[2], (lo, hi)),
            context=self.text_embed(text.embeddings), mask=text.mask, sp_group=sp_group)
        stats = []
        for block in self.blocks:
            if self.activation_checkpointing and torch.is_grad_enabled():
                x, s = checkpoint(block, x, inp, use_reentrant=False)
            else:
                x, s = block(x, inp)
            if s is not None:
                stats.append(s)
        shift, scale = (self.head_modulation + t_emb[:, None]).unbind(1)
        return self.head(self.head_norm(x) * (1 + scale[:, None]) + shift[:, None]), stats

    def patchify(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, C, F, H, W) -> (B, N, pt*ph*pw*C), the layout of :meth:`forward`'s output."""
        pt, ph, pw = self.cfg.patch_size
        b, c, f, h, w = latents.shape
        if f % pt or h % ph or w % pw:
            raise ValueError(f"latents {(f, h, w)} do not split into patches {(pt, ph, pw)}")
        x = latents.view(b, c, f // pt, pt, h // ph, ph, w // pw, pw)
        return x.permute(0, 2, 4, 6, 3, 5, 7, 1).reshape(b, -1, pt * ph * pw * c)

    def unpatchify(self, x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """(B, N, pt*ph*pw*C) -> (B, C, T*pt, Hh*ph, Ww*pw)."""
        pt, ph, pw = self.cfg.patch_size
        t, h, w = grid
        x = x.view(x.shape[0], t, h, w, pt, ph, pw, self.cfg.in_channels)
        return x.permute(0, 7, 1, 4, 2, 5, 3, 6).reshape(x.shape[0], -1, t * pt, h * ph, w * pw)


def token_slice(tokens: int, sp_group: ProcessGroup | None) -> tuple[int, int]:
    """This rank's contiguous [lo, hi) slice of the sequence (all of it without a group)."""
    if sp_group is None:
        return 0, tokens
    world, rank = torch.distributed.get_world_size(sp_group), torch.distributed.get_rank(sp_group)
    if tokens % world:
        raise ValueError(f"{tokens} tokens do not split over {world} sequence-parallel ranks")
    n = tokens // world
    return rank * n, (rank + 1) * n
