"""Audio Flamingo 3 (`nvidia/audio-flamingo-3-hf`): the shared audio-LLM code with its own names.

Whisper-large-v3-style tower with average pooling and a final LayerNorm (1280 wide), a two-layer projector and
a Qwen2.5-7B decoder (28 layers, 3584 wide); placeholder `<sound>`, mel mask keyword `input_features_mask`. Clips
up to 30 s (one window; the processor would split longer ones into windows). English-centred, sound and music
oriented: crossrep does not restrict its languages. Memory (bfloat16): about 8.3 B parameters, 17 GB.
"""

from __future__ import annotations

from pathlib import Path

from ..audio_llm import AudioLLM


class AudioFlamingo3Adapter(AudioLLM):
    FAMILY = "Audio Flamingo 3"
    MODEL = "AudioFlamingo3ForConditionalGeneration"
    MODEL_TYPE = "audioflamingo3"
    MASK_KWARG = "input_features_mask"
    TEMPLATE = "<|im_start|>user\n<sound>{prompt}<|im_end|>\n<|im_start|>assistant\n"
    PLACEHOLDER = "<sound>"
    SPECIAL = ("<|endoftext|>",)
    AUDIO_BLOCK = "<sound>"
    TINY = "tiny-audioflamingo3"

    @classmethod
    def build_tiny(cls, path: Path, seed: int = 2025) -> None:
        import torch
        from transformers import (AudioFlamingo3Config, AudioFlamingo3EncoderConfig,
                                  AudioFlamingo3ForConditionalGeneration, AudioFlamingo3Processor,
                                  WhisperFeatureExtractor)

        from ..qwen2_audio.tiny import qwen2_decoder
        from ..tiny import byte_bpe_tokenizer, randomise, write_marker

        tokenizer = byte_bpe_tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<sound>"])
        audio = AudioFlamingo3EncoderConfig(num_mel_bins=128, num_hidden_layers=2, num_attention_heads=4,
                                            intermediate_size=64, hidden_size=32, max_source_positions=1500)
        cfg = AudioFlamingo3Config(audio_config=audio, text_config=qwen2_decoder(tokenizer),
                                   audio_token_id=tokenizer.convert_tokens_to_ids("<sound>"))
        model = randomise(AudioFlamingo3ForConditionalGeneration(cfg), torch.Generator().manual_seed(seed))
        model.save_pretrained(path)
        AudioFlamingo3Processor(feature_extractor=WhisperFeatureExtractor(feature_size=128),
                                tokenizer=tokenizer).save_pretrained(path)
        write_marker(path, "Audio Flamingo 3", seed=seed)
