"""Qwen2-Audio through transformers (`Qwen2AudioForConditionalGeneration`)."""

from .adapter import Qwen2AudioAdapter
from .tiny import build_tiny

__all__ = ["Qwen2AudioAdapter", "build_tiny"]
