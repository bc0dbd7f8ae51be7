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
from ..base import PRETRAINED
from ..qwen2_5_omni import Qwen25OmniAdapter


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
    The checkpoints ship a Tekken tokenizer (`tekken.json`), read here with transformers' own converter into a
    fast tokenizer (character offsets locate the transcript); `mistral_common` is not needed (the tests use it as
    the reference when installed: `pip install crossrep[voxtral]`). Clips up to 30 s (one window)."""

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

    SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[AUDIO]", "[BEGIN_AUDIO]", "<pad>"]  # tiny

    @classmethod
    def load_tokenizer(cls, checkpoint: str):
        from transformers.integrations.mistral.tokenizer import convert_tekken_tokenizer
        from transformers.utils import cached_file

        try:
            tekken = cached_file(checkpoint, "tekken.json", _raise_exceptions_for_missing_entries=False)
        except OSError as exc:
            raise ModelError(f"{checkpoint}: cannot read tekken.json ({exc})") from None
        if tekken is None:
            return super().load_tokenizer(checkpoint)
        import logging

        quiet = logging.getLogger("transformers.integrations.mistral.tokenizer")
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # it says it builds no chat template: crossrep uses its own
        try:
            return convert_tekken_tokenizer(tekken)
        finally:
            quiet.setLevel(level)

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

        from ..tiny import randomise, write_marker, write_tekken

        write_tekken(path, cls.SPECIAL_TOKENS)
        tokenizer = cls.load_tokenizer(str(path))
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
        WhisperFeatureExtractor(feature_size=128).save_pretrained(path)
        write_marker(path, "Voxtral", seed=seed)


class Qwen3OmniRecipe(StructuralAudioLLM, Qwen25OmniAdapter):
    """Qwen3-Omni's thinker (`Qwen/Qwen3-Omni-30B-A3B-Instruct`, `-Thinking`, `-Captioner`): Qwen2.5-Omni's shape
    (packed audio tower, its state before `ln_post` as "enc", TMRoPE positions computed by the model) with a
    mixture-of-experts decoder (48 layers of 2048 in 30B-A3B) and a tower that downsamples chunks of 100 mel frames
    to 13 tokens (about 13 per second). The hub checkpoints hold the whole model; its thinker is taken.
    Memory (bfloat16): the thinker's 30 B parameters, about 61 GB."""

    FAMILY = "Qwen3-Omni"
    MODEL = "Qwen3OmniMoeThinkerForConditionalGeneration"
    MODEL_TYPE = "qwen3_omni_moe_thinker"
    ALSO_ACCEPTED = ("qwen3_omni_moe",)
    PLACEHOLDER = "<|audio_pad|>"
    AUDIO_BLOCK = "<|audio_start|><|audio_pad|><|audio_end|>"
    TEMPLATE = "<|im_start|>user\n<|audio_start|><|audio_pad|><|audio_end|>{prompt}<|im_end|>\n<|im_start|>assistant\n"
    SPECIAL = ("<|endoftext|>",)
    TINY = "tiny-qwen3_omni_moe"

    def load_model(self, checkpoint: str) -> torch.nn.Module:
        import transformers

        if self.config(checkpoint).model_type == self.MODEL_TYPE:
            return getattr(transformers, self.MODEL).from_pretrained(checkpoint, dtype=self.dtype, **PRETRAINED)
        whole = transformers.Qwen3OmniMoeForConditionalGeneration
        return whole.from_pretrained(checkpoint, dtype=self.dtype, **PRETRAINED).thinker

    def token_counts(self, mel_frames: torch.Tensor) -> torch.Tensor:
        from transformers.models.qwen3_omni_moe.modeling_qwen3_omni_moe import _get_feat_extract_output_lengths

        return _get_feat_extract_output_lengths(mel_frames, self.tower().n_window)

    @classmethod
    def sizes(cls, cfg) -> tuple[int, int, int]:
        cfg = cfg.thinker_config if cfg.model_type == "qwen3_omni_moe" else cfg
        return cfg.text_config.hidden_size, cfg.text_config.num_hidden_layers, cfg.audio_config.d_model

    @classmethod
    def build_tiny(cls, path: Path, seed: int = 2028) -> None:
        from transformers import (Qwen3OmniMoeAudioEncoderConfig, Qwen3OmniMoeTextConfig, Qwen3OmniMoeThinkerConfig,
                                  Qwen3OmniMoeThinkerForConditionalGeneration, Qwen3OmniMoeVisionEncoderConfig,
                                  WhisperFeatureExtractor)

        from ..tiny import byte_bpe_tokenizer, randomise, write_marker

        special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|audio_pad|>", "<|audio_start|>",
                   "<|audio_end|>", "<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>"]
        tokenizer = byte_bpe_tokenizer(special)
        ids = {t: tokenizer.convert_tokens_to_ids(t) for t in special}
        audio = Qwen3OmniMoeAudioEncoderConfig(num_mel_bins=128, encoder_layers=2, encoder_attention_heads=4,
                                               encoder_ffn_dim=64, d_model=32, output_dim=64,
                                               downsample_hidden_size=16, max_source_positions=1500)
        vision = Qwen3OmniMoeVisionEncoderConfig(depth=1, hidden_size=32, intermediate_size=64, num_heads=2,
                                                 out_hidden_size=64, deepstack_visual_indexes=[0])
        # TMRoPE: the three sections sum to half the head size (64 / 4 heads / 2 = 8); 4 experts, 2 per token
        text = Qwen3OmniMoeTextConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      moe_intermediate_size=32, num_experts=4, num_experts_per_tok=2,
                                      rope_parameters={"rope_type": "default", "rope_theta": 1e6,
                                                       "mrope_section": [2, 3, 3], "mrope_interleaved": True},
                                      pad_token_id=tokenizer.pad_token_id)
        cfg = Qwen3OmniMoeThinkerConfig(
            audio_config=audio, vision_config=vision, text_config=text, audio_token_id=ids["<|audio_pad|>"],
            image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
            audio_start_token_id=ids["<|audio_start|>"], vision_start_token_id=ids["<|vision_start|>"])
        model = randomise(Qwen3OmniMoeThinkerForConditionalGeneration(cfg), torch.Generator().manual_seed(seed))
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
        WhisperFeatureExtractor(feature_size=128).save_pretrained(path)
        write_marker(path, "Qwen3-Omni thinker", seed=seed)


RECIPES = {"voxtral": VoxtralRecipe, "qwen3_omni_moe_thinker": Qwen3OmniRecipe, "qwen3_omni_moe": Qwen3OmniRecipe}
