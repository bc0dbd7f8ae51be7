"""SONAR's text encoder and speech encoders on transformers modules, loading the official checkpoints.

Text (`text_sonar_basic_encoder`): transformers' `M2M100Encoder` (pre-LN layers, scaled embeddings plus
fairseq sinusoidal positions, final LayerNorm); the sentence embedding is the mean of the final LayerNorm's
output over all non-pad tokens, language tag and `</s>` included. Token ids are transformers'
`NllbTokenizer` ids: they equal fairseq2's but for ids 0-3, whose embedding rows are permuted at load.

Speech (`sonar_speech_encoder_<lang>`): 80-bin Kaldi fbank standardised per utterance and bin, pairs of
frames stacked to 160, transformers' SeamlessM4T v1 conformer (feature projection, 24 blocks with relative
positions and a BatchNorm convolution, final LayerNorm), then SONAR's attention pooler: a post-LN decoder
run for one step on a fixed query (3 layers for English, 6 for the others), projected without bias.

Points: "in" (the input of layer 1), "1".."L" (each layer's raw output), "pool" (the sentence embedding).
Sizes are read from the state dict. The speech conformer's head count is read from its relative-position
biases ([heads, head size]); the text encoder and the speech pooler carry theirs in no tensor shape, so they are
the adapter options `text_heads` and `pooler_heads` (recorded with the results), else `crossrep_config.num_heads`
in the checkpoint, else width / 64 (SONAR's head size) for the text encoder and the conformer's count for the
pooler. Checkpoints: `{"model": state_dict}` in fairseq2 names (text;
speech as `fairseq2_native`) or, for speech, the fairseq1 names of the published `spenc.*.pt` files.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ...errors import ModelError
from ..base import Recorder
from ..checkpoint import read_checkpoint, tensor_report

HEAD_SIZE = 64
TEXT_MAX_TOKENS = 514  # the official pipeline cuts ids to this, language tag and </s> included
SPEECH_MAX_FRAMES = 4096  # stacked frames (about 82 s); the official encoder refuses longer input
BOS = 2  # the pooler's query row

# ISO codes with a published SONAR speech encoder (the 57 cards of sonar_speech_encoder.yaml, ISO 639-3).
SPEECH_LANGUAGES = frozenset(
    "arb asm bel ben bos bul cat ces cmn cym dan deu eng est fin fra guj heb hin hrv ind ita jpn kan kor lao lit "
    "lvs mal mar mkd mlt nld npi ory pan pes pol por ron rus slk slv snd spa srp swh tam tel tgl tha tur ukr urd "
    "uzn vie yue".split())


@dataclass
class EncoderStates:
    """One batch through an encoder: per-point states (batch x time x features, "in", layers, final LN),
    the valid length of each row, and the sentence embeddings (batch x features)."""

    states: list[torch.Tensor]
    lengths: torch.Tensor
    pooled: torch.Tensor

    def mask(self) -> torch.Tensor:
        t = self.states[0].shape[1]
        return torch.arange(t, device=self.lengths.device)[None, :] < self.lengths[:, None]


# ---------------------------------------------------------------------- checkpoints


def read_state(path: str | Path) -> tuple[dict, dict]:
    """The state dict of a SONAR `.pt` file (under "model" or bare) and crossrep's size hints, if any."""
    ckpt = read_checkpoint(path, "SONAR")
    state = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path}: not a SONAR checkpoint (expected a state dict of tensors under 'model')")
    return state, dict(ckpt.get("crossrep_config", {}))


def _rename(key: str, rules: list[tuple[str, str]]) -> str:
    for pattern, repl in rules:
        key = re.sub(pattern, repl, key)
    return key


def _load(module: nn.Module, state: dict, rules: list[tuple[str, str]], where: str,
          unused: tuple = (), transform=None) -> None:
    """Load `state` into `module` through a name map (module name -> checkpoint name); every tensor the module
    needs must be there with its shape, and nothing else may be left over but the `unused` patterns."""
    source = {name: _rename(name, rules) for name in module.state_dict()}
    expected = {source[name]: tuple(own.shape) for name, own in module.state_dict().items()}
    tensor_report({k: tuple(v.shape) for k, v in state.items()}, expected,
                  f"{where}: checkpoint does not fit the SONAR model", unused=unused)
    values = {name: state[src] for name, src in source.items()}
    if transform is not None:
        values = {name: transform(name, value) for name, value in values.items()}
    module.load_state_dict(values, strict=True)


