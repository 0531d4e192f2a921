"""LAION aesthetic predictor: CLIP ViT-L/14 image embeddings scored by a small MLP (about 1-10).

Weights are not bundled: point ``clip_model`` at a transformers CLIP checkpoint (local folder or
hub id) and ``mlp_weights`` at the predictor's state dict (e.g.
``sac+logos+ava1-l14-linearMSE.pth``, keys ``layers.{0,2,4,6,7}.*``). Frames are the middle
frames of each shot.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from media.readers import analysis_size, open_reader
from stages.shot_score.config import AestheticConfig


def preflight(config: AestheticConfig) -> None:
    """Raise ``ValueError`` naming the key when the configured model files cannot be loaded."""
    from transformers import CLIPConfig

    if not Path(str(config.mlp_weights)).is_file():
        raise ValueError(f"shot_score.aesthetic.mlp_weights: no file at {config.mlp_weights}")
    try:
        CLIPConfig.from_pretrained(config.clip_model)
    except (OSError, ValueError) as err:
        raise ValueError(
            f"shot_score.aesthetic.clip_model: cannot load {config.clip_model!r} ({err}); point it "
            "at a local CLIP checkpoint folder, or set both aesthetic keys to null") from None


class AestheticScorer:
    """Loads CLIP and the MLP once; scores shots of a video."""

    def __init__(self, config: AestheticConfig) -> None:
        import torch
        from transformers import CLIPImageProcessor, CLIPModel

        self.config = config
        wanted = config.device
        self.device = "cuda" if wanted == "auto" and torch.cuda.is_available() else (
            "cpu" if wanted == "auto" else wanted)
        self.clip = CLIPModel.from_pretrained(config.clip_model).to(self.device).eval()
        self.processor = CLIPImageProcessor.from_pretrained(config.clip_model)
        state = torch.load(Path(str(config.mlp_weights)), map_location="cpu", weights_only=True)
        self.mlp = build_mlp(int(state["layers.0.weight"].shape[1]))
        self.mlp.load_state_dict(state)
        self.mlp.to(self.device).eval()
        self.description = f"LAION aesthetic MLP {config.mlp_weights} on CLIP {config.clip_model}"

    def score_shots(self, path: str, width: int, height: int, shots: list[dict]) -> list[float]:
        """Mean predicted aesthetic score of each shot's middle frame(s)."""
        per_shot = self.config.frames_per_shot
        indices = [int(i) for shot in shots for i in np.linspace(
            shot["start_frame"], shot["end_frame"] - 1, per_shot + 2)[1:-1].round()]
        order = sorted(set(indices))
        reader = open_reader(path, analysis_size(width, height, 448))
        frames = dict(zip(order, reader.frames_at(order), strict=True))
        scores = self.score_images([frames[i] for i in indices])
        return [float(np.mean(scores[k * per_shot:(k + 1) * per_shot])) for k in range(len(shots))]

    def score_images(self, images: list[np.ndarray]) -> np.ndarray:
        """Predicted scores of RGB uint8 images."""
        import torch

        out = []
        with torch.inference_mode():
            for start in range(0, len(images), self.config.batch_size):
                batch = self.processor(images=images[start:start + self.config.batch_size],
                                       return_tensors="pt")["pixel_values"].to(self.device)
                features = self.clip.get_image_features(pixel_values=batch)
                # transformers 5 wraps the projected embedding in an output object
                embedding = getattr(features, "pooler_output", features)
                embedding = embedding / embedding.norm(dim=-1, keepdim=True)
                out.append(self.mlp(embedding.float()).squeeze(-1).cpu().numpy())
        return np.concatenate(out)


def build_mlp(embedding_dim: int):  # noqa: ANN201 - torch module, imported lazily
    """The predictor's MLP with the layer indices of its published state dict."""
    from torch import nn

    class AestheticMLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.Sequential(
                nn.Linear(embedding_dim, 1024), nn.Dropout(0.2), nn.Linear(1024, 128),
                nn.Dropout(0.2), nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16),
                nn.Linear(16, 1))

        def forward(self, x):  # noqa: ANN001, ANN202
            return self.layers(x)

    return AestheticMLP()
