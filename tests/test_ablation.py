"""The ablation switches (moga_only, stga_only, M = 1), the FLOP counter against brute-force
counts and PyTorch's own FLOP counter, the step log's counts, and benchmarks/ablation.py."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from pydantic import ValidationError
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from models.dit import DiTConfig, MoGADiT, ShotText
from models.flops import PAIR_KINDS, Counts, forward_counts, step_counts
from models.moga import BRANCHES, MoGASelfAttention
from models.train_config import load_train_config
from models.trainer import train
from tests.test_moga_attention import (
    CASES,
    DIM,
    HEADS,
    Case,
    _inputs,
    _masked,
    _oracle_static_masks,
)
from tests.test_shards_reader import write_clip_shards
from tests.tiny_encoders import build_tiny_encoders

ROOT = Path(__file__).parents[1]
TINY = dict(in_channels=4, dim=16, num_layers=2, num_heads=2, ffn_dim=32, text_dim=8,
            freq_dim=32, num_groups=3, temporal_frames=2)
GRID, SHOTS, TEXT_LEN = (5, 2, 4), [0, 2, 3], 5  # 5 latent frames of 2x4 tokens, 3 shots


def _layer(case: Case, backend: str, branches: tuple[str, ...]) -> MoGASelfAttention:
    """Like test_moga_attention's layer (router sends token i to group i), with ``branches``."""
    torch.manual_seed(0)
    layer = MoGASelfAttention(DIM, HEADS, case.num_groups, case.window_grid, 2, 0.1, backend,
                              temporal_frames=case.temporal_frames, branches=branches).double()
    if layer.router is not None:
        with torch.no_grad():
            layer.router.weight.normal_(0, 0.1)
            layer.router.weight[:, :case.num_groups] += 3 * torch.eye(case.num_groups)
    return layer


@pytest.mark.parametrize("backend", ["reference", "gpu"])
@pytest.mark.parametrize("name", list(CASES))
def test_branch_subsets_match_oracle_and_count_mask_pairs(name: str, backend: str) -> None:
    """moga_only = gated MoGA; stga_only = mean(window, frame), no router; the pairs are the
    True entries of the oracle's masks."""
    case = CASES[name]
    x, q, k, v, _ = _inputs(case)
    window, frame = _oracle_static_masks(case)
    for mode in ("moga_only", "stga_only"):
        layer = _layer(case, backend, BRANCHES[mode])
        out, stats = layer(x, q, k, v, case.grid, list(case.shot_starts))
        if mode == "stga_only":
            assert stats is None and layer.router is None
            want = [(_masked(q[b], k[b], v[b], window) + _masked(q[b], k[b], v[b], frame)) / 2
                    for b in range(case.batch)]
        else:
            probs = torch.softmax(x @ layer.router.weight.T + layer.router.bias, dim=-1)
            gate, ids = probs.max(dim=-1)
            same = [ids[b][:, None] == ids[b][None, :] for b in range(case.batch)]
            want = [_masked(q[b], k[b], v[b], same[b]) * gate[b][:, None, None]
                    for b in range(case.batch)]
            assert stats.pairs == sum(int(m.sum()) for m in same)
        torch.testing.assert_close(out, torch.stack(want), rtol=1e-10, atol=1e-12)
        plans = layer.static_plans(case.batch, case.grid, case.shot_starts, torch.device("cpu"))
        want_pairs = {"window": int(window.sum()), "frame": int(frame.sum())}
        assert {n: p.pairs for n, p in plans.items()} == {
            n: case.batch * want_pairs[n] for n in BRANCHES[mode] if n != "moga"}


def _dit(attention: str, **more: int) -> tuple[MoGADiT, torch.Tensor, torch.Tensor, ShotText]:
    """A tiny DiT, two samples, and captions with padding (masked keys still count)."""
    torch.manual_seed(0)
    model = MoGADiT(DiTConfig(**{**TINY, **more}, attention=attention))
    g = torch.Generator().manual_seed(1)
    latents = torch.randn(2, 4, GRID[0], 2 * GRID[1], 2 * GRID[2], generator=g)
    mask = torch.arange(TEXT_LEN).expand(2, len(SHOTS), TEXT_LEN) < 3
    text = ShotText(torch.randn(2, len(SHOTS), TEXT_LEN, 8, generator=g), mask)
    return model, latents, torch.tensor([100.0, 700.0]), text


