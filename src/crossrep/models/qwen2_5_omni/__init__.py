"""Qwen2.5-Omni's thinker (`Qwen/Qwen2.5-Omni-7B`, `-3B`): the text-and-audio LLM of the Omni model (its talker
and vocoder, which speak, are dropped). The shared audio-LLM code with three differences: the hub checkpoint is
the whole Omni model (its thinker is taken), the tower runs only the clip's frames, packed across the batch, and
projects inside itself, and positions are TMRoPE's (computed by the model itself from the audio markers).

Points: "enc" is the tower's state before its final LayerNorm and projection (after the 2x average pooling:
one frame per 40 ms, 1280 wide), pooled over the clip's frames (the tower sees no padding, so both
`audio_positions` agree on it); "in", "1".."L", "out" as for every audio LLM (28 layers of 3584 for 7B, 36 of
2048 for 3B). Default template: the chat form, `<|im_start|>user\\n<|audio_bos|><|AUDIO|><|audio_eos|>{prompt}
<|im_end|>\\n<|im_start|>assistant\\n` (the system prompt left out). Clips up to 30 s. Languages: not restricted
(the card names Chinese and English speech most). Memory (bfloat16): the thinker of 7B has about 8.9 B
parameters, 18 GB; loading the whole Omni model goes through about 22 GB of CPU memory.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..audio_llm import AudioLLM
from ..base import PRETRAINED, Recorder

WHOLE = "qwen2_5_omni"  # the hub checkpoints: thinker, talker and vocoder
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>",
           "<|IMAGE|>", "<|VIDEO|>", "<|vision_bos|>", "<|vision_eos|>"]


class Qwen25OmniAdapter(AudioLLM):
    FAMILY = "Qwen2.5-Omni"
    MODEL = "Qwen2_5OmniThinkerForConditionalGeneration"
    MODEL_TYPE = "qwen2_5_omni_thinker"
    ALSO_ACCEPTED = (WHOLE,)
    TEMPLATE = "<|im_start|>user\n<|audio_bos|><|AUDIO|><|audio_eos|>{prompt}<|im_end|>\n<|im_start|>assistant\n"
    PLACEHOLDER = "<|AUDIO|>"
    SPECIAL = ("<|endoftext|>",)
    AUDIO_BLOCK = "<|audio_bos|><|AUDIO|><|audio_eos|>"
    TINY = "tiny-qwen2_5_omni"

    def load_model(self, checkpoint: str) -> torch.nn.Module:
        import transformers

        if self.config(checkpoint).model_type == self.MODEL_TYPE:  # a thinker saved alone (the tiny build)
            return super().load_model(checkpoint)
        whole = transformers.Qwen2_5OmniForConditionalGeneration.from_pretrained(checkpoint, dtype=self.dtype,
                                                                                 **PRETRAINED)
        return whole.thinker

    @classmethod
    def sizes(cls, cfg) -> tuple[int, int, int]:
        return super().sizes(cfg.thinker_config if cfg.model_type == WHOLE else cfg)

    def record_encoder(self, rec: Recorder) -> None:
        rec.input(self.tower().ln_post, "enc")  # packed: (frames of all clips, D)

    def encoder_states(self, enc: torch.Tensor, counts: list[int]) -> tuple[torch.Tensor, ...]:
        rows = torch.split(enc, counts)
        out = enc.new_zeros(len(counts), max(counts), enc.shape[-1])
        for i, r in enumerate(rows):
            out[i, : len(r)] = r
        frames = torch.arange(out.shape[1], device=enc.device)
        speech = frames[None, :] < torch.tensor(counts, device=enc.device)[:, None]
        return out, speech, speech

    @classmethod
    def build_tiny(cls, path: Path, seed: int = 2026) -> None:
        from transformers import (Qwen2_5OmniAudioEncoderConfig, Qwen2_5OmniTextConfig, Qwen2_5OmniThinkerConfig,
                                  Qwen2_5OmniThinkerForConditionalGeneration, Qwen2_5OmniVisionEncoderConfig,
                                  WhisperFeatureExtractor)

        from ..tiny import byte_bpe_tokenizer, randomise, write_marker

        tokenizer = byte_bpe_tokenizer(SPECIAL)
        ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL}
        audio = Qwen2_5OmniAudioEncoderConfig(num_mel_bins=128, encoder_layers=2, encoder_attention_heads=4,
                                              encoder_ffn_dim=64, d_model=32, output_dim=64, n_window=100,
                                              max_source_positions=1500)
        vision = Qwen2_5OmniVisionEncoderConfig(depth=1, hidden_size=32, intermediate_size=64, num_heads=2,
                                                out_hidden_size=64, fullatt_block_indexes=[0])
        # TMRoPE: the three sections must sum to half the head size (64 / 4 heads / 2 = 8)
        text = Qwen2_5OmniTextConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                                     num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                     rope_parameters={"rope_type": "default", "rope_theta": 1e6,
                                                      "mrope_section": [2, 3, 3]},
                                     pad_token_id=tokenizer.pad_token_id)
        cfg = Qwen2_5OmniThinkerConfig(
            audio_config=audio, vision_config=vision, text_config=text, audio_token_index=ids["<|AUDIO|>"],
            image_token_index=ids["<|IMAGE|>"], video_token_index=ids["<|VIDEO|>"],
            audio_start_token_id=ids["<|audio_bos|>"], audio_end_token_id=ids["<|audio_eos|>"],
            vision_start_token_id=ids["<|vision_bos|>"], vision_end_token_id=ids["<|vision_eos|>"])
        model = randomise(Qwen2_5OmniThinkerForConditionalGeneration(cfg), torch.Generator().manual_seed(seed))
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
        WhisperFeatureExtractor(feature_size=128).save_pretrained(path)
        write_marker(path, "Qwen2.5-Omni thinker", seed=seed)
