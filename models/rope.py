"""3D rotary position embedding over a (t, h, w) token grid, applied to q and k.

The head dimension is split into three even parts, one per axis; the spatial parts are equal and
the temporal part takes the rest (for head_dim 128: t 44, h 42, w 42). Channel pairs (2i, 2i+1)
are rotated by the angle of their axis position times that pair's frequency.
"""

from __future__ import annotations

import torch


def axis_dims(head_dim: int) -> tuple[int, int, int]:
    """Channels given to the (t, h, w) axes; each is even and they sum to ``head_dim``."""
    if head_dim % 2 or head_dim < 6:
        raise ValueError(f"head_dim must be even and at least 6, got {head_dim}")
    spatial = 2 * (head_dim // 6)
    return head_dim - 2 * spatial, spatial, spatial


def rope_angles(grid: tuple[int, int, int], head_dim: int, theta: float = 10000.0,
                device: torch.device | None = None) -> torch.Tensor:
    """Rotation angles for every token of ``grid`` in raster order: (T*H*W, head_dim // 2), fp32.

    Built per call rather than stored as a buffer: the grid changes with each sample's length
    and size, and a buffer would be cast to bf16 with the module, losing angle precision.
    """
    parts = []
    for size, dim in zip(grid, axis_dims(head_dim), strict=True):
        inv_freq = theta ** (-torch.arange(0, dim, 2, device=device, dtype=torch.float64) / dim)
        parts.append(torch.outer(torch.arange(size, device=device, dtype=torch.float64), inv_freq))
    t, h, w = grid
    angles = torch.cat([
        parts[0][:, None, None, :].expand(t, h, w, -1),
        parts[1][None, :, None, :].expand(t, h, w, -1),
        parts[2][None, None, :, :].expand(t, h, w, -1),
    ], dim=-1)
    return angles.reshape(t * h * w, head_dim // 2).float()


def apply_rope(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` (B, N, H, D) by ``angles`` (N, D/2); computed in fp32, returned in x's dtype."""
    cos = angles.cos()[None, :, None, :]
    sin = angles.sin()[None, :, None, :]
    pairs = x.float().unflatten(-1, (-1, 2))  # (B, N, H, D/2, 2)
    even, odd = pairs[..., 0], pairs[..., 1]
    rotated = torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1)
    return rotated.flatten(-2).to(x.dtype)
