"""Wan2.1 transformer weights in and out of MoGA-DiT.

Two layouts load (from a folder, or a single weights file):

- diffusers ``WanTransformer3DModel``: ``config.json`` plus ``diffusion_pytorch_model.safetensors``
  or shards listed in ``diffusion_pytorch_model.safetensors.index.json``;
- the original Wan-Video/Wan2.1 ``WanModel`` keys (``patch_embedding``, ``text_embedding.0``,
  ``blocks.N.self_attn.q``, ``norm3``, ``ffn.0``, ``head.head``, ...) in ``.safetensors`` (sharded
  with the same index name) or ``.pth``, with or without its ``config.json``; a
  ``model.diffusion_model.`` prefix on every key is dropped.

Every tensor must map onto a MoGA-DiT tensor of the right shape and every MoGA-DiT tensor must
come from one; otherwise :class:`WanWeightsError` names the first missing, misshapen or
unexpected tensor. q/k/v fuse into ``qkv``, cross-attention k/v into ``kv``, and the Conv3d patch
embedding (dim, C, pt, ph, pw) becomes the Linear over :meth:`MoGADiT.patchify`'s flattened
(pt, ph, pw, C) patch. The head needs no permutation: Wan's head emits (pt, ph, pw, C) too.

MoGA's router is not in Wan. A folder written by :func:`export_diffusers` carries it in
``moga_router.safetensors``; otherwise it starts with bias 0 and weights drawn from
N(0, (0.01 / sqrt(dim))^2) by a seeded generator, so logits are about 0.01 for hidden states of
unit RMS. Routing is ``softmax(W x + b)``, a hard argmax group and gate = the top probability:

- the scores are then uniform to about 1%, so every token's MoGA output is scaled by the same
  gate, about 1/M, rather than by per-token noise, and the softmax is far from saturation, so
  the router learns at full speed from the first step;
- the argmax of random projections still splits tokens into M groups by the direction of their
  hidden states (like LSH attention's hashing: similar tokens, which attend to each other,
  share a group), so attention is sparse from the first step.

All-zero weights would give exact ties, and argmax sends every tied token to group 0: the MoGA
branch would be full attention over the whole clip (the quadratic cost MoGA exists to avoid)
and the balance metric would start at its worst, M. Group sizes depend on the data; the
balancing loss evens them out during the fine-tune.
"""

from __future__ import annotations

import json
import logging
import re
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import load_file, save_file

from models.dit import DiTConfig, MoGADiT

log = logging.getLogger(__name__)

Layout = Literal["diffusers", "original"]
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
INDEX_NAME = f"{WEIGHTS_NAME}.index.json"
ROUTER_NAME = "moga_router.safetensors"
ROUTER_LOGIT_STD = 0.01
WAN_ROPE_THETA = 10000.0
WAN_HEAD_DIM = 128  # every Wan2.1 model's; used only when no config.json gives num_heads
_PREFIX = "model.diffusion_model."
_BLOCK_RE = re.compile(r"(blocks\.\d+\.)(.+)")

