"""Shot score: per-shot visual quality (VQA) from the shot split's frame signals, and an optional
aesthetic model."""
