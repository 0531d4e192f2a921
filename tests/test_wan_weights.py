"""Wan2.1 weights into MoGA-DiT and back: a tiny diffusers ``WanTransformer3DModel`` with random
weights, saved with ``save_pretrained``, must give MoGA-DiT (dense attention) the same outputs."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch
from diffusers import WanTransformer3DModel
from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers
from safetensors.torch import save_file

from models.dit import MoGADiT, ShotText
from models.train_config import load_train_config
from models.trainer import build_run, save_checkpoint
from models.wan_weights import (
    INDEX_NAME,
    ROUTER_NAME,
    WanWeightsError,
    export_diffusers,
    infer_config,
    load_wan_weights,
)
from tests.tiny_encoders import build_tiny_encoders

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# 2 heads of 16 (RoPE axes t 8, h 4, w 4), text_dim 24 != dim 32, 3 layers.
WAN = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=4,
           out_channels=4, text_dim=24, freq_dim=16, ffn_dim=64, num_layers=3)
GRID = (3, 2, 3)  # latent frames, token rows, token columns
TINY_YAML = Path(__file__).parents[1] / "configs" / "train-tiny.yaml"

# Diffusers name fragments -> the original Wan-Video/Wan2.1 WanModel's (checked against
# diffusers' own converter below).
TO_ORIGINAL = [
    ("condition_embedder.time_embedder.linear_1", "time_embedding.0"),
    ("condition_embedder.time_embedder.linear_2", "time_embedding.2"),
    ("condition_embedder.text_embedder.linear_1", "text_embedding.0"),
    ("condition_embedder.text_embedder.linear_2", "text_embedding.2"),
    ("condition_embedder.time_proj", "time_projection.1"), ("attn1.", "self_attn."),
    ("attn2.", "cross_attn."), (".to_out.0.", ".o."), (".to_q.", ".q."), (".to_k.", ".k."),
    (".to_v.", ".v."), ("ffn.net.0.proj.", "ffn.0."), ("ffn.net.2.", "ffn.2."),
    (".norm2.", ".norm3."), (".scale_shift_table", ".modulation"), ("proj_out.", "head.head."),
]


def randomise(model: torch.nn.Module, seed: int) -> None:
    """Every parameter random (diffusers zero-inits some): norm scales near 1, the rest small."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            p.copy_(1 + 0.2 * noise if name.endswith("weight") and p.dim() == 1 else 0.2 * noise)