# MoGA-DiT module or parameter -> its Wan tensors as (diffusers, original); several are fused.
_TOP = {
    "patch_embed": ("patch_embedding", "patch_embedding"),
    "text_embed.0": ("condition_embedder.text_embedder.linear_1", "text_embedding.0"),
    "text_embed.2": ("condition_embedder.text_embedder.linear_2", "text_embedding.2"),
    "time_embed.0": ("condition_embedder.time_embedder.linear_1", "time_embedding.0"),
    "time_embed.2": ("condition_embedder.time_embedder.linear_2", "time_embedding.2"),
    "time_proj.1": ("condition_embedder.time_proj", "time_projection.1"),
    "head_modulation": ("scale_shift_table", "head.modulation"),
    "head": ("proj_out", "head.head"),
}
_BLOCK = {
    "modulation": ("scale_shift_table", "modulation"),
    "self_attn.qkv": ("attn1.to_q attn1.to_k attn1.to_v", "self_attn.q self_attn.k self_attn.v"),
    "self_attn.q_norm": ("attn1.norm_q", "self_attn.norm_q"),
    "self_attn.k_norm": ("attn1.norm_k", "self_attn.norm_k"),
    "self_attn.out": ("attn1.to_out.0", "self_attn.o"),
    "norm2": ("norm2", "norm3"),  # the affine norm before cross-attention
    "cross_attn.q": ("attn2.to_q", "cross_attn.q"),
    "cross_attn.kv": ("attn2.to_k attn2.to_v", "cross_attn.k cross_attn.v"),
    "cross_attn.q_norm": ("attn2.norm_q", "cross_attn.norm_q"),
    "cross_attn.k_norm": ("attn2.norm_k", "cross_attn.norm_k"),
    "cross_attn.out": ("attn2.to_out.0", "cross_attn.o"),
    "mlp.0": ("ffn.net.0.proj", "ffn.0"),
    "mlp.2": ("ffn.net.2", "ffn.2"),
}
_LAYOUTS: tuple[Layout, Layout] = ("diffusers", "original")


class WanWeightsError(ValueError):
    """Weights that do not fit the model; the message names the tensor or config field."""


def source_keys(key: str, layout: Layout) -> tuple[str, ...]:
    """The Wan tensors MoGA-DiT's ``key`` is made of, in order; () for MoGA's own parameters."""
    match = _BLOCK_RE.fullmatch(key)
    prefix, rest, table = (match[1], match[2], _BLOCK) if match else ("", key, _TOP)
    if match and ".moga." in f".{rest}":
        return ()
    for name, names in table.items():
        if rest == name or rest.startswith(f"{name}."):
            leaf = rest[len(name):]
            return tuple(prefix + src + leaf for src in names[_LAYOUTS.index(layout)].split())
    raise WanWeightsError(f"MoGA-DiT tensor {key} has no Wan2.1 counterpart")


def detect_layout(state: dict[str, torch.Tensor]) -> Layout:
    """Which naming a Wan transformer state dict uses."""
    if any(k.startswith("condition_embedder.") for k in state):
        return "diffusers"
    if any(k.startswith(("text_embedding.", "time_embedding.")) for k in state):
        return "original"
    raise WanWeightsError("not a Wan2.1 transformer: no condition_embedder.* or text_embedding.* "
                          f"tensors (first key: {next(iter(state), None)})")


def wan_to_moga(state: dict[str, torch.Tensor], cfg: DiTConfig) -> dict[str, torch.Tensor]:
    """MoGA-DiT tensors (all but MoGA's own) from a checked Wan state dict of either layout."""
    layout = detect_layout(state)
    check_tensors(state, expected_wan_shapes(cfg, layout))
    out = {}
    for key in _meta_state(cfg):
        parts = [state[name] for name in source_keys(key, layout)]
        if key == "patch_embed.weight":  # (dim, C, pt, ph, pw) -> (dim, pt*ph*pw*C)
            out[key] = parts[0].permute(0, 2, 3, 4, 1).reshape(parts[0].shape[0], -1)
        elif parts:
            out[key] = torch.cat(parts) if len(parts) > 1 else parts[0]
    return out


def moga_to_wan(state: dict[str, torch.Tensor], cfg: DiTConfig,
                layout: Layout = "diffusers") -> dict[str, torch.Tensor]:
    """The Wan tensors of a MoGA-DiT state dict (MoGA's own parameters are left out)."""
    out = {}
    for key, tensor in state.items():
        names = source_keys(key, layout)
        if key == "patch_embed.weight":
            tensor = tensor.reshape(cfg.dim, *cfg.patch_size, cfg.in_channels)
            tensor = tensor.permute(0, 4, 1, 2, 3).contiguous()
        if len(names) > 1:  # fused: own copies, as safetensors refuses tensors sharing memory
            out.update(zip(names, (part.clone() for part in tensor.chunk(len(names))),
                           strict=True))
        elif names:
            out[names[0]] = tensor
    return out