@pytest.mark.parametrize("attention,groups", [("moga", 3), ("moga", 1), ("moga_only", 3),
                                              ("stga_only", 3), ("dense", 3)])
def test_flops_are_three_forwards_of_torch_flop_counter(attention: str, groups: int) -> None:
    """Every matmul of the forward (linears, router, attention) and nothing else, times 3."""
    model, latents, t, text = _dit(attention, num_groups=groups)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        _, stats = model(latents, t, text, SHOTS)  # SDPA's math kernel is matmuls torch counts
    counts = forward_counts(model, latents.shape, TEXT_LEN, SHOTS, stats)
    assert counts.flops == 3 * counter.get_total_flops()


@pytest.mark.parametrize("attention", ["moga", "moga_only", "stga_only", "dense"])
def test_pairs_match_brute_force(attention: str) -> None:
    """Per head, summed over layers and samples: dense N^2, cross N x text_len, frame
    T (HW)^2, window the STGA oracle's mask, moga the squared group sizes (per sample)."""
    model, latents, t, text = _dit(attention)
    counts = []
    for b in range(2):  # one sample at a time: group_sizes are per sample then
        _, stats = model(latents[b:b + 1], t[b:b + 1], ShotText(text.embeddings[b:b + 1],
                                                                 text.mask[b:b + 1]), SHOTS)
        counts.append(forward_counts(model, latents[b:b + 1].shape, TEXT_LEN, SHOTS, stats))
        assert sum(s.pairs for s in stats) == sum(n * n for s in stats for n in s.group_sizes)
    total = step_counts(counts, torch.device("cpu"), 1)
    layers, tokens, frame_tokens = TINY["num_layers"], math.prod(GRID), GRID[1] * GRID[2]
    window, _ = _oracle_static_masks(Case(GRID, tuple(SHOTS), (), 1, (2, 2), 2))
    has = dict.fromkeys(PAIR_KINDS, False) | {b: True for b in BRANCHES.get(attention, ())}
    want = {"dense": 2 * layers * tokens**2 * (attention == "dense"),
            "cross": 2 * layers * tokens * TEXT_LEN,
            "frame": 2 * layers * GRID[0] * frame_tokens**2 * has["frame"],
            "window": 2 * layers * int(window.sum()) * has["window"]}
    assert {k: total.pairs[k] for k in want} == want
    assert (total.pairs["moga"] > 0) == has["moga"]
    assert total.flops == sum(c.flops for c in counts)


def test_one_group_is_full_attention_plus_stga() -> None:
    """M = 1: the MoGA branch is full attention (N^2 pairs), the gate is 1, so the router gets
    no gradient, the balance metric is 1 and the balance loss the constant alpha."""
    model, latents, t, text = _dit("moga", num_groups=1)
    out, stats = model(latents, t, text, SHOTS)
    assert [s.pairs for s in stats] == [2 * math.prod(GRID) ** 2] * TINY["num_layers"]
    assert all(s.balance_metric == 1.0 and float(s.balance_loss.detach()) == pytest.approx(0.1)
               for s in stats)
    torch.nn.init.normal_(model.head.weight, std=0.1)
    out, stats = model(latents, t, text, SHOTS)
    (out.square().mean() + sum(s.balance_loss for s in stats)).backward()
    router = model.blocks[0].self_attn.moga.router
    assert router.weight.grad.abs().max() == 0
    assert model.blocks[0].self_attn.qkv.weight.grad.abs().max() > 0