def to_original(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A diffusers Wan state dict renamed to the original WanModel keys."""
    out = {}
    for key, tensor in state.items():
        key = "head.modulation" if key == "scale_shift_table" else key
        for fragment, original in TO_ORIGINAL:
            key = key.replace(fragment, original)
        out[key] = tensor.clone()
    return out


def inputs(text_dim: int = 24) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    latents = torch.randn(2, 4, GRID[0], 2 * GRID[1], 2 * GRID[2], generator=g)
    return latents, torch.tensor([130.0, 870.0]), torch.randn(2, 7, text_dim, generator=g)


def moga_video(model: MoGADiT, latents: torch.Tensor, t: torch.Tensor,
               text: torch.Tensor) -> torch.Tensor:
    """MoGA-DiT's output for one shot captioned by ``text``, as (B, C, F, H, W)."""
    shot = ShotText(text[:, None], torch.ones(text.shape[0], 1, text.shape[1], dtype=torch.bool))
    tokens, _ = model(latents, t, shot, [0])
    return model.unpatchify(tokens, GRID)


@pytest.fixture(scope="module")
def wan(tmp_path_factory: pytest.TempPathFactory) -> tuple[WanTransformer3DModel, Path]:
    """The random tiny Wan model and its sharded ``save_pretrained`` folder."""
    model = WanTransformer3DModel(**WAN).eval()
    randomise(model, seed=0)
    folder = tmp_path_factory.mktemp("wan") / "transformer"
    model.save_pretrained(folder, max_shard_size="20KB")
    assert (folder / INDEX_NAME).is_file()
    return model, folder


@pytest.fixture(scope="module")
def loaded(wan: tuple[WanTransformer3DModel, Path]) -> MoGADiT:
    model = MoGADiT(infer_config(wan[1], attention="dense"))
    load_wan_weights(model, wan[1])
    return model.eval()


@torch.no_grad()
def test_diffusers_weights_give_the_same_output(wan: tuple[WanTransformer3DModel, Path],
                                                loaded: MoGADiT) -> None:
    cfg = loaded.cfg
    assert (cfg.dim, cfg.num_heads, cfg.num_layers, cfg.ffn_dim, cfg.text_dim, cfg.freq_dim,
            cfg.in_channels, cfg.patch_size) == (32, 2, 3, 64, 24, 16, 4, (1, 2, 2))
    latents, t, text = inputs()
    expected = wan[0](latents, t, text, return_dict=False)[0]
    got = moga_video(loaded, latents, t, text)
    assert got.shape == expected.shape == latents.shape
    print(f"max abs difference MoGA-DiT vs diffusers Wan: {(got - expected).abs().max():.3g}")
    assert expected.abs().max() > 0.1  # a real signal, not a zero head
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_original_layout_gives_the_same_weights(wan: tuple[WanTransformer3DModel, Path],
                                                loaded: MoGADiT, tmp_path: Path) -> None:
    state = wan[0].state_dict()
    original = to_original(state)
    assert convert_wan_transformer_to_diffusers(dict(original)).keys() == state.keys()
    torch.save({f"model.diffusion_model.{k}": v for k, v in original.items()}, tmp_path / "w.pth")
    folder = tmp_path / "Wan2.1-T2V-tiny"
    folder.mkdir()
    save_file(original, folder / "diffusion_pytorch_model.safetensors")
    (folder / "config.json").write_text(json.dumps({
        "_class_name": "WanModel", "model_type": "t2v", "dim": 32, "num_heads": 2,
        "num_layers": 3, "ffn_dim": 64, "freq_dim": 16, "in_dim": 4, "out_dim": 4,
        "text_dim": 24, "eps": 1e-6, "text_len": 512}))
    assert infer_config(folder, attention="dense") == loaded.cfg
    assert infer_config(tmp_path / "w.pth", num_heads=2, attention="dense") == loaded.cfg
    with pytest.raises(WanWeightsError, match="num_heads"):
        infer_config(tmp_path / "w.pth")  # dim 32 is no multiple of Wan's head size 128
    for source in (folder, tmp_path / "w.pth"):
        model = MoGADiT(loaded.cfg)
        load_wan_weights(model, source)
        got, want = model.state_dict(), loaded.state_dict()
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)


def test_missing_misshapen_and_unexpected_tensors_are_named(
        wan: tuple[WanTransformer3DModel, Path], loaded: MoGADiT, tmp_path: Path) -> None:
    state = {k: v.clone() for k, v in wan[0].state_dict().items()}
    cases = {
        "missing tensor blocks.1.attn2.to_k.weight of shape (32, 32)":
            lambda s: s.pop("blocks.1.attn2.to_k.weight"),
        "tensor blocks.2.ffn.net.0.proj.bias has shape (63,), the model needs (64,)":
            lambda s: s.update({"blocks.2.ffn.net.0.proj.bias": torch.zeros(63)}),
        "unexpected tensor blocks.0.attn2.add_k_proj.weight of shape (32, 8)":
            lambda s: s.update({"blocks.0.attn2.add_k_proj.weight": torch.zeros(32, 8)}),
    }
    for i, (message, damage) in enumerate(cases.items()):
        broken = dict(state)
        damage(broken)
        save_file(broken, tmp_path / f"broken{i}.safetensors")
        with pytest.raises(WanWeightsError, match=re.escape(message)):
            load_wan_weights(MoGADiT(loaded.cfg), tmp_path / f"broken{i}.safetensors")
    with pytest.raises(WanWeightsError, match="model.num_heads is 4, config.json has 2"):
        load_wan_weights(MoGADiT(loaded.cfg.model_copy(update={"num_heads": 4})), wan[1])