def expected_wan_shapes(cfg: DiTConfig, layout: Layout) -> dict[str, torch.Size]:
    """Every Wan tensor a model of ``cfg`` needs, with its shape."""
    return {k: v.shape for k, v in moga_to_wan(_meta_state(cfg), cfg, layout).items()}


def check_tensors(state: dict[str, torch.Tensor], expected: dict[str, torch.Size]) -> None:
    """Raise naming the first missing, misshapen or unexpected tensor."""
    problems = []
    for key, shape in expected.items():
        if key not in state:
            problems.append(f"missing tensor {key} of shape {tuple(shape)}")
        elif state[key].shape != shape:
            problems.append(f"tensor {key} has shape {tuple(state[key].shape)}, "
                            f"the model needs {tuple(shape)}")
    problems += [f"unexpected tensor {key} of shape {tuple(state[key].shape)}"
                 for key in state if key not in expected]
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise WanWeightsError(problems[0] + more)


def _meta_state(cfg: DiTConfig) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return MoGADiT(cfg).state_dict()


def weight_files(path: Path) -> list[Path]:
    """The files holding the transformer's tensors: ``path`` itself, or those in the folder."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise WanWeightsError(f"{path}: no such file or folder")
    if (path / INDEX_NAME).is_file():
        weight_map = json.loads((path / INDEX_NAME).read_text())["weight_map"]
        return [path / name for name in sorted(set(weight_map.values()))]
    found = sorted(path.iterdir())
    files = [p for p in found if p.suffix == ".safetensors" and p.name != ROUTER_NAME]
    files = files or [p for p in found if p.suffix in (".pth", ".pt", ".bin")]
    if not files:
        raise WanWeightsError(f"{path}: no .safetensors, .pth, .pt or .bin weights")
    return files


def read_wan_state(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a Wan transformer checkpoint (file or folder), on the CPU."""
    state: dict[str, torch.Tensor] = {}
    for file in weight_files(Path(path)):
        if file.suffix == ".safetensors":
            part = load_file(file)
        else:
            part = torch.load(file, map_location="cpu", weights_only=True)
            if not isinstance(part, dict) or not all(torch.is_tensor(v) for v in part.values()):
                raise WanWeightsError(f"{file}: not a flat dict of tensors")
        if twice := state.keys() & part.keys():
            raise WanWeightsError(f"{file}: tensor {min(twice)} is also in another file")
        state.update(part)
    if state and all(k.startswith(_PREFIX) for k in state):
        state = {k[len(_PREFIX):]: v for k, v in state.items()}
    return state


def read_wan_config(path: Path) -> dict[str, Any] | None:
    """The folder's ``config.json``, or None (a single file or no config)."""
    config = Path(path) / "config.json"
    return json.loads(config.read_text()) if config.is_file() else None


def config_fields(meta: dict[str, Any]) -> dict[str, Any]:
    """DiTConfig fields from a diffusers or original Wan2.1 ``config.json``; refuses variants
    MoGA-DiT cannot represent (image conditioning, no cross-attention norm, other q/k norms)."""
    name = meta.get("_class_name", "WanTransformer3DModel")
    if name not in ("WanTransformer3DModel", "WanModel"):
        raise WanWeightsError(f"config.json: {name} is not a Wan2.1 transformer")
    try:
        fields = _diffusers_fields(meta) if "num_attention_heads" in meta else _wan_fields(meta)
    except KeyError as err:
        raise WanWeightsError(f"config.json has no {err.args[0]}") from None
    if fields.pop("out_channels") not in (None, fields["in_channels"]):
        raise WanWeightsError("config.json: output channels differ from input channels")
    return fields


