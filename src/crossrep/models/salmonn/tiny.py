"""A small random SALMONN in the official file formats, for demos and tests."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import torch

from ..tiny import randomise, write_marker
from .beats import Beats, BeatsConfig
from .model import LLM, SalmonnAudio, lora_names, official_audio_names

TINY_SEED = 4321


def tiny_paths(path: Path) -> dict[str, str]:
    return {"salmonn": str(path / "salmonn.pth"), "whisper": str(path / "whisper"), "beats": str(path / "beats.pt"),
            "llm": str(path / "llm")}


def _train_tokenizer(seed: int) -> bytes:
    """A small Llama-style SentencePiece BPE model (byte fallback, digits split, no normalisation)."""
    import io

    import sentencepiece as spm

    from ...data.demo import corpus

    lines = [line for lines in corpus().values() for line in lines]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, vocab_size=3000, model_type="bpe",
        character_coverage=0.995, byte_fallback=True, split_digits=True, add_dummy_prefix=True,
        remove_extra_whitespaces=False, normalization_rule_name="identity", allow_whitespace_only_pieces=True,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=1, minloglevel=2)
    return model.getvalue()


def build_tiny(path: Path, seed: int = TINY_SEED, llm_width: int = 64, llm_layers: int = 2) -> Path:
    """A small random SALMONN in the official formats under `path` (see `tiny_paths`): the SALMONN `.pth`
    (trained tensors plus the known-unused extras the training code saves), a Whisper folder, the BEATs `.pt`
    and a LLaMA folder with a SentencePiece tokenizer trained on crossrep's demo corpus. Real sequence lengths
    (3000 mel frames, 1500 Whisper frames, 88 windows), small widths."""
    from transformers import (LlamaConfig, LlamaForCausalLM, WhisperConfig, WhisperFeatureExtractor,
                              WhisperForConditionalGeneration)

    gen = torch.Generator().manual_seed(seed)
    path.mkdir(parents=True, exist_ok=True)
    llm_dir = path / "llm"
    llm_dir.mkdir(exist_ok=True)
    sp_model = _train_tokenizer(seed)
    (llm_dir / "tokenizer.model").write_bytes(sp_model)
    (llm_dir / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
         "pad_token": None, "add_bos_token": True, "add_eos_token": False, "legacy": False,
         "model_max_length": 2048, "clean_up_tokenization_spaces": False}, indent=1))
    (llm_dir / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}, indent=1))
    import sentencepiece as spm

    vocab = spm.SentencePieceProcessor(model_proto=sp_model).get_piece_size()
    torch.manual_seed(seed)
    llm_cfg = LlamaConfig(vocab_size=vocab, hidden_size=llm_width, intermediate_size=2 * llm_width,
                          num_hidden_layers=llm_layers,
                          num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=2048,
                          bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False)
    llm = LlamaForCausalLM(llm_cfg)
    randomise(llm, gen)
    llm.save_pretrained(llm_dir)

    whisper_cfg = WhisperConfig(vocab_size=64, num_mel_bins=80, d_model=32, encoder_layers=2,
                                encoder_attention_heads=4, encoder_ffn_dim=64, decoder_layers=1,
                                decoder_attention_heads=4, decoder_ffn_dim=64, max_source_positions=1500,
                                max_target_positions=32, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                                decoder_start_token_id=3, suppress_tokens=[], begin_suppress_tokens=[])
    whisper = WhisperForConditionalGeneration(whisper_cfg)
    randomise(whisper, gen)
    whisper.save_pretrained(path / "whisper")
    WhisperFeatureExtractor(feature_size=80).save_pretrained(path / "whisper")

    beats_cfg = {"input_patch_size": 16, "embed_dim": 32, "conv_bias": False, "encoder_layers": 2,
                 "encoder_embed_dim": 48, "encoder_ffn_embed_dim": 64, "encoder_attention_heads": 4,
                 "activation_fn": "gelu", "layer_wise_gradient_decay_ratio": 1.0, "layer_norm_first": False,
                 "deep_norm": True, "dropout": 0.0, "attention_dropout": 0.0, "activation_dropout": 0.0,
                 "encoder_layerdrop": 0.0, "dropout_input": 0.0, "conv_pos": 128, "conv_pos_groups": 16,
                 "relative_position_embedding": True, "num_buckets": 320, "max_distance": 800,
                 "gru_rel_pos": True, "finetuned_model": True, "predictor_dropout": 0.0, "predictor_class": 10}
    beats = Beats(BeatsConfig.from_dict(beats_cfg, "tiny"))
    randomise(beats, gen)
    beats_state = dict(beats.state_dict())
    beats_state["predictor.weight"] = torch.randn(10, 48, generator=gen) / math.sqrt(48)
    beats_state["predictor.bias"] = 0.2 * torch.randn(10, generator=gen)
    torch.save({"cfg": beats_cfg, "model": beats_state}, path / "beats.pt")

    q_hidden, q_inter = 128, 256
    audio = SalmonnAudio(32, 48, q_hidden, q_inter, llm_width)
    randomise(audio, gen)
    names = official_audio_names(audio)
    state = {names[k]: v.clone() for k, v in audio.state_dict().items()}
    for _, target, prefix in lora_names(llm_cfg.num_hidden_layers):
        state[f"{prefix}.lora_A.default.weight"] = torch.randn(8, llm_width, generator=gen) / math.sqrt(llm_width)
        state[f"{prefix}.lora_B.default.weight"] = torch.randn(llm_width, 8, generator=gen) / math.sqrt(8)
    state.update(_unused_extras(q_hidden, q_inter, llm_cfg, beats_state, gen))
    torch.save({"model": state}, path / "salmonn.pth")
    write_marker(path, "SALMONN", seed=seed,
                 files={k: str(Path(v).relative_to(path)) for k, v in tiny_paths(path).items()})
    return path


def _unused_extras(hidden: int, inter: int, llm_cfg, beats_state: dict, gen: torch.Generator) -> dict:
    """The tensors the official training code also saves (text side of the Q-Former, buffers, aliases)."""
    q = "speech_Qformer."
    words = torch.randn(30, hidden, generator=gen)
    extras = {f"{q}bert.embeddings.word_embeddings.weight": words,
              f"{q}bert.embeddings.position_embeddings.weight": torch.randn(16, hidden, generator=gen),
              f"{q}bert.embeddings.position_ids": torch.arange(16).unsqueeze(0),
              f"{q}cls.predictions.bias": torch.zeros(30),
              f"{q}cls.predictions.transform.dense.weight": torch.randn(hidden, hidden, generator=gen),
              f"{q}cls.predictions.transform.dense.bias": torch.zeros(hidden),
              f"{q}cls.predictions.transform.LayerNorm.weight": torch.ones(hidden),
              f"{q}cls.predictions.transform.LayerNorm.bias": torch.zeros(hidden),
              f"{q}cls.predictions.decoder.weight": words,
              f"{q}cls.predictions.decoder.bias": torch.zeros(30)}
    for i in range(2):
        layer = f"{q}bert.encoder.layer.{i}."
        extras.update({layer + "intermediate.dense.weight": torch.randn(inter, hidden, generator=gen),
                       layer + "intermediate.dense.bias": torch.zeros(inter),
                       layer + "output.dense.weight": torch.randn(hidden, inter, generator=gen),
                       layer + "output.dense.bias": torch.zeros(hidden),
                       layer + "output.LayerNorm.weight": torch.ones(hidden),
                       layer + "output.LayerNorm.bias": torch.zeros(hidden)})
    head = llm_cfg.hidden_size // llm_cfg.num_attention_heads
    inv_freq = 1.0 / (10000 ** (torch.arange(0, head, 2).float() / head))
    for i in range(llm_cfg.num_hidden_layers):
        extras[f"{LLM}model.layers.{i}.self_attn.rotary_emb.inv_freq"] = inv_freq
    for key, value in beats_state.items():
        if re.fullmatch(r"encoder\.layers\.[1-9]\d*\.self_attn\.relative_attention_bias\.weight", key):
            extras["beats." + key] = value
    return extras
