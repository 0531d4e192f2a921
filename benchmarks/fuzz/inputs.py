"""The hostile input folder: one subfolder per category, built from the base videos by fixed
builders and seeded byte mutations, with what the checks must know about it."""

from __future__ import annotations

import io
import json
import os
import random
import socket
import struct
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.fuzz.media import FAMILY, VP9, X264, ffmpeg
from benchmarks.fuzz.mutations import MUTATIONS, mkv_no_clusters, mp4_zero_samples
from tests import media

CATEGORIES = ("truncate", "bitflip", "index", "atoms", "sizes", "rates", "timestamps", "probed",
              "frames", "audio", "image", "archive", "playlist", "sidecar", "links", "perms",
              "nosearch", "names", "change")
BYTE_CATEGORIES = CATEGORIES[:8]


# --- the input folder -----------------------------------------------------------------------

@dataclass
class Change:
    """A file the run sees changing: ``action`` is truncate, delete, replace or lock (chmod
    000); ``early`` ones happen right after discovery, before any video is processed."""

    path: Path
    action: str
    early: bool
    original: bytes
    mtime_ns: int


@dataclass
class Folder:
    """The hostile input folder and what the checks must know about it."""

    root: Path
    rng: random.Random
    bases: dict[str, bytes]
    category: dict[str, str] = field(default_factory=dict)  # rel path -> category
    # rel paths of files with an extension discovery probes: "video" (needs a row) or
    # "hostile" (a row or none)
    unknown: dict[str, str] = field(default_factory=dict)
    modes: dict[Path, int] = field(default_factory=dict)  # chmod applied just before the run
    changes: list[Change] = field(default_factory=list)
    serial: int = 0

    def path(self, category: str, name: str) -> Path:
        """Where ``name`` of ``category`` goes; recorded as an entry of that category."""
        path = self.root / category / name
        path.parent.mkdir(parents=True, exist_ok=True)
        self.category[str(path.relative_to(self.root))] = category
        return path

    def write(self, category: str, name: str, data: bytes, unknown: str = "") -> Path:
        path = self.path(category, name)
        path.write_bytes(data)
        if unknown:
            self.unknown[str(path.relative_to(self.root))] = unknown
        return path

    def fifo(self, category: str, name: str) -> Path:
        path = self.path(category, name)
        os.mkfifo(path)
        return path

    def unique(self, base: str = "h264.mp4") -> bytes:
        """``base`` made unique by a trailing box or element, so it is no duplicate."""
        self.serial += 1
        tag = f"fuzz{self.serial:08d}".encode()
        family = FAMILY[base.rsplit(".", 1)[1]]
        if family == "isobmff":
            tail = struct.pack(">I4s", 8 + len(tag), b"free") + tag
        elif family == "ebml":
            tail = bytes([0xEC, 0x80 | len(tag)]) + tag  # a top-level Void element
        else:
            tail = b"JUNK" + struct.pack("<I", len(tag)) + tag
        return self.bases[base] + tail

    def media(self, category: str, name: str, *args: str) -> Path:
        """Run ffmpeg ``args`` writing this entry."""
        path = self.path(category, name)
        ffmpeg(*args, str(path))
        return path


def build_mutated(folder: Folder, category: str, index: int) -> None:
    """One base file through one seeded mutation of ``category`` (``probed``: of any category,
    under an extension discovery does not know, so its own ffprobe sees the file first)."""
    rng = folder.rng
    probed = category == "probed"
    options = [(family, mutate) for cat, family, mutate in MUTATIONS if probed or cat == category]
    for _ in range(20):
        family, mutate = rng.choice(options)
        names = [n for n in folder.bases if family in (None, FAMILY[n.rsplit(".", 1)[1]])]
        base = rng.choice(names)
        data = bytearray(folder.bases[base])
        if mutate(data, rng) and bytes(data) != folder.bases[base]:
            name = f"{index:03d}-{mutate.__name__}-{base}{'.vid' if probed else ''}"
            folder.write(category, name, bytes(data), "hostile" if probed else "")
            return


def build_frames(folder: Folder) -> None:
    src = str(folder.root.parent / "bases" / "source.mp4")
    zero = bytearray(folder.bases["h264.mp4"])
    mp4_zero_samples(zero, folder.rng)
    folder.write("frames", "zero-samples.mp4", bytes(zero))
    clusterless = bytearray(folder.bases["h264.mkv"])
    mkv_no_clusters(clusterless, folder.rng)
    folder.write("frames", "no-clusters.mkv", bytes(clusterless))
    folder.media("frames", "zero-frames.avi", "-i", src, "-frames:v", "0", "-c:v", "mpeg4")
    folder.media("frames", "no-stream.mp4", "-f", "lavfi", "-i", "testsrc2=size=256x144",
                 "-frames:v", "0", "-c:v", "libx264")
    for name, frames, codec in (("one-frame.mp4", 1, X264), ("one-frame.mkv", 1, X264),
                                ("one-frame.webm", 1, VP9), ("one-frame.avi", 1, ["-c:v", "mpeg4"]),
                                ("two-frames.mp4", 2, X264), ("1fps.mkv", 90, [*X264, "-r", "1"])):
        if codec is not VP9 or "vp9.webm" in folder.bases:
            folder.media("frames", name, "-i", src, "-frames:v", str(frames), *codec)