@torch.no_grad()
def test_export_round_trips_through_diffusers(loaded: MoGADiT, wan: tuple[WanTransformer3DModel,
                                              Path], tmp_path: Path) -> None:
    model = MoGADiT(loaded.cfg.model_copy(update={"attention": "moga", "num_groups": 3}))
    load_wan_weights(model, wan[1])
    randomise(model, seed=7)  # as a fine-tune would: every weight, the router too
    export_diffusers(model.state_dict(), model.cfg, tmp_path / "out")
    assert (tmp_path / "out" / ROUTER_NAME).is_file()
    back = WanTransformer3DModel.from_pretrained(tmp_path / "out").eval()
    dense = MoGADiT(model.cfg.model_copy(update={"attention": "dense"}))
    load_wan_weights(dense, tmp_path / "out")  # warns: a dense model has no router
    latents, t, text = inputs()
    torch.testing.assert_close(moga_video(dense.eval(), latents, t, text),
                               back(latents, t, text, return_dict=False)[0], atol=1e-5, rtol=0)
    again = MoGADiT(model.cfg)
    load_wan_weights(again, tmp_path / "out")  # the router comes back from moga_router
    want = model.state_dict()
    assert all(torch.equal(v, want[k]) for k, v in again.state_dict().items())


@torch.no_grad()
def test_router_starts_near_uniform_but_splits_tokens(loaded: MoGADiT,
                                                      wan: tuple[WanTransformer3DModel, Path]
                                                      ) -> None:
    model = MoGADiT(loaded.cfg.model_copy(update={"attention": "moga", "num_groups": 3}))
    load_wan_weights(model, wan[1])
    routers = [block.self_attn.moga.router for block in model.blocks]
    assert all(torch.equal(r.bias, torch.zeros(3)) and 0 < r.weight.abs().max() < 0.01
               for r in routers)
    latents, t, text = inputs()
    shot = ShotText(text[:, None], torch.ones(2, 1, 7, dtype=torch.bool))
    _, stats = model(latents, t, shot, [0])
    # Not every token in group 0, as all-zero weights (exact ties) would give.
    assert all(sum(size > 0 for size in s.group_sizes) >= 2 for s in stats)
    x = torch.randn(2, 18, 32)
    probs = torch.softmax(routers[0](x), dim=-1)
    assert (probs - 1 / 3).abs().max() < 0.02  # gates all about 1/M, to a few per cent


def test_training_starts_from_init_from_but_resumes_from_the_checkpoint(tmp_path: Path) -> None:
    vae, text = build_tiny_encoders(tmp_path / "encoders")
    wan = WanTransformer3DModel(**{**WAN, "text_dim": 32, "freq_dim": 32, "num_layers": 2})
    randomise(wan, seed=3)
    wan.save_pretrained(tmp_path / "wan")
    cfg = load_train_config(TINY_YAML, [f"encoders.vae_path={vae}",
                                        f"encoders.text_encoder_path={text}",
                                        f"model.init_from={tmp_path / 'wan'}"])
    run = build_run(cfg, tmp_path / "run", resume=True)
    reference = MoGADiT(cfg.model)
    load_wan_weights(reference, tmp_path / "wan")
    want = reference.state_dict()
    assert all(torch.equal(v, want[k]) for k, v in run.core.state_dict().items())
    assert all(torch.equal(v, want[k]) for k, v in run.ema.shadow.items())
    save_checkpoint(run)
    (tmp_path / "wan" / "diffusion_pytorch_model.safetensors").unlink()  # not read on resume
    resumed = build_run(cfg, tmp_path / "run", resume=True)
    assert all(torch.equal(v, want[k]) for k, v in resumed.core.state_dict().items())


@torch.no_grad()
def test_curate_export_writes_a_checkpoint_as_a_diffusers_folder(
        loaded: MoGADiT, wan: tuple[WanTransformer3DModel, Path], tmp_path: Path) -> None:
    from click.testing import CliRunner

    from curation.cli import main
    from models.train_config import TrainConfig

    cfg = TrainConfig.model_validate({"model": loaded.cfg.model_dump(mode="json"),
                                      "encoders": {"vae_path": "v", "text_encoder_path": "t"}})
    torch.save({"config": cfg.model_dump(mode="json"), "model": loaded.state_dict(),
                "ema": None}, tmp_path / "step-00000010.pt")
    done = CliRunner().invoke(main, ["export", str(tmp_path / "step-00000010.pt"),
                                     str(tmp_path / "wan")])
    assert done.exit_code == 0, done.output
    back = WanTransformer3DModel.from_pretrained(tmp_path / "wan").eval()
    latents, t, text = inputs()
    torch.testing.assert_close(back(latents, t, text, return_dict=False)[0],
                               wan[0](latents, t, text, return_dict=False)[0], atol=1e-5, rtol=0)
