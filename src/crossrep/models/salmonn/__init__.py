"""SALMONN-7B: the model (`model`), its BEATs and Q-Former ports, the tiny random build and the adapter."""

from .adapter import SalmonnAdapter
from .model import Salmonn, build_prompt
from .tiny import build_tiny

__all__ = ["Salmonn", "SalmonnAdapter", "build_prompt", "build_tiny"]
