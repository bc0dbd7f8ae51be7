"""crossrep: how multimodal foundation models represent one sentence across languages and modalities."""

__version__ = "0.1.0"