def test_config_switches() -> None:
    names = {m: {n for n, _ in MoGADiT(DiTConfig(**TINY, attention=m)).named_parameters()}
             for m in ("moga", "moga_only", "stga_only", "dense")}
    router = "blocks.0.self_attn.moga.router.weight"
    assert router in names["moga"] and router in names["moga_only"]
    assert names["stga_only"] == names["dense"]  # no router: dense's parameters exactly
    moga = MoGADiT(DiTConfig(**{**TINY, "temporal_frames": 4, "shot_context_frames": 1})
                   ).blocks[0].self_attn.moga
    assert (moga.temporal_frames, moga.shot_context_frames) == (4, 1)
    with pytest.raises(ValidationError, match="attention"):
        DiTConfig(attention="stga")
    with pytest.raises(ValueError, match="branches"):
        MoGASelfAttention(DIM, HEADS, 2, branches=("moga", "global"))


def _sum_worker(rank: int, init_file: str, results: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        mine = [Counts({k: (rank + 1) * (i + 1) for i, k in enumerate(PAIR_KINDS)}, 2**60)]
        same = [Counts(dict.fromkeys(PAIR_KINDS, 7), 3 * 2**55 + 1)]
        out = [step_counts(mine, torch.device("cpu"), 1), step_counts(same, torch.device("cpu"), 2)]
        if rank == 0:
            Path(results).write_text(json.dumps([[c.pairs, c.flops] for c in out]))
    finally:
        dist.destroy_process_group()


def test_step_counts_sum_data_ranks_and_count_sequence_parallel_groups_once(
        tmp_path: Path) -> None:
    mp.spawn(_sum_worker, args=(str(tmp_path / "init"), str(tmp_path / "out.json")), nprocs=2)
    (summed, flops), (shared, shared_flops) = json.loads((tmp_path / "out.json").read_text())
    assert summed == {k: 3 * (i + 1) for i, k in enumerate(PAIR_KINDS)} and flops == 2**61
    assert shared == dict.fromkeys(PAIR_KINDS, 7) and shared_flops == 3 * 2**55  # float64


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("ablation")
    vae, text = build_tiny_encoders(root / "encoders")
    write_clip_shards(root / "out", samples_per_shard=2, count=2)
    return root / "out" / "clips", [f"encoders.vae_path={vae}",
                                    f"encoders.text_encoder_path={text}"]


@pytest.mark.parametrize("attention", ["moga", "stga_only"])
def test_step_log_has_attn_pairs_and_flops(shards: tuple[Path, list[str]], tmp_path: Path,
                                           attention: str) -> None:
    data, enc = shards
    cfg = load_train_config(ROOT / "configs" / "train-tiny.yaml",
                            [*enc, "train.steps=1", f"model.attention={attention}"])
    [record] = train(cfg, str(data), tmp_path)
    logged = json.loads((tmp_path / "train_log.jsonl").read_text().splitlines()[-1])
    assert logged["attn_pairs"] == record["attn_pairs"] and logged["flops"] == record["flops"]
    # 5 latent frames of 4x4 tokens, 2 layers, 16-token captions, one sample.
    pairs, layers = record["attn_pairs"], 2
    assert pairs["cross"] == layers * 80 * 16 and pairs["frame"] == layers * 5 * 16**2
    assert pairs["dense"] == 0 and pairs["window"] > 0
    assert (pairs["moga"] >= layers * 80**2 // 2) if attention == "moga" else pairs["moga"] == 0
    assert record["flops"] > 3 * 4 * 32 * sum(pairs.values())  # attention alone (dim 32) is less


def test_ablation_benchmark_smoke(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "ablation.py"), "--tiny",
                           "--steps", "5", "--json", str(tmp_path / "a.json")],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = json.loads((tmp_path / "a.json").read_text())["runs"]
    assert [r["run"] for r in runs] == ["moga a=0.1", "moga a=0"]
    for r in runs:
        assert r["steps"] == 5 and math.isfinite(r["eval_loss"]) and r["tflops_per_step"] > 0
        assert 1.0 <= r["balance_last"] <= r["balance_max"] <= 2.0  # M = 2
    assert "moga a=0.1" in done.stdout and "GFLOP/step" in done.stdout
