"""FSDP2 training (``train.fsdp``) in 2 gloo processes on CPU, against the unsharded trainer on
the same data: DDP over the same 2 data ranks, and one process for FSDP x sequence parallelism
(sp = 2 leaves one data rank, so both see the same samples). The oracle runs are the trainer's
own, checked in test_trainer.py and test_sequence_parallel.py.

All distributed runs share one pair of processes (starting them costs more than the runs). A
resumed run is a new ``train`` call: new model, optimizer, EMA, stream and generator, with
everything else from the checkpoint folder, as after a kill.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from models.sampler import load_model
from models.train_config import load_train_config
from models.trainer import train
from tests.test_trainer import curated_for_training

WORLD = 2
TINY_YAML = Path(__file__).parents[1] / "configs" / "train-tiny.yaml"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[str]]:
    """Shards to train on and the overrides every run shares (tiny encoders, a latent cache)."""
    root = tmp_path_factory.mktemp("fsdp")
    out, overrides = curated_for_training(root)
    return str(out / "clips"), [*overrides, f"encoders.cache_dir={root / 'cache'}"]


def _worker(rank: int, init_file: str, data: str, jobs: list[dict[str, Any]]) -> None:
    """Run each job's ``train`` in this rank, in order; rank 0 writes the step records."""
    torch.set_num_threads(1)
    os.environ["WORLD_SIZE"] = str(WORLD)  # what init_ranks reads; the group is ours
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=WORLD)
    try:
        for job in jobs:
            records = train(load_train_config(TINY_YAML, job["overrides"]), data,
                            Path(job["out"]))
            if rank == 0:
                Path(job["records"]).write_text(json.dumps(records))
    finally:
        dist.destroy_process_group()


def _spawn(tmp: Path, data: str, jobs: dict[str, tuple[str, list[str]]]
           ) -> dict[str, list[dict[str, Any]]]:
    """Run ``{name: (run folder under tmp, overrides)}`` in order; each one's step records."""
    todo = [{"out": str(tmp / out), "overrides": overrides, "records": str(tmp / f"{name}.json")}
            for name, (out, overrides) in jobs.items()]
    mp.spawn(_worker, args=(str(tmp / "init"), data, todo), nprocs=WORLD)
    return {name: json.loads((tmp / f"{name}.json").read_text()) for name in jobs}


def _weights(path: Path, ema: bool = False) -> dict[str, torch.Tensor]:
    """Parameters (or EMA) of a checkpoint, a .pt file or (as ``curate sample`` reads it) an
    FSDP run's folder."""
    if path.is_dir():
        return dict(load_model(path, torch.device("cpu"), use_ema=ema)[0].state_dict())
    return torch.load(path, weights_only=False)["ema" if ema else "model"]


def _close(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-6, msg=name)


def test_fsdp_matches_ddp_resumes_exactly_and_runs_with_sp(setup: tuple[str, list[str]],
                                                            tmp_path: Path) -> None:
    data, common = setup
    # Two micro-batches a step: DDP skips the all-reduce of the first, FSDP reduce-scatters both.
    accum = ["train.grad_accum=2", "train.steps=2", "train.checkpoint_every=1"]
    sharded = [*common, *accum, "train.fsdp=true"]
    sp = [*common, "train.steps=2", "train.fsdp=true", "train.sequence_parallel=2"]
    runs = _spawn(tmp_path, data, {
        "ddp": ("ddp", [*common, *accum]), "fsdp": ("fsdp", sharded),
        "stopped": ("resumed", [*sharded, "train.steps=1"]), "resumed": ("resumed", sharded),
        "sp": ("sp", sp)})
    ddp, fsdp, resumed, with_sp = runs["ddp"], runs["fsdp"], runs["resumed"], runs["sp"]
    # (a) sharded and unsharded training agree, to fp32 rounding (reduction orders differ).
    for got, want in zip(fsdp, ddp, strict=True):
        for key in ("loss", "flow_loss", "balance_loss", "grad_norm"):
            assert got[key] == pytest.approx(want[key], rel=1e-5), key
        assert got["position"] == want["position"]
    checkpoints = tmp_path / "fsdp" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-00000001", "step-00000002"]
    final = checkpoints / "step-00000002"
    _close(_weights(final), _weights(tmp_path / "ddp" / "checkpoints" / "step-00000002.pt"))
    _close(_weights(final, ema=True),
           _weights(tmp_path / "ddp" / "checkpoints" / "step-00000002.pt", ema=True))

    # (b) stopped after its step-1 checkpoint, a run resumes and reaches step 2 bit for bit.
    assert [(r["step"], r["loss"], r["position"]) for r in resumed] == [
        (r["step"], r["loss"], r["position"]) for r in fsdp[1:]]
    again = tmp_path / "resumed" / "checkpoints" / "step-00000002"
    for ema in (False, True):
        a, b = _weights(final, ema), _weights(again, ema)
        assert all(torch.equal(a[k], b[k]) for k in a), f"ema={ema}"

    # (c) FSDP x Ulysses (sp = 2, one data rank) against one unsharded process on its data.
    one = train(load_train_config(TINY_YAML, sp[:-2]), data, tmp_path / "one")
    for got, want in zip(with_sp, one, strict=True):
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-5)
        assert got["group_sizes"] == want["group_sizes"]
    _close(_weights(tmp_path / "sp" / "checkpoints" / "step-00000002"),
           _weights(tmp_path / "one" / "checkpoints" / "step-00000002.pt"))
