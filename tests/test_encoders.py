"""The encode stage's encoder choice: NVENC where a trial encode works, libx264 elsewhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from stages.encode import encoders
from stages.encode.config import EncodeConfig
from stages.encode.encoders import (
    LIBX264,
    NVENC,
    EncoderUnavailableError,
    choose_encoder,
    nvenc_problem,
)
from stages.encode.frames import Picture
from stages.encode.writer import encoder_args


def test_auto_takes_nvenc_only_where_its_trial_encode_works(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(encoders, "nvenc_problem", lambda: "Cannot load libcuda.so.1")
    assert choose_encoder("auto") == LIBX264
    assert choose_encoder("libx264") == LIBX264
    with pytest.raises(EncoderUnavailableError, match="h264_nvenc cannot encode on this "
                       "worker: Cannot load libcuda.so.1"):
        choose_encoder("h264_nvenc")
    monkeypatch.setattr(encoders, "nvenc_problem", lambda: None)
    assert choose_encoder("auto") == NVENC == choose_encoder("h264_nvenc")
    assert choose_encoder("libx264") == LIBX264


def test_this_machines_trial_encode_gives_a_reason_or_none() -> None:
    """The real trial: Debian's ffmpeg lists h264_nvenc everywhere, so only encoding tells. On a
    machine without an NVIDIA driver (CI) the reason is ffmpeg's own, first line, no address."""
    problem = nvenc_problem()
    if problem is None:
        pytest.skip("this machine encodes with h264_nvenc")
    assert problem and "0x" not in problem and "\n" not in problem


@pytest.mark.parametrize("encoder", [LIBX264, NVENC])
def test_encoder_options_on_the_command_line(encoder: str, tmp_path: Path) -> None:
    class Frame:  # what encoder_args reads of a decoded frame: SDR, no transfer to map
        color_trc = 1

    picture = Picture((0, 0, 320, 176), (320, 176), 0, "yuv420p")
    config = EncodeConfig(crf=23, preset="superfast", nvenc_preset="p2")
    args = encoder_args(tmp_path / "x.mp4", picture, Frame(), config, encoder)
    output = args[args.index("pipe:") + 1:]
    options = {key: value for key, value in zip(output, output[1:], strict=False)
               if key.startswith("-")}
    expected = ({"-vcodec": "libx264", "-crf": "23", "-preset": "superfast", "-threads": "1"}
                if encoder == LIBX264 else
                {"-vcodec": "h264_nvenc", "-preset": "p2", "-rc": "vbr", "-cq": "23", "-b:v": "0"})
    assert {key: options.get(key) for key in expected} == expected, args
