"""FSDP2 (``fully_shard``) for MoGA-DiT, composed with Ulysses sequence parallelism and
activation checkpointing (``train.fsdp``).

Mesh: one 1-D DeviceMesh over all ``dp x sp`` ranks; every parameter, its gradient and its AdamW
state are split into ``world`` shards. That composes with Ulysses because sharding is storage
only: before a block runs forward (and again before its backward, also when activation
checkpointing recomputes it) FSDP all-gathers the block's full parameters, so all ranks of a
sequence-parallel group compute with identical full weights, as Ulysses needs. Gradients: the
backward of each rank gives the gradient of its tokens' loss (the Ulysses all-to-alls carry the
other sequence ranks' contributions back), and FSDP's reduce-scatter averages over all ``world``
ranks, which is exactly the all-reduce mean DDP does in the unsharded trainer (``flow_loss``
scales the balance loss by the sp size for that reason), then keeps each rank's shard. So the
update equals DDP's while the model state is divided by ``world``, not by ``dp``: with sp = 8 on
8 GPUs, a (dp, sp) mesh sharding over dp alone would not shard at all, and HSDP (replicate over
one axis) would save less for no gain on one NVLink node.

Units: each DiTBlock, then the root (embeddings, time projection, head). Blocks call through
``torch.utils.checkpoint`` (``MoGADiT.activation_checkpointing``); FSDP's hooks sit inside the
checkpointed call and skip their all-gather during the recompute, for which the pre-backward
hook has already gathered the block.

Precision: with ``train.precision: bf16`` on GPU, ``MixedPrecisionPolicy(param_dtype=bf16,
reduce_dtype=fp32)``: all-gathers and compute in bf16, the reduce-scatter in fp32 into fp32
gradient shards, AdamW on fp32 parameter shards. Forward inputs are not cast: timesteps, RoPE
angles and the fp32 norms stay as the model computes them, and autocast does the rest as in the
unsharded trainer. On CPU, or with fp32, everything is fp32.

Initialisation: the model is built on the meta device, sharded, then materialised on the device;
rank 0 alone builds the full initial weights on the CPU (the seeded init of the unsharded
trainer, then ``model.init_from``'s Wan weights) and they are broadcast one tensor at a time. So
no GPU holds a full copy and only one host process does.

Gradient accumulation reduce-scatters every micro-batch into the sharded gradients; skipping it
would keep the full unsharded gradients between micro-batches.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

from models.dit import MoGADiT
from models.train_config import TrainConfig
from models.wan_weights import load_wan_weights


def fsdp_mesh(device: torch.device) -> DeviceMesh:
    """A 1-D mesh over all ranks; a one-process group first if there is none (single GPU)."""
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1,
                                device_id=device if device.type == "cuda" else None)
    return init_device_mesh(device.type, (dist.get_world_size(),), mesh_dim_names=("fsdp",))


def mixed_precision(device: torch.device, precision: str) -> MixedPrecisionPolicy:
    """bf16 gathers and compute with fp32 reduction on GPU with bf16, else all fp32."""
    if device.type == "cuda" and precision == "bf16":
        return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32,
                                    cast_forward_inputs=False)
    return MixedPrecisionPolicy(cast_forward_inputs=False)


def shard_model(core: MoGADiT, device: torch.device, precision: str) -> None:
    """Shard ``core`` in place: each block, then the root; parameters move to ``device``."""
    mesh = fsdp_mesh(device)
    policy = mixed_precision(device, precision)
    last = len(core.blocks) - 1
    for i, block in enumerate(core.blocks):
        # The last block's backward comes right after its forward: keep it gathered.
        fully_shard(block, mesh=mesh, mp_policy=policy, reshard_after_forward=i < last)
    fully_shard(core, mesh=mesh, mp_policy=policy)


def build_sharded_model(cfg: TrainConfig, device: torch.device, initialize: bool) -> MoGADiT:
    """MoGA-DiT sharded over all ranks; with ``initialize``, holding the unsharded trainer's
    initial weights (seeded by the caller, then ``cfg.model.init_from``), else uninitialised
    (for a checkpoint to fill)."""
    full: dict[str, torch.Tensor] = {}
    if initialize and (not dist.is_initialized() or dist.get_rank() == 0):
        model = MoGADiT(cfg.model)  # on the CPU, like the unsharded trainer's init
        if cfg.model.init_from:
            load_wan_weights(model, Path(cfg.model.init_from))
        full = model.state_dict()
    with torch.device("meta"):
        core = MoGADiT(cfg.model)
    shard_model(core, device, cfg.train.precision)
    core.to_empty(device=device)
    if initialize:
        set_model_state_dict(core, full, options=StateDictOptions(full_state_dict=True,
                                                                  broadcast_from_rank0=True))
    return core