def build_audio(folder: Folder) -> None:
    media.make_audio_only(folder.path("audio", "tone.mp4"))
    tone = ["-f", "lavfi", "-i", "sine=duration=3"]
    folder.media("audio", "tone.mkv", *tone, "-c:a", "flac")
    folder.media("audio", "tone.webm", *tone, "-c:a", "libopus")
    folder.media("audio", "tone.m4a", *tone, "-c:a", "aac")  # unknown extension, no picture


def build_image(folder: Folder) -> None:
    media.make_image(folder.path("image", "png-as.mp4"))
    still = ["-f", "lavfi", "-i", "testsrc2=size=256x144,trim=end_frame=1"]
    folder.media("image", "jpeg-as.mkv", *still, "-c:v", "mjpeg", "-f", "image2")
    folder.media("image", "png-stream.mkv", *still, "-c:v", "png")
    folder.media("image", "png-as.dat", *still, "-c:v", "png", "-f", "image2")
    folder.media("image", "gif-as.mp4", "-f", "lavfi", "-i", "testsrc2=size=256x144:rate=10",
                 "-t", "3", "-f", "gif")
    folder.media("image", "cover-art.mp4", "-f", "lavfi", "-i", "sine=duration=3", *still,
                 "-map", "0:a", "-map", "1:v", "-c:a", "aac", "-c:v", "png",
                 "-disposition:v", "attached_pic")


def _archive(kind: str, member: bytes) -> bytes:
    buffer = io.BytesIO()
    if kind == "zip":
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("clip.mp4", member)
    else:
        with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
            info = tarfile.TarInfo("clip.mp4")
            info.size = len(member)
            archive.addfile(info, io.BytesIO(member))
    return buffer.getvalue()


def build_archive(folder: Folder) -> None:
    video = folder.bases["h264.mp4"]
    folder.write("archive", "zip-as.mp4", _archive("zip", video))
    folder.write("archive", "tgz-as.mkv", _archive("tgz", video))
    folder.write("archive", "real.zip", _archive("zip", video))
    folder.write("archive", "real.tar.gz", _archive("tgz", video))
    folder.write("archive", "text-as.mp4", b"this is not a video\n" * 50)
    folder.write("archive", "html-as.webm", b"<!doctype html><title>x</title><video></video>")
    folder.write("archive", "json-as.mov", json.dumps({"streams": []}).encode())
    folder.write("archive", "random-as.avi", folder.rng.randbytes(300_000))
    folder.write("archive", "empty.mp4", b"")
    folder.write("archive", "one-byte.mkv", b"\x1a")
    sparse = folder.write("archive", "sparse-2GiB.mp4", folder.unique())
    os.truncate(sparse, 2 << 30)


def build_sidecar(folder: Folder) -> None:
    folder.write("sidecar", "notes.txt", b"shot list\n")
    folder.write("sidecar", "subs.srt", b"1\n00:00:00,000 --> 00:00:01,000\nhi\n")
    folder.write("sidecar", "clip.mp4.txt", folder.unique())
    folder.write("sidecar", "clip.bin", folder.unique(), "video")
    folder.write("sidecar", "no-extension", folder.unique("h264.mkv"), "video")
    folder.write("sidecar", ".mp4", folder.unique(), "video")  # a hidden name, no suffix
    folder.write("sidecar", "text.dat", b"plain text, probed and skipped\n")
    folder.write("sidecar", "UPPER.MP4", folder.unique())


def build_links(folder: Folder) -> None:
    def link(name: str, target: str) -> None:
        os.symlink(target, folder.path("links", name))

    link("loop-a.mp4", "loop-b.mp4")
    link("loop-b.mp4", "loop-a.mp4")
    link("self.mkv", "self.mkv")
    link("dangling.mp4", "no-such-file.mp4")
    link("up", "..")
    link("here", ".")
    link("dev-zero.mp4", "/dev/zero")
    link("dev-null.mkv", "/dev/null")
    target = folder.write("links", "target.mp4", folder.unique())
    link("to-target.mp4", "target.mp4")
    os.link(target, folder.path("links", "hardlink.mp4"))
    folder.write("links", "copy.mp4", target.read_bytes())
    outside = folder.root.parent / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "elsewhere.mp4").write_bytes(folder.unique("h264.mov"))
    link("outside", str(outside))
    folder.fifo("links", "fifo.mp4")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(folder.path("links", "socket.mkv")))