def _count(state: dict, prefix: str) -> int:
    found = {int(m.group(1)) for k in state for m in [re.match(re.escape(prefix) + r"(\d+)\.", k)] if m}
    return max(found) + 1 if found else 0


def _need(state: dict, key: str, where: str) -> torch.Tensor:
    if key not in state:
        raise ModelError(f"{where}: checkpoint has no {key!r}; it is not a SONAR {where.split(':')[0]} checkpoint")
    return state[key]


# ---------------------------------------------------------------------- text

# module name -> fairseq2 name
_TEXT_RULES = [
    (r"^encoder\.embed_tokens\.", "encoder_frontend.embed."),
    (r"^encoder\.layer_norm\.", "layer_norm."),
    (r"\.self_attn\.out_proj\.", ".self_attn.output_proj."),
    (r"\.fc1\.", ".ffn.inner_proj."),
    (r"\.fc2\.", ".ffn.output_proj."),
    (r"\.final_layer_norm\.", ".ffn_layer_norm."),
]
# fairseq2 rows <pad>, <unk>, <s>, </s> = 0, 1, 2, 3; transformers' NLLB ids <s>, <pad>, </s>, <unk> = 0, 1, 2, 3
FS2_ROWS_FOR_HF_SPECIALS = [2, 0, 3, 1]


class _Checkpointed(nn.Module):
    what = ""  # for messages: "text encoder", "speech encoder"

    @classmethod
    def from_checkpoint(cls, path: str | Path, num_heads: int | None = None, **sizes):
        """Load an official `.pt` file; `num_heads` defaults to the file's crossrep hint (see the module)."""
        state, hints = read_state(path)
        return cls.from_state_dict(state, num_heads or hints.get("num_heads"), f"{cls.what}: {path}", **sizes)