def _require(meta: dict[str, Any], wanted: dict[str, Any]) -> None:
    for key, value in wanted.items():
        if meta.get(key, value) != value:
            raise WanWeightsError(f"config.json: {key} is {meta[key]!r}; MoGA-DiT needs {value!r}")


def _diffusers_fields(meta: dict[str, Any]) -> dict[str, Any]:
    _require(meta, {"image_dim": None, "added_kv_proj_dim": None, "cross_attn_norm": True,
                    "qk_norm": "rms_norm_across_heads"})
    heads = meta["num_attention_heads"]
    return dict(in_channels=meta["in_channels"], out_channels=meta.get("out_channels"),
                dim=heads * meta["attention_head_dim"], num_layers=meta["num_layers"],
                num_heads=heads, ffn_dim=meta["ffn_dim"], text_dim=meta["text_dim"],
                freq_dim=meta["freq_dim"], patch_size=tuple(meta["patch_size"]),
                eps=meta["eps"])


def _wan_fields(meta: dict[str, Any]) -> dict[str, Any]:
    _require(meta, {"model_type": "t2v", "cross_attn_norm": True, "qk_norm": True})
    return dict(in_channels=meta["in_dim"], out_channels=meta.get("out_dim"), dim=meta["dim"],
                num_layers=meta["num_layers"], num_heads=meta["num_heads"],
                ffn_dim=meta["ffn_dim"], text_dim=meta.get("text_dim", 4096),
                freq_dim=meta["freq_dim"], patch_size=tuple(meta.get("patch_size", (1, 2, 2))),
                eps=meta.get("eps", 1e-6))


def shape_fields(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """DiTConfig fields read off the tensors' shapes (all but num_heads and eps)."""
    layout = detect_layout(state)

    def shape(key: str) -> torch.Size:
        name = source_keys(key, layout)[0]
        if name not in state:
            raise WanWeightsError(f"missing tensor {name}")
        return state[name].shape

    dim, channels, *patch = shape("patch_embed.weight")
    blocks = {int(m[1]) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))}
    return dict(in_channels=channels, dim=dim, num_layers=len(blocks),
                ffn_dim=shape("blocks.0.mlp.0.weight")[0], text_dim=shape("text_embed.0.weight")[1],
                freq_dim=shape("time_embed.0.weight")[1], patch_size=tuple(patch))


def infer_config(path: Path, **overrides: Any) -> DiTConfig:
    """The DiTConfig of the Wan transformer at ``path``, then ``overrides`` (e.g. attention).

    From ``config.json`` when the folder has one, else from the tensor shapes; then num_heads is
    dim / 128 (Wan2.1's head size) unless given.
    """
    meta = read_wan_config(path) if Path(path).is_dir() else None
    fields = config_fields(meta) if meta else shape_fields(read_wan_state(path))
    if "num_heads" not in fields and "num_heads" not in overrides:
        if fields["dim"] % WAN_HEAD_DIM:
            raise WanWeightsError(f"{path}: no config.json gives num_heads and dim "
                                  f"{fields['dim']} is not a multiple of {WAN_HEAD_DIM}")
        fields["num_heads"] = fields["dim"] // WAN_HEAD_DIM
    return DiTConfig(**{**fields, **overrides})


def check_config(cfg: DiTConfig, fields: dict[str, Any], source: str) -> None:
    """Raise naming every model field that differs from the checkpoint's."""
    wrong = [f"model.{k} is {getattr(cfg, k)!r}, {source} has {v!r}"
             for k, v in fields.items() if getattr(cfg, k) != v]
    if wrong:
        raise WanWeightsError("; ".join(wrong))


