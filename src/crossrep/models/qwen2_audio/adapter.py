"""Qwen2-Audio (`Qwen/Qwen2-Audio-7B`, `-Instruct`): Whisper-large-v3-style tower (32 layers, 1280 wide, mel
128, 2x average pooling: one frame per 40 ms), a linear projector and Qwen-7B's decoder (32 layers, 4096 wide).

Default template: the base model's form, `<|audio_bos|><|AUDIO|><|audio_eos|>{prompt}`, prompt `{text}` (the
transcript right after the audio). For `-Instruct`, give its chat form as `template`, e.g.
`<|im_start|>user\\nAudio 1: <|audio_bos|><|AUDIO|><|audio_eos|>\\n{prompt}<|im_end|>\\n<|im_start|>assistant\\n`.
Audio tokens per clip: floor((ceil(samples / 160) - 1) / 2 + 1) then (n - 2) // 2 + 1 (2.5 s -> 62, 30 s -> 750);
they cover the clip only, so `audio_positions` changes only the "enc" point (750 frames with the padding).
Languages: its speech training is mostly English and Chinese; crossrep does not restrict it.
Memory (bfloat16): 8.4 B parameters, about 17 GB of weights; 33 hidden states of a batch of 8 x 300 positions
about 0.65 GB more: a 24 GB GPU suffices.
"""

from __future__ import annotations

from pathlib import Path

from ..audio_llm import AudioLLM

TEMPLATE = "<|audio_bos|><|AUDIO|><|audio_eos|>{prompt}"


class Qwen2AudioAdapter(AudioLLM):
    FAMILY = "Qwen2-Audio"
    MODEL = "Qwen2AudioForConditionalGeneration"
    MODEL_TYPE = "qwen2_audio"
    TEMPLATE, PLACEHOLDER = TEMPLATE, "<|AUDIO|>"
    SPECIAL = ("<|endoftext|>",)
    AUDIO_BLOCK = "<|audio_bos|><|AUDIO|><|audio_eos|>"
    TINY = "tiny-qwen2_audio"

    @classmethod
    def build_tiny(cls, path: Path) -> None:
        from .tiny import build_tiny

        build_tiny(path)
