"""Shot caption: a multimodal LLM captions every shot of every sample and each whole sample."""