def build_perms(folder: Folder) -> None:
    for name, mode in (("locked.mp4", 0o000), ("write-only.mkv", 0o200), ("locked.bin", 0o000)):
        folder.modes[folder.write("perms", name, folder.unique())] = mode
    for name, mode in (("locked-dir", 0o000), ("search-only-dir", 0o100)):
        folder.modes[folder.write("perms", f"{name}/inside.mp4", folder.unique()).parent] = mode


def build_nosearch(folder: Folder) -> None:
    """A folder that can be listed but not searched: its entries cannot be stat'ed."""
    folder.modes[folder.write("nosearch", "list-only/inside.mp4", folder.unique()).parent] = 0o400


def _hls(segment: str) -> bytes:
    return (f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:3.75,\n{segment}\n#EXT-X-ENDLIST\n"
            ).encode()


def build_playlist(folder: Folder) -> None:
    """Playlists named as videos: ffprobe follows them to other files, and to a FIFO (also
    under an extension discovery probes itself)."""
    base = str(folder.root.parent / "bases" / "h264.mp4")
    folder.media("playlist", "segment.ts", "-i", base, "-c", "copy", "-f", "mpegts")
    folder.fifo("playlist", "pipe.txt")
    folder.write("playlist", "concat-fifo.mp4", b"ffconcat version 1.0\nfile pipe.txt\n")
    folder.write("playlist", "concat-fifo.dat", b"ffconcat version 1.0\nfile pipe.txt\n", "hostile")
    folder.write("playlist", "concat.mkv", b"ffconcat version 1.0\nfile segment.ts\n")
    folder.write("playlist", "hls.mp4", _hls("segment.ts"))
    folder.write("playlist", "hls-outside.mov", _hls(base))


NAMES = [b"new\nline.mp4", b"carriage\rreturn.mp4", b"tab\there.mp4", b"\x1b[31mansi.mp4",
         b"bell\x07.mp4", b"bad\xff.mp4", b"overlong\xc0\xaf.mp4", b"surrogate\xed\xa0\x80.mp4",
         b"latin1-caf\xe9.mkv", b"-i leading-dash.mp4", b"--help.mp4", b"%d%s%n.mp4",
         b"$(touch pwned).mp4", b"`touch pwned`.mp4", b"a;touch pwned;.mp4", b"quote'\"\\.mp4",
         b"glob*?[x].mp4", b"caf\xc3\xa9-nfc.mp4", b"cafe\xcc\x81-nfd.mp4",
         b"\xe2\x80\xaertl-override.mp4", b"emoji-\xf0\x9f\x8e\xac.mp4", b"trailing space.mp4 ",
         b" .mp4", b"x" * 251 + b".mp4", b"file:colon.mp4", b"dir\nwith\xffbytes/inside.mp4"]


def build_names(folder: Folder) -> None:
    for i, raw in enumerate(NAMES):
        base = ("h264.mp4", "h264.mkv", "h264.mov")[i % 3]
        folder.write("names", os.fsdecode(raw), folder.unique(base), "video")


def build_change(folder: Folder) -> None:
    actions = ("truncate", "delete", "replace", "lock")
    for i, (action, early) in enumerate((a, e) for a in actions for e in (True, False)):
        when = "early" if early else "late"
        path = folder.write("change", f"{i}-{action}-{when}.mp4", folder.unique())
        folder.changes.append(Change(path, action, early, path.read_bytes(),
                                     path.stat().st_mtime_ns))


BUILDERS: dict[str, Callable[[Folder], None]] = {
    "frames": build_frames, "audio": build_audio, "image": build_image, "archive": build_archive,
    "playlist": build_playlist, "sidecar": build_sidecar, "links": build_links,
    "perms": build_perms, "nosearch": build_nosearch, "names": build_names,
    "change": build_change}


def build_inputs(root: Path, bases: dict[str, bytes], seed: int, count: int,
                 skip: set[str]) -> Folder:
    """The hostile folder: every fixed category not skipped, then seeded byte mutations of the
    bases up to about ``count`` entries."""
    folder = Folder(root, random.Random(seed), bases)
    for name, build in BUILDERS.items():
        if name not in skip:
            build(folder)
    byte_categories = [c for c in BYTE_CATEGORIES if c not in skip]
    for i in range(max(0, count - len(folder.category)) if byte_categories else 0):
        build_mutated(folder, byte_categories[i % len(byte_categories)], i)
    return folder
