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


def rope_cos_sin(angles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and signed sin of ``angles`` (N, D/2), each (N, 1, D) to broadcast over heads, for
    ``rotate``: cos repeated for both channels of a pair, sin as (-sin, +sin). Computed once per
    forward pass and shared by every layer's q and k."""
    cos = angles.cos().repeat_interleave(2, dim=-1)
    sin = torch.stack([-angles.sin(), angles.sin()], dim=-1).flatten(-2)
    return cos[:, None], sin[:, None]


def upcast(x: torch.Tensor) -> torch.Tensor:
    """x in float32, or as it is when wider (float64)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` (B, N, H, D) by ``rope_cos_sin``'s (N, 1, D) pair; in at least fp32,
    returned in x's dtype.

    Written as ``x * cos + swap_pairs(x) * sin``, all full-width and elementwise: compiled, that
    is one pass over x each way (3.5 ms forward + backward at 187k tokens on an H100, against
    about 17 ms for the same rotation written with strided even/odd selects and a stack).
    """
    h = upcast(x)
    swapped = h.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)  # (x1, x0, x3, x2, ...)
    return (h * cos + swapped * sin).to(x.dtype)


def apply_rope(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` (B, N, H, D) by ``angles`` (N, D/2); in at least fp32, returned in x's dtype."""
    return rotate(x, *rope_cos_sin(angles))
