"""The curation stages, in the order they run (MoGA paper, section 3.3).

Stages are plain classes over video records (:mod:`stages.base`), unaware of Ray; the runner in
:mod:`curation.runner` maps them. A stage that fits in one module is one module (``probe``,
``video_score``, ``video_filter``, ``shot_filter``, ``shot_merge``); a stage family that needs
helpers is a package with ``config.py`` (its settings), ``stage.py`` (the stage) and the helpers
(``shot_split``, ``shot_score``, ``shot_crop``, ``shot_caption``, ``encode``). Stages read media
through :mod:`media` and never import :mod:`curation`.
"""