def load_wan_weights(model: MoGADiT, path: Path, seed: int = 0) -> None:
    """Fill ``model`` with the Wan2.1 transformer at ``path`` (folder or file, either layout).

    MoGA's router comes from the folder's ``moga_router.safetensors`` if there is one, else it
    gets the initialisation of the module docstring (``seed`` picks the weights).
    """
    path = Path(path)
    meta = read_wan_config(path) if path.is_dir() else None
    try:
        if meta:
            check_config(model.cfg, config_fields(meta), "config.json")
        state = wan_to_moga(read_wan_state(path), model.cfg)
    except WanWeightsError as err:
        raise WanWeightsError(f"{path}: {err}") from None
    state.update(_router_state(model, path, seed))
    model.load_state_dict(state)
    log.info("loaded Wan2.1 weights from %s", path)


def _router_state(model: MoGADiT, path: Path, seed: int) -> dict[str, torch.Tensor]:
    own = {k: v for k, v in model.state_dict().items() if not source_keys(k, "diffusers")}
    saved = path / ROUTER_NAME
    if saved.is_file() and not own:
        log.warning("%s: the model has no router; %s is not used", path, ROUTER_NAME)
    if saved.is_file() and own:
        state = load_file(saved)
        try:
            check_tensors(state, {k: v.shape for k, v in own.items()})
        except WanWeightsError as err:
            raise WanWeightsError(f"{saved}: {err}") from None
        return state
    generator = torch.Generator().manual_seed(seed)
    std = ROUTER_LOGIT_STD / model.cfg.dim**0.5
    out = {}
    for key, tensor in own.items():
        if key.endswith("router.weight"):
            out[key] = torch.randn(tensor.shape, generator=generator) * std
        elif key.endswith("router.bias"):
            out[key] = torch.zeros(tensor.shape)
        else:
            raise WanWeightsError(f"no initialisation is defined for MoGA tensor {key}")
    return out


def diffusers_config(cfg: DiTConfig) -> dict[str, Any]:
    """The ``config.json`` of a ``WanTransformer3DModel`` with ``cfg``'s shape."""
    return {
        "_class_name": "WanTransformer3DModel", "_diffusers_version": version("diffusers"),
        "patch_size": list(cfg.patch_size), "num_attention_heads": cfg.num_heads,
        "attention_head_dim": cfg.dim // cfg.num_heads, "in_channels": cfg.in_channels,
        "out_channels": cfg.in_channels, "text_dim": cfg.text_dim, "freq_dim": cfg.freq_dim,
        "ffn_dim": cfg.ffn_dim, "num_layers": cfg.num_layers, "cross_attn_norm": True,
        "qk_norm": "rms_norm_across_heads", "eps": cfg.eps, "image_dim": None,
        "added_kv_proj_dim": None, "rope_max_seq_len": 1024, "pos_embed_seq_len": None,
    }


def export_diffusers(state: dict[str, torch.Tensor], cfg: DiTConfig, out_dir: Path) -> None:
    """Write a MoGA-DiT state dict as a diffusers ``WanTransformer3DModel`` folder.

    ``config.json`` and ``diffusion_pytorch_model.safetensors`` load with
    ``WanTransformer3DModel.from_pretrained``; MoGA's router goes to ``moga_router.safetensors``
    (MoGA-DiT names), which :func:`load_wan_weights` reads back.
    """
    if cfg.rope_theta != WAN_ROPE_THETA:
        raise WanWeightsError(f"model.rope_theta {cfg.rope_theta}: diffusers' Wan uses "
                              f"{WAN_ROPE_THETA}")
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    wan = moga_to_wan(tensors, cfg, "diffusers")
    check_tensors(wan, expected_wan_shapes(cfg, "diffusers"))
    router = {k: v for k, v in tensors.items() if not source_keys(k, "diffusers")}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(wan, out_dir / WEIGHTS_NAME, metadata={"format": "pt"})
    if router:
        moga = {"num_groups": cfg.num_groups, "window_grid": list(cfg.window_grid),
                "shot_context_frames": cfg.shot_context_frames}
        save_file(router, out_dir / ROUTER_NAME, metadata={"format": "pt",
                                                           "moga": json.dumps(moga)})
    (out_dir / "config.json").write_text(json.dumps(diffusers_config(cfg), indent=2) + "\n")
