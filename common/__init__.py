"""Helpers every layer uses (curation, stages, models): atomic file writes and `--set key=value`
config overrides. Imports nothing from the project."""
