"""MoGA attention and MoGA-DiT.

- ``attention_core``: ``attention``, the one entry point of every attention in the models: dense
  (the DiT's baseline self-attention and its per-shot cross-attention) or grouped by a
  ``SegmentPlan``, the latter on a ``Backend``: REFERENCE (CPU, any dtype), GPU (packed, cuDNN
  first) or AUTO.
- ``grouped_autograd``: ``grouped_mean``, the MoGA layer's three groupings on fused kernels in
  autograd nodes that save no gathered copies (its memory stays near dense attention's).
- ``router``, ``stga``, ``moga``: Mixture-of-Groups Attention (a linear router sends each token
  to one of M groups; attention runs inside each group) beside static local attention (spatial
  windows x temporal groups that respect shot cuts, and per-frame attention).
- ``sequence_parallel``: Ulysses all-to-all for long sequences.
- ``rope``, ``dit``: a Wan2.1-style video DiT with 3D RoPE, adaLN and per-shot text
  cross-attention.
- ``wan_weights``: Wan2.1 transformer weights (diffusers or original layout) into MoGA-DiT, and
  MoGA-DiT back out as a diffusers folder.
- ``encoders``, ``shards``: VAE / text encoder loading with an on-disk cache, and the reader of
  the ``curate run`` shards.
- ``trainer``, ``checkpoint``, ``sampler``, ``train_cli``: rectified-flow training with exact
  resume, a sampler that writes an mp4, and the ``curate train`` / ``curate sample`` commands.
- ``flops``: each step's attention query-key pairs per branch and training FLOPs, for the log.
- ``fsdp``, ``dcp_checkpoint``: FSDP2 sharding over all ranks (``train.fsdp``, for 14B) and its
  torch.distributed.checkpoint folders.
"""
