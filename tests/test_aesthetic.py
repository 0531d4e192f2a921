"""The LAION aesthetic path: a tiny CLIP built from a config and a random MLP, loaded from disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from curation.config import parse_config
from curation.plan import PreflightError, preflight
from stages.shot_score.aesthetic import build_mlp
from stages.shot_score.config import AestheticConfig, ShotScoreConfig
from stages.shot_score.stage import ShotScoreStage
from stages.shot_split.config import ShotSplitConfig
from stages.shot_split.stage import detect_shots


@pytest.fixture(scope="module")
def tiny_aesthetic(tmp_path_factory: pytest.TempPathFactory) -> AestheticConfig:
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    root = tmp_path_factory.mktemp("aesthetic")
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "vocab_size": 99, "bos_token_id": 0,
                     "eos_token_id": 1, "pad_token_id": 1},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
        projection_dim=24)
    CLIPModel(config).save_pretrained(root / "clip")
    processor = CLIPImageProcessor(size={"shortest_edge": 32},
                                   crop_size={"height": 32, "width": 32})
    processor.save_pretrained(root / "clip")
    torch.save(build_mlp(24).state_dict(), root / "mlp.pth")
    return AestheticConfig(clip_model=str(root / "clip"), mlp_weights=str(root / "mlp.pth"))


def test_scores_every_shot_through_from_pretrained(tiny_aesthetic: AestheticConfig,
                                                   bikes: Path) -> None:
    shots, _, signals = detect_shots(str(bikes), 640, 272, 25.0, ShotSplitConfig())
    record = {"path": str(bikes), "width": 640, "height": 272, "shots": shots,
              "frame_signals": signals}
    stage = ShotScoreStage(ShotScoreConfig(aesthetic=tiny_aesthetic))
    stage.setup()
    stage.process(record)
    scores = [shot["vqa_aesthetic"] for shot in shots]
    assert len(scores) == 6 and np.all(np.isfinite(scores)) and len(set(scores)) > 1
    assert "mlp.pth" in record["aesthetic_model"] and "clip" in record["aesthetic_model"]


def test_preflight_names_the_key_when_weights_are_missing(tmp_path: Path) -> None:
    config = parse_config({"stages": {"shot_score": {"aesthetic": {
        "clip_model": str(tmp_path / "no-clip"), "mlp_weights": str(tmp_path / "no.pth")}}}})
    with pytest.raises(PreflightError, match="shot_score.aesthetic.mlp_weights"):
        preflight(config)
    (tmp_path / "no.pth").write_bytes(b"")
    with pytest.raises(PreflightError, match="shot_score.aesthetic.clip_model.*local CLIP"):
        preflight(config)
