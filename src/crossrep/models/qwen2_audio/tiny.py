"""A small random Qwen2-Audio in the hub's folder layout (config, safetensors, tokenizer, processor)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..tiny import byte_bpe_tokenizer, randomise, write_marker

TINY_SEED = 2024
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|audio_bos|>", "<|AUDIO|>", "<|audio_eos|>"]


def build_tiny(path: Path, seed: int = TINY_SEED) -> Path:
    """Real sequence lengths (128 mel bins x 3000 frames, 1500 tower positions, 750 audio tokens per 30 s),
    small widths: tower 2 x 32, decoder 2 x 64 with grouped-query attention (4 heads, 2 key-value heads)."""
    from transformers import (Qwen2AudioConfig, Qwen2AudioEncoderConfig, Qwen2AudioForConditionalGeneration,
                              Qwen2AudioProcessor, WhisperFeatureExtractor)

    tokenizer = byte_bpe_tokenizer(SPECIAL)
    audio = Qwen2AudioEncoderConfig(num_mel_bins=128, encoder_layers=2, encoder_attention_heads=4,
                                    encoder_ffn_dim=64, d_model=32, max_source_positions=1500)
    cfg = Qwen2AudioConfig(audio_config=audio, text_config=qwen2_decoder(tokenizer),
                           audio_token_id=tokenizer.convert_tokens_to_ids("<|AUDIO|>"))
    torch.manual_seed(seed)
    model = randomise(Qwen2AudioForConditionalGeneration(cfg), torch.Generator().manual_seed(seed))
    model.save_pretrained(path)
    Qwen2AudioProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=128),
                        tokenizer=tokenizer).save_pretrained(path)
    write_marker(path, "Qwen2-Audio", seed=seed)
    return path


def qwen2_decoder(tokenizer):
    """The tiny Qwen2 decoder config shared by the Qwen2-based audio LLMs' tiny builds."""
    from transformers import Qwen2Config

    return Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                       pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
