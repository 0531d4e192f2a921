"""The tiny MoGA-DiT trained on shards in ``curate run``'s format, with tiny encoders."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from models.dit import MoGADiT, ShotText
from models.encoders import Encoders
from models.moga import MoGAStats
from models.train_cli import sample_command, train_command
from models.train_config import TrainConfig, load_train_config
from models.trainer import flow_loss, model_balance_loss, train
from tests.test_shards_reader import LATENT_STARTS, write_clip_shards
from tests.tiny_encoders import build_tiny_encoders

TINY_YAML = Path(__file__).parents[1] / "configs" / "train-tiny.yaml"


def curated_for_training(root: Path) -> tuple[Path, list[str]]:
    """A small curated output folder under ``root`` and the --set overrides pointing at tiny
    encoders built there."""
    vae, text = build_tiny_encoders(root / "encoders")
    write_clip_shards(root / "out", samples_per_shard=2, count=4)
    return root / "out", [f"encoders.vae_path={vae}", f"encoders.text_encoder_path={text}"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """Curated output folder and the --set overrides pointing at the tiny encoders."""
    return curated_for_training(tmp_path_factory.mktemp("train"))


def _config(overrides: list[str], *more: str) -> TrainConfig:
    return load_train_config(TINY_YAML, [*overrides, *more])


def test_training_logs_and_resumes_bit_for_bit(setup: tuple[Path, list[str]],
                                               tmp_path: Path) -> None:
    out, enc = setup
    full = train(_config(enc, "train.steps=6", "train.checkpoint_every=3"), str(out / "clips"),
                 tmp_path / "a")
    for r in full:
        assert math.isfinite(r["loss"]) and r["tokens_per_s"] > 0
        assert 1.0 <= r["balance_metric"] <= r["balance_metric_max"] <= 2.0  # M = 2
        assert 0 < r["balance_loss"] <= 0.1 * 2  # alpha * M bounds it
        assert sum(r["group_sizes"]) == 5 * 4 * 4
    assert [p.name for p in sorted((tmp_path / "a" / "checkpoints").iterdir())] == [
        "step-00000003.pt", "step-00000006.pt"]
    train(_config(enc, "train.steps=3"), str(out / "clips"), tmp_path / "b")
    resumed = train(_config(enc, "train.steps=6"), str(out / "clips"), tmp_path / "b")
    assert [r["step"] for r in resumed] == [4, 5, 6]
    assert [r["loss"] for r in resumed] == [r["loss"] for r in full[3:]]
    assert [r["position"] for r in resumed] == [r["position"] for r in full[3:]]
    a = torch.load(tmp_path / "a" / "checkpoints" / "step-00000006.pt", weights_only=False)
    b = torch.load(tmp_path / "b" / "checkpoints" / "step-00000006.pt", weights_only=False)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert all(torch.equal(a["ema"][k], b["ema"][k]) for k in a["ema"])


def test_loss_on_a_fixed_batch_falls_when_overfitting(setup: tuple[Path, list[str]]) -> None:
    out, enc_overrides = setup
    cfg = _config(enc_overrides)
    enc = Encoders(cfg.encoders, torch.device("cpu"))
    latents = enc.vae.encode(torch.rand(1, 3, 17, 64, 64) * 2 - 1)
    text = enc.captions(["a red car", "a man smiles", "waves on rocks"])
    torch.manual_seed(0)
    model = MoGADiT(cfg.model)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)

    def fixed_loss() -> float:
        with torch.no_grad():
            g = torch.Generator().manual_seed(123)
            return float(flow_loss(model, model, latents, text, LATENT_STARTS, cfg.flow, g)[0])

    before = fixed_loss()
    g = torch.Generator().manual_seed(0)
    balances = []
    for _ in range(25):
        loss, info = flow_loss(model, model, latents, text, LATENT_STARTS, cfg.flow, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        balances.append(float(info["balance_loss"]))
    assert fixed_loss() < 0.6 * before
    assert max(balances) <= 0.2


def test_cli_trains_with_null_captions_and_cache_then_samples(
        setup: tuple[Path, list[str]], tmp_path: Path) -> None:
    _, enc = setup
    write_clip_shards(tmp_path / "nocap", count=2, captions=False)
    cache = tmp_path / "cache"
    args = ["-c", str(TINY_YAML), "--data", str(tmp_path / "nocap" / "clips_index"),
            "--out", str(tmp_path / "run"), "--set", "train.steps=3",
            "--set", f"encoders.cache_dir={cache}", *[a for o in enc for a in ("--set", o)]]
    result = CliRunner().invoke(train_command, args)
    assert result.exit_code == 0, result.output
    assert len(list((cache / "latents").rglob("*.pt"))) == 2
    assert len(list((cache / "text").rglob("*.pt"))) == 1  # every shot caption is ''
    video = tmp_path / "sample.mp4"
    result = CliRunner().invoke(sample_command, [
        str(tmp_path / "run" / "checkpoints" / "step-00000003.pt"), "-p", "a red car",
        "-p", "waves on rocks", "-o", str(video), "--steps", "3"])
    assert result.exit_code == 0, result.output
    import decord

    reader = decord.VideoReader(str(video))
    assert len(reader) == 17 and reader[0].shape == (64, 64, 3)


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    data = yaml.safe_load(TINY_YAML.read_text())
    data["optim"]["learning_rate"] = 1.0
    config.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(train_command, ["-c", str(config), "--data", "x", "--out", "y",
                                                "--set", "train.steps=0"])
    assert result.exit_code == 2
    assert "optim.learning_rate: Extra inputs" in result.output
    assert "train.steps: Input should be greater than or equal to 1" in result.output


STAGES = "stages=[{until_step: 2, data: {max_frames: 9, min_frames: 9}}, {}]"


def test_stages_switch_windows_at_their_step_and_resume_past_it(
        setup: tuple[Path, list[str]], tmp_path: Path) -> None:
    out, enc = setup
    full = train(_config(enc, STAGES, "train.steps=4"), str(out / "clips"), tmp_path / "a")
    assert [r["stage"] for r in full] == [0, 0, 1, 1]
    # 9 frames: 3 latent frames of 4x4 tokens; stage 1 keeps the top-level 17 frames: 5.
    assert [sum(r["group_sizes"]) for r in full] == [48, 48, 80, 80]
    logged = [json.loads(line) for line in (tmp_path / "a" / "train_log.jsonl").open()]
    assert [r["stage"] for r in logged] == [0, 0, 1, 1]
    train(_config(enc, STAGES, "train.steps=3"), str(out / "clips"), tmp_path / "b")
    resumed = train(_config(enc, STAGES, "train.steps=4"), str(out / "clips"), tmp_path / "b")
    assert [(r["step"], r["stage"]) for r in resumed] == [(4, 1)]
    assert [(r["loss"], r["position"]) for r in resumed] == [(full[3]["loss"], full[3]["position"])]


def test_captions_cut_to_text_len_are_counted(setup: tuple[Path, list[str]],
                                              tmp_path: Path) -> None:
    out, enc = setup
    cfg = _config(enc, "encoders.text_len=12")
    # "shot 0 of clip 1" is 14 tokens with EOS in the tiny tokenizer, "clip 3" 7, "" 1.
    assert Encoders(cfg.encoders, torch.device("cpu")).truncated(
        ["shot 0 of clip 1", "clip 3", ""]) == 1
    records = train(_config(enc, "encoders.text_len=12", "flow.caption_dropout=0",
                            "train.steps=2"), str(out / "clips"), tmp_path / "run")
    assert [r["captions_truncated"] for r in records] == [3, 3]  # three shots, all 14 tokens
    assert [r["captions_truncated_total"] for r in records] == [3, 6]
    resumed = train(_config(enc, "encoders.text_len=12", "flow.caption_dropout=0",
                            "train.steps=3"), str(out / "clips"), tmp_path / "run")
    assert [r["captions_truncated_total"] for r in resumed] == [9]  # the total survives resume
    records = train(_config(enc, "train.steps=1"), str(out / "clips"), tmp_path / "fits")
    assert records[0]["captions_truncated"] == 0


def _identity_blocks(model: MoGADiT) -> MoGADiT:
    """Make every block block 0 and pass its input through: all routers see the same hidden
    states and route them alike."""
    with torch.no_grad():
        model.time_proj[1].weight.zero_()
        model.time_proj[1].bias.zero_()
        first = model.blocks[0]
        first.modulation[:, [2, 5]] = 0  # the attention and MLP gates
        first.cross_attn.out.weight.zero_()
        first.cross_attn.out.bias.zero_()
        for block in model.blocks[1:]:
            block.load_state_dict(first.state_dict())
    return model


def test_balance_loss_is_the_mean_over_layers_so_alpha_weighs_one_layer(
        setup: tuple[Path, list[str]]) -> None:
    _, enc = setup
    cfg = _config(enc)
    stats = [MoGAStats(torch.tensor(v), 1.0, [8, 8]) for v in (0.10, 0.12, 0.14)]
    assert float(model_balance_loss(stats)) == pytest.approx(0.12)
    assert float(model_balance_loss(stats * 2)) == pytest.approx(0.12)
    latents = torch.randn(1, 4, 5, 8, 8, generator=torch.Generator().manual_seed(0))
    text = ShotText(torch.randn(1, 3, 4, 32), torch.ones(1, 3, 4, dtype=torch.bool))
    found = {}
    for layers in (2, 4):
        torch.manual_seed(0)
        model = _identity_blocks(MoGADiT(cfg.model.model_copy(update={"num_layers": layers})))
        _, stats = model(latents, torch.tensor([500.0]), text, LATENT_STARTS)
        assert all(torch.equal(s.balance_loss, stats[0].balance_loss) for s in stats)
        _, info = flow_loss(model, model, latents, text, LATENT_STARTS, cfg.flow,
                            torch.Generator().manual_seed(1))
        found[layers] = (float(info["balance_loss"]), float(model_balance_loss(stats).detach()),
                         float(stats[0].balance_loss.detach()))
    assert found[2] == pytest.approx(found[4])  # twice the layers, the same total
    assert found[2][1] == pytest.approx(found[2][2])  # = one layer's alpha * M * sum F_i P_i
