"""SONAR: the text encoder and the per-language speech encoders, ported onto transformers modules."""

from .adapter import SonarAdapter, check_vocabulary, load_tokenizer
from .encoders import SonarSpeechEncoder, SonarTextEncoder, fbank
from .tiny import build_tiny

__all__ = ["SonarAdapter", "SonarSpeechEncoder", "SonarTextEncoder", "build_tiny", "check_vocabulary", "fbank",
           "load_tokenizer"]
