"""Reading a finished output back: `curate validate`, `curate report`, `curate inspect`."""
