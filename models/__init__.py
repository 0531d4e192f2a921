"""MoGA attention, its GPU core, MoGA-DiT and the trainer (issues 4 and 5; not built yet)."""
