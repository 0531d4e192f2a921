"""Fuzz campaign (issue 14): hostile inputs through one ``curate run``, counted like a benchmark.

From small valid videos of every container and codec this ffmpeg writes (mp4, mov, mkv, webm,
avi; H.264, HEVC, VP9, AV1, MPEG-4 part 2; lavfi sources with hard cuts, as ``tests.media`` makes
them) it builds about ``--count`` hostile inputs in one folder, one subfolder per category:

- ``truncate``, ``bitflip``: cut at random offsets; bits flipped in headers, index and mid-stream;
- ``index``: zeroed or renamed mp4 ``moov``/``stco``/``stss``, mkv Cues/SeekHead, avi ``idx1``;
- ``atoms``: swapped or duplicated boxes, clusters and chunks;
- ``sizes``: absurd box/element/chunk sizes, frame sizes and display matrices;
- ``rates``: absurd timescales, durations, frame rates;
- ``timestamps``: repeating, jumping and backwards timestamps (mp4 ``stts``/``ctts``, mkv);
- ``probed``: any of the above under an unknown extension, which discovery's ffprobe opens;
- ``frames``: zero-sample, stream-less and one- or two-frame files;
- ``audio``, ``image``, ``archive``: audio only, stills and animations, archives, text, empty;
- ``playlist``: HLS and ffconcat playlists named as videos, one of them pointing at a FIFO;
- ``sidecar``: non-video files, videos with unknown or odd extensions;
- ``links``: symlink loops, dangling links, a folder linked to its parent, devices, a FIFO;
- ``perms``: unreadable files and folders; ``nosearch``: a folder listable but not searchable;
- ``names``: newlines, control characters, invalid UTF-8, shell and format metacharacters;
- ``change``: files truncated, deleted, replaced or locked while the run goes on.

It runs ``curate run INPUT OUT`` once (every stage's timeout cut to ``--stage-timeout``; as
root, with a private ``/tmp`` and without root's power over file permissions), then counts a
crash for: an exit code other than 0 (1 under ``--strict`` when a file failed); an input
without exactly one ``videos`` row, or a row for no input; a row not accepted without a rule
and a ``stage.rule:`` reason; a hang (no input list after ``--discovery-limit``, a run past
``--time-limit``, a row failed with rule ``timeout`` or ``worker_lost``); a write outside OUT
(the input tree, the working folder, ``$HOME``, ``/tmp`` but for Ray's session folder); a file
changed after discovery, before any video was processed, that did not fail with
``changed_during_run``; a ``curate validate`` violation. The inputs are what discovery
documents (README): every non-folder entry the walk reaches (symlinks followed, each real
folder once) with a video extension, or with another extension not ignored and a moving
picture in it, plus one row per folder that cannot be listed. Prints inputs per category,
statuses per rule, unexpected stage exceptions, the slowest videos and the crashes; exits 1
when there is a crash. ``--skip`` leaves out categories that stop the whole run.

From the repository root (modules: ``media`` base videos and container structure,
``mutations`` byte mutations, ``inputs`` the input folder, ``run`` running curate, ``checks``
coverage, checks and report, ``__main__`` the command line):

    python3 -m benchmarks.fuzz [--seed 14] [--count 200] [--out /var/tmp/curate-fuzz]
                               [--time-limit 900] [--discovery-limit 120] [--stage-timeout 60]
                               [--strict] [--skip nosearch,playlist] [--num-cpus 2]
"""
