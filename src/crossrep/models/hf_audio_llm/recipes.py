"""Recipes of the generic audio-LLM family: one AudioLLM subclass per model_type, naming its classes, placeholder,
template and counting rules; the decoder, its final norm and the LM head are found by structure.

Families with a folder of their own (qwen2_audio, qwen2_5_omni, audioflamingo3) are recipes too: the generic
family reads their checkpoints through their adapters (`crossrep.models.hf_audio_llm.recipe`).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from ...errors import ModelError
from ..audio_llm import AudioLLM


def find_decoder(model: torch.nn.Module, layers: int) -> torch.nn.Module:
    """The decoder stack: the module holding `embed_tokens`, a `layers` list of the config's length and `norm`."""
    for _name, module in model.named_modules():
        stack = getattr(module, "layers", None)
        if (isinstance(stack, torch.nn.ModuleList) and len(stack) == layers and hasattr(module, "norm")
                and hasattr(module, "embed_tokens")):
            return module
    raise ModelError(f"{type(model).__name__}: no decoder with embed_tokens, {layers} layers and a final norm")


class StructuralAudioLLM(AudioLLM):
    """An AudioLLM whose decoder layers, final norm and LM head are found by structure, not by attribute names."""

    def decoder(self) -> torch.nn.Module:
        if not hasattr(self, "_decoder"):
            self._decoder = find_decoder(self.model, type(self).sizes(self.model.config)[1])
        return self._decoder

    def layers(self):
        return self.decoder().layers

    def lens_modules(self):
        return self.decoder().norm, self.model.get_output_embeddings()


class VoxtralRecipe(StructuralAudioLLM):
    """Voxtral (`mistralai/Voxtral-Mini-3B-2507`, `-Small-24B-2507`): a Whisper-large-v3 encoder (32 x 1280, 1500
    frames per 30 s window), frames stacked by 4 and projected (one audio token per 80 ms, 375 per window, the
    window's padding included), a Mistral/Llama decoder (Mini: 30 layers of 3072). The model takes no mel mask.
    Hub checkpoints ship a Tekken tokenizer read through `mistral_common` (`pip install crossrep[voxtral]`);
    a folder with a fast tokenizer carrying `[AUDIO]` (the tiny build) needs nothing more. Clips up to 30 s (one
    window)."""

    FAMILY = "Voxtral"
    MODEL = "VoxtralForConditionalGeneration"
    MODEL_TYPE = "voxtral"
    MASK_KWARG = None
    PLACEHOLDER = "[AUDIO]"
    AUDIO_BLOCK = "[BEGIN_AUDIO][AUDIO]"
    TEMPLATE = "[INST][BEGIN_AUDIO][AUDIO]{prompt}[/INST]"
    SPECIAL = ("</s>", "<s>")
    TINY = "tiny-voxtral"
    STACK = 4  # encoder frames per audio token

    def token_counts(self, mel_frames: torch.Tensor) -> torch.Tensor:
        window = self.features.nb_max_frames // 2 // self.STACK  # 375: every token of the padded window
        return torch.full_like(mel_frames, window)

    def speech_counts(self, mel_frames: torch.Tensor) -> tuple[list[int], list[int]]:
        frames = [(int(m) - 1) // 2 + 1 for m in mel_frames]  # the encoder's stride-2 convolution
        return [math.ceil(f / self.STACK) for f in frames], frames

    def text_prefix(self) -> list[int]:
        return [self.tokenizer.bos_token_id] if self.tokenizer.bos_token_id is not None else []

    def prepare(self, waves, texts):
        prepared = super().prepare(waves, texts)
        bos = self.text_prefix()
        if bos:  # every Mistral sequence starts with <s>
            rows = prepared["rows"]
            n = rows["ids"].shape[0]
            prepared["rows"] = {k: torch.cat([torch.full((n, 1), bos[0]) if k == "ids" else
                                              torch.full((n, 1), k == "valid"), v], dim=1) for k, v in rows.items()}
        return prepared

    @classmethod
    def sizes(cls, cfg) -> tuple[int, int, int]:
        return cfg.text_config.hidden_size, cfg.text_config.num_hidden_layers, cfg.audio_config.hidden_size

    @classmethod
    def build_tiny(cls, path: Path, seed: int = 2027) -> None:
        from transformers import (LlamaConfig, VoxtralConfig, VoxtralEncoderConfig, VoxtralForConditionalGeneration,
                                  WhisperFeatureExtractor)

        from ..tiny import byte_bpe_tokenizer, randomise, write_marker

        tokenizer = byte_bpe_tokenizer(["</s>", "<s>", "[INST]", "[/INST]", "[BEGIN_AUDIO]", "[AUDIO]"])
        tokenizer.bos_token = "<s>"
        audio = VoxtralEncoderConfig(num_mel_bins=128, hidden_size=32, intermediate_size=128, num_hidden_layers=2,
                                     num_attention_heads=4, max_source_positions=1500)
        text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=2048,
                           pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                           bos_token_id=tokenizer.bos_token_id)
        cfg = VoxtralConfig(audio_config=audio, text_config=text,
                            audio_token_id=tokenizer.convert_tokens_to_ids("[AUDIO]"))
        model = randomise(VoxtralForConditionalGeneration(cfg), torch.Generator().manual_seed(seed))
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
        WhisperFeatureExtractor(feature_size=128).save_pretrained(path)
        write_marker(path, "Voxtral", seed=seed)


RECIPES = {"voxtral": VoxtralRecipe}
