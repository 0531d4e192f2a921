"""Encode: each sample cropped, resized, resampled and written as H.264 mp4."""