class SonarTextEncoder(_Checkpointed):
    what = "text encoder"

    def __init__(self, vocab: int, dim: int, layers: int, heads: int, ffn: int):
        from transformers import M2M100Config
        from transformers.models.m2m_100.modeling_m2m_100 import M2M100Encoder

        super().__init__()
        cfg = M2M100Config(vocab_size=vocab, d_model=dim, encoder_layers=layers, encoder_attention_heads=heads,
                           encoder_ffn_dim=ffn, decoder_layers=1, decoder_attention_heads=heads,
                           decoder_ffn_dim=ffn, pad_token_id=1, scale_embedding=True, activation_function="relu",
                           max_position_embeddings=TEXT_MAX_TOKENS, dropout=0.0, attention_dropout=0.0,
                           activation_dropout=0.0, encoder_layerdrop=0.0)
        cfg._attn_implementation = "eager"
        self.encoder = M2M100Encoder(cfg)

    @classmethod
    def from_state_dict(cls, state: dict, num_heads: int | None = None,
                        where: str = "text encoder: state dict") -> "SonarTextEncoder":
        vocab, dim = _need(state, "encoder_frontend.embed.weight", where).shape
        layers = _count(state, "encoder.layers.")
        ffn = _need(state, "encoder.layers.0.ffn.inner_proj.weight", where).shape[0]
        model = cls(vocab, dim, layers, num_heads or max(dim // HEAD_SIZE, 1), ffn)

        def permute(name, value):
            if name == "encoder.embed_tokens.weight":
                value = value.clone()
                value[:4] = state["encoder_frontend.embed.weight"][FS2_ROWS_FOR_HF_SPECIALS]
            return value

        _load(model, state, _TEXT_RULES, where, transform=permute)
        return model.eval()

    def fairseq2_state(self) -> dict:
        """This model's weights under the official names (as `sonar_text_encoder.pt` holds them)."""
        out = {_rename(k, _TEXT_RULES): v.detach().clone() for k, v in self.state_dict().items()}
        emb = out["encoder_frontend.embed.weight"]
        emb[FS2_ROWS_FOR_HF_SPECIALS] = self.encoder.embed_tokens.weight.detach()[:4]
        return out

    @torch.inference_mode()
    def states(self, tokens: torch.Tensor, lengths: torch.Tensor) -> EncoderStates:
        """`tokens`: NllbTokenizer ids (batch x time, right-padded with 1), `lengths`: valid ids per row."""
        mask = torch.arange(tokens.shape[1], device=tokens.device)[None, :] < lengths[:, None].to(tokens.device)
        rec = Recorder()
        layers = self.encoder.layers
        rec.layers(layers)
        try:
            out = self.encoder(input_ids=tokens, attention_mask=mask.long()).last_hidden_state
        finally:
            rec.remove()
        states = [rec.values["in"]] + [rec.values[str(i)] for i in range(1, len(layers) + 1)] + [out]
        m = mask.to(out.dtype).unsqueeze(-1)
        pooled = (out * m).sum(dim=1) / m.sum(dim=1)
        return EncoderStates(states, lengths.to(tokens.device), pooled)


# ---------------------------------------------------------------------- speech

# module name -> fairseq2 name (fairseq2_native files and what sonar-space converts to)
_SPEECH_FS2_RULES = [
    (r"^feature_projection\.layer_norm\.", "encoder_frontend.post_extract_layer_norm."),
    (r"^feature_projection\.projection\.", "encoder_frontend.model_dim_proj."),
    (r"^encoder\.layer_norm\.", "layer_norm."),
    (r"\.ffn(\d)\.intermediate_dense\.", r".ffn\1.inner_proj."),
    (r"\.ffn(\d)\.output_dense\.", r".ffn\1.output_proj."),
    (r"\.self_attn\.linear_([qkv])\.", r".self_attn.\1_proj."),
    (r"\.self_attn\.linear_out\.", ".self_attn.output_proj."),
    (r"\.self_attn\.linear_pos\.", ".self_attn.sdpa.r_proj."),
    (r"\.self_attn\.pos_bias_([uv])$", r".self_attn.sdpa.\1_bias"),
    (r"\.conv_module\.layer_norm\.", ".conv_layer_norm."),
    (r"\.conv_module\.", ".conv."),
    (r"^(encoder\.layers\.\d+)\.final_layer_norm\.", r"\1.layer_norm."),
    (r"^pooler\.embed_tokens\.", "encoder_pooler.decoder_frontend.embed."),
    (r"^pooler\.embed_out$", "encoder_pooler.projection_out.weight"),
    (r"^pooler\.layers\.", "encoder_pooler.decoder.layers."),
    (r"\.encoder_attn(_layer_norm)?\.", r".encoder_decoder_attn\1."),
    (r"\.(self_attn|encoder_decoder_attn)\.out_proj\.", r".\1.output_proj."),
    (r"(decoder\.layers\.\d+)\.fc1\.", r"\1.ffn.inner_proj."),
    (r"(decoder\.layers\.\d+)\.fc2\.", r"\1.ffn.output_proj."),
    (r"(decoder\.layers\.\d+)\.final_layer_norm\.", r"\1.ffn_layer_norm."),
]
# module name -> fairseq1 name (the published spenc.*.pt files)
_SPEECH_FS1_RULES = [
    (r"^encoder\.", "encoder.w2v_model.encoder."),
    (r"^feature_projection\.layer_norm\.", "encoder.w2v_model.layer_norm."),
    (r"^feature_projection\.projection\.", "encoder.w2v_model.post_extract_proj."),
    (r"\.ffn(\d)_layer_norm\.", r".ffn\1.layer_norm."),
    (r"\.ffn(\d)\.intermediate_dense\.", r".ffn\1.w_1."),
    (r"\.ffn(\d)\.output_dense\.", r".ffn\1.w_2."),
    (r"^pooler\.", "decoder."),
]
# fairseq1 entries the forward pass does not use (training-time masking, the unused positional conv, versions)
_SPEECH_FS1_UNUSED = tuple(re.compile(p) for p in (
    r"encoder\.w2v_model\.mask_emb", r"encoder\.w2v_model\.encoder\.pos_conv\..*", r".*\.version",
    r"decoder\.embed_positions\._float_tensor"))


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x: torch.Tensor, memory: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, t, d = x.shape
        split = lambda y: y.view(b, -1, self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.q_proj(x)), split(self.k_proj(memory)), split(self.v_proj(memory))
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // self.heads)
        if key_mask is not None:
            scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        out = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, t, d)
        return self.out_proj(out)


class _PoolerLayer(nn.Module):
    """A post-LN decoder layer (names as fairseq1's TransformerDecoderLayer)."""

    def __init__(self, dim: int, heads: int, ffn: int):
        super().__init__()
        self.self_attn, self.encoder_attn = _Attention(dim, heads), _Attention(dim, heads)
        self.self_attn_layer_norm, self.encoder_attn_layer_norm, self.final_layer_norm = (
            nn.LayerNorm(dim) for _ in range(3))
        self.fc1, self.fc2 = nn.Linear(dim, ffn), nn.Linear(ffn, dim)

    def forward(self, x, memory, key_mask):
        x = self.self_attn_layer_norm(x + self.self_attn(x, x))
        x = self.encoder_attn_layer_norm(x + self.encoder_attn(x, memory, key_mask))
        return self.final_layer_norm(x + self.fc2(torch.relu(self.fc1(x))))


class AttentionPooler(nn.Module):
    """SONAR's speech pooler: one decoder step from the query E[BOS]·sqrt(d) + sinusoid(step 0)."""

    def __init__(self, dim: int, layers: int, heads: int, ffn: int, rows: int):
        super().__init__()
        self.embed_tokens = nn.Embedding(rows, dim)
        self.layers = nn.ModuleList(_PoolerLayer(dim, heads, ffn) for _ in range(layers))
        self.embed_out = nn.Parameter(torch.empty(dim, dim))

    def forward(self, memory: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        dim = memory.shape[-1]
        step0 = torch.cat([torch.zeros(dim // 2), torch.ones(dim - dim // 2)]).to(memory)  # sin(0) | cos(0)
        x = (self.embed_tokens.weight[BOS] * math.sqrt(dim) + step0).expand(memory.shape[0], 1, dim)
        for layer in self.layers:
            x = layer(x, memory, key_mask)
        return nn.functional.linear(x, self.embed_out).squeeze(1)


class SonarSpeechEncoder(_Checkpointed):
    what = "speech encoder"

    def __init__(self, dim: int, layers: int, heads: int, ffn: int, kernel: int, pooler_layers: int,
                 pooler_heads: int, pooler_ffn: int, pooler_rows: int):
        from transformers import SeamlessM4TConfig
        from transformers.models.seamless_m4t.modeling_seamless_m4t import (SeamlessM4TConformerEncoder,
                                                                            SeamlessM4TConformerFeatureProjection)

        super().__init__()
        cfg = SeamlessM4TConfig(hidden_size=dim, speech_encoder_layers=layers, speech_encoder_attention_heads=heads,
                                speech_encoder_intermediate_size=ffn, speech_encoder_hidden_act="swish",
                                position_embeddings_type="relative", conv_depthwise_kernel_size=kernel,
                                feature_projection_input_dim=160, max_source_positions=SPEECH_MAX_FRAMES,
                                speech_encoder_dropout=0.0, speech_encoder_layerdrop=0.0, layer_norm_eps=1e-5)
        cfg._attn_implementation = "eager"
        self.feature_projection = SeamlessM4TConformerFeatureProjection(cfg)
        self.encoder = SeamlessM4TConformerEncoder(cfg)
        self.pooler = AttentionPooler(dim, pooler_layers, pooler_heads, pooler_ffn, pooler_rows)

    @classmethod
    def from_state_dict(cls, state: dict, num_heads: int | None = None,
                        where: str = "speech encoder: state dict",
                        pooler_heads: int | None = None) -> "SonarSpeechEncoder":
        if any(k.startswith("encoder.w2v_model.") for k in state):
            rules, ignore = _SPEECH_FS1_RULES, _SPEECH_FS1_UNUSED
        elif any(k.startswith("encoder_frontend.") for k in state):
            rules, ignore = _SPEECH_FS2_RULES, ()
        else:
            raise ModelError(f"{where}: neither fairseq1 (encoder.w2v_model.*) nor fairseq2 (encoder_frontend.*) "
                             f"SONAR speech keys")
        name = lambda k: _rename(k, rules)  # noqa: E731
        dim = _need(state, name("feature_projection.projection.weight"), where).shape[0]
        layers = _count(state, name("encoder.layers.0.x")[:-len("0.x")])
        ffn = _need(state, name("encoder.layers.0.ffn1.intermediate_dense.weight"), where).shape[0]
        kernel = _need(state, name("encoder.layers.0.conv_module.depthwise_conv.weight"), where).shape[-1]
        pooler_layers = _count(state, name("pooler.layers.0.x")[:-len("0.x")])
        pooler_ffn = _need(state, name("pooler.layers.0.fc1.weight"), where).shape[0]
        rows = _need(state, name("pooler.embed_tokens.weight"), where).shape[0]
        bias = _need(state, name("encoder.layers.0.self_attn.pos_bias_u"), where)
        heads = bias.shape[0]
        if num_heads and num_heads != heads:
            raise ModelError(f"{where}: {num_heads} attention heads asked for, but the conformer's relative-position "
                             f"biases are {list(bias.shape)} (heads x head size): {heads} heads")
        model = cls(dim, layers, heads, ffn, kernel, pooler_layers, pooler_heads or heads, pooler_ffn, rows)
        _load(model, state, rules, where, ignore)
        return model.eval()

    def fairseq1_state(self) -> dict:
        """This model's weights under the names of the published `spenc.*.pt` files."""
        return {_rename(k, _SPEECH_FS1_RULES): v.detach().clone() for k, v in self.state_dict().items()}

    @torch.inference_mode()
    def states(self, fbank: torch.Tensor, lengths: torch.Tensor) -> EncoderStates:
        """`fbank`: standardised 80-bin frames (batch x frames x 80, zero-padded), `lengths`: valid frames.
        An odd last frame is dropped and frame pairs are stacked, as the official frontend does."""
        b, t, bins = fbank.shape
        half = t // 2
        if half > SPEECH_MAX_FRAMES:
            raise ModelError(f"a clip of {t} fbank frames ({t / 100:.1f} s) is longer than SONAR's limit of "
                             f"{2 * SPEECH_MAX_FRAMES} frames")
        x = fbank[:, :2 * half].reshape(b, half, 2 * bins)
        lengths = lengths.to(fbank.device) // 2
        mask = torch.arange(half, device=fbank.device)[None, :] < lengths[:, None]
        rec = Recorder()
        rec.layers(self.encoder.layers, first_input=False)
        try:
            first = self.feature_projection(x)
            out = self.encoder(first, attention_mask=mask.long())
        finally:
            rec.remove()
        out = out[0] if isinstance(out, tuple) else getattr(out, "last_hidden_state", out)
        states = [first] + [rec.values[str(i)] for i in range(1, len(self.encoder.layers) + 1)] + [out]
        return EncoderStates(states, lengths, self.pooler(out, mask))


@functools.lru_cache(maxsize=1)
def _fbank_extractor():
    from transformers import SeamlessM4TFeatureExtractor

    return SeamlessM4TFeatureExtractor(stride=1)


def fbank(waveform: np.ndarray) -> np.ndarray:
    """80-bin Kaldi fbank of a 16 kHz clip (25/10 ms, povey window, pre-emphasis 0.97, log floored), each bin
    standardised over the clip with the unbiased std and no epsilon, as SONAR's speech pipeline does."""
    feats = _fbank_extractor()(
        waveform, sampling_rate=16_000, do_normalize_per_mel_bins=False, pad_to_multiple_of=None,
        return_attention_mask=False, return_tensors="np")["input_features"][0].astype(np.float64)
    if len(feats) < 2:
        raise ModelError(f"a clip of {len(waveform)} samples gives fewer than 2 fbank frames")
    with np.errstate(divide="ignore", invalid="ignore"):
        return ((feats - feats.mean(axis=0)) / feats.std(axis=0, ddof=1)).astype(np.float32)


# ---------------------------------------------------------------------- adapter


