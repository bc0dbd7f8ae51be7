"""SeamlessM4T v2: its text and speech encoders through transformers."""

from .adapter import SeamlessM4Tv2Adapter, build_tiny, lang_token, load_tokenizer

__all__ = ["SeamlessM4Tv2Adapter", "build_tiny", "lang_token", "load_tokenizer"]
