"""Ulysses sequence parallelism: 2 gloo processes on CPU against one process on the whole sequence.

The oracle is the same layer run in one process, itself checked against dense attention in
test_moga_attention.py.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from models.moga import MoGASelfAttention

WORLD, DIM, HEADS, HEAD_DIM, GROUPS = 2, 8, 4, 4, 3
GRID, SHOTS, BATCH = (4, 2, 3), [0, 3], 2  # 24 tokens: 12 per rank, a cut inside rank 1's slice
BACKENDS = ("reference", "gpu")


def _setup(backend: str) -> tuple[MoGASelfAttention, list[torch.Tensor]]:
    torch.manual_seed(0)
    layer = MoGASelfAttention(DIM, HEADS, GROUPS, backend=backend).double()
    tokens = math.prod(GRID)
    x = torch.randn(BATCH, tokens, DIM, dtype=torch.float64)
    qkv = [torch.randn(BATCH, tokens, HEADS, HEAD_DIM, dtype=torch.float64) for _ in range(3)]
    grad_out = torch.randn(BATCH, tokens, HEADS, HEAD_DIM, dtype=torch.float64)
    return layer, [x, *qkv, grad_out]


def _run(layer: MoGASelfAttention, tensors: list[torch.Tensor],
         group: dist.ProcessGroup | None) -> dict[str, torch.Tensor]:
    """Output, balance loss and gradients of (out * grad_out).sum() + balance loss."""
    x, q, k, v, grad_out = tensors
    for t in (q, k, v):
        t.requires_grad_()
    out, stats = layer(x, q, k, v, GRID, SHOTS, sp_group=group)
    grads = torch.autograd.grad((out * grad_out).sum() + stats.balance_loss,
                                [q, k, v, layer.router.weight])
    return {"out": out.detach(), "loss": stats.balance_loss.detach(),
            "sizes": torch.tensor(stats.group_sizes), "dq": grads[0], "dk": grads[1],
            "dv": grads[2], "drouter": grads[3]}


def _worker(rank: int, init_file: str, results: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=WORLD)
    try:
        per_backend = {}
        for backend in BACKENDS:
            layer, tensors = _setup(backend)
            local = tokens_slice(rank, tensors[0].shape[1])
            shard = [t[:, local].clone() for t in tensors]
            per_backend[backend] = _run(layer, shard, dist.group.WORLD)
        torch.save(per_backend, f"{results}.{rank}")
    finally:
        dist.destroy_process_group()


def tokens_slice(rank: int, tokens: int) -> slice:
    """This rank's contiguous slice of the sequence."""
    size = tokens // WORLD
    return slice(rank * size, (rank + 1) * size)


def test_two_ranks_match_one_process(tmp_path: Path) -> None:
    results = str(tmp_path / "results")
    mp.spawn(_worker, args=(str(tmp_path / "init"), results), nprocs=WORLD)
    ranks = [torch.load(f"{results}.{r}") for r in range(WORLD)]
    for backend in BACKENDS:
        layer, tensors = _setup(backend)
        want = _run(layer, tensors, None)
        tokens = tensors[0].shape[1]
        for rank, got in enumerate(r[backend] for r in ranks):
            local = tokens_slice(rank, tokens)
            for name in ("out", "dq", "dk", "dv"):
                torch.testing.assert_close(got[name], want[name][:, local], rtol=1e-10,
                                           atol=1e-12, msg=f"{backend} rank {rank} {name}")
            assert torch.equal(got["sizes"], want["sizes"])
        # Each rank returns its share of the loss and of the router gradient; they sum up.
        for name in ("loss", "drouter"):
            total = sum(r[backend][name] for r in ranks)
            torch.testing.assert_close(total, want[name], rtol=1e-10, atol=1e-12)
