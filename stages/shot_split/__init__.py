"""Shot split: hard cuts (PySceneDetect's ContentDetector) and gradual transitions from one
decode pass."""
