"""BEATs, inference only: Kaldi filterbank, patch embedding and the relative-position Transformer encoder.

A compact port of the audio encoder SALMONN uses (`BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt`), written from
the published architecture so that it needs neither torchaudio nor the original sources. It loads the original
checkpoint (`{"cfg": {...}, "model": state_dict}`) with its original parameter names and checks every tensor.

Pipeline for one clip (16 kHz mono, float):
1. Kaldi log-mel filterbank of the waveform scaled by 2**15 (128 bins, 25 ms Povey window, 10 ms shift, no dither),
   computed in float64 like the official stack, normalised with mean 15.41663 and 2 x std 6.55582.
2. A 16x16 stride-16 convolution turns (frames, 128) into (frames // 16, 8) patches of `embed_dim` channels,
   flattened time-major (8 frequency patches per 160 ms step), LayerNorm, Linear to `encoder_embed_dim`.
3. A grouped, weight-normalised convolutional position embedding (GELU, last frame dropped for even kernels) is
   added, then LayerNorm (post-LN model).
4. Post-LN "deep-norm" layers (residual scaled by (2 L)^(1/4)) whose attention adds a T5-style bucketed relative
   position bias, shared by all layers and gated per head and position by the query (`grep_linear`, `grep_a`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ModelError
from ..checkpoint import read_checkpoint, tensor_report

FBANK_MEAN = 15.41663
FBANK_STD = 6.55582
SAMPLE_RATE = 16_000
# Keys of the original checkpoint that the feature extractor does not use: the AudioSet classifier head.
UNUSED = (re.compile(r"predictor\..*"),)
SHARED = r"encoder\.layers\.\d+\.self_attn\.relative_attention_bias\.weight"  # one table, listed per layer


# ---------------------------------------------------------------------- Kaldi filterbank


def _mel(freq):
    return 1127.0 * torch.log(1.0 + freq / 700.0) if torch.is_tensor(freq) else 1127.0 * math.log(1.0 + freq / 700.0)


def mel_banks(bins: int, fft_size: int, sample_rate: float, low: float = 20.0, high: float = 0.0) -> torch.Tensor:
    """Kaldi's triangular mel filters, (bins, fft_size // 2 + 1); built in float32 as Kaldi-compatible code does."""
    nyquist = 0.5 * sample_rate
    high = high + nyquist if high <= 0.0 else high
    mel_low, mel_high = _mel(low), _mel(high)
    delta = (mel_high - mel_low) / (bins + 1)
    index = torch.arange(bins, dtype=torch.float32).unsqueeze(1)
    left, center, right = (mel_low + (index + k) * delta for k in (0.0, 1.0, 2.0))
    freqs = (sample_rate / fft_size) * torch.arange(fft_size // 2, dtype=torch.float32)
    mel = _mel(freqs).unsqueeze(0)
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    banks = torch.clamp(torch.minimum(up, down), min=0.0)
    return F.pad(banks, (0, 1))  # the Nyquist bin gets no weight


def kaldi_fbank(wave: torch.Tensor, bins: int = 128, sample_rate: int = SAMPLE_RATE, frame_ms: float = 25.0,
                shift_ms: float = 10.0, preemphasis: float = 0.97) -> torch.Tensor:
    """Log-mel filterbank of a 1-D waveform, (frames, bins), in the waveform's dtype (Kaldi `compute-fbank-feats`
    defaults: snip edges, DC removal, pre-emphasis, Povey window, FFT size rounded up to a power of two, power
    spectrum, log floored at float32 epsilon)."""
    size = int(sample_rate * frame_ms / 1000)
    shift = int(sample_rate * shift_ms / 1000)
    if wave.dim() != 1 or wave.numel() < size:
        raise ModelError(f"BEATs needs a mono clip of at least {size} samples ({frame_ms:g} ms), "
                         f"got shape {tuple(wave.shape)}")
    fft_size = 1 << (size - 1).bit_length()
    frames = wave.unfold(0, size, shift)  # (m, size): only frames that fit entirely
    frames = frames - frames.mean(dim=1, keepdim=True)
    previous = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)
    frames = frames - preemphasis * previous
    window = torch.hann_window(size, periodic=False, dtype=wave.dtype, device=wave.device).pow(0.85)
    spectrum = torch.fft.rfft(frames * window, n=fft_size).abs().pow(2.0)
    banks = mel_banks(bins, fft_size, sample_rate).to(device=wave.device, dtype=wave.dtype)
    energies = spectrum @ banks.T
    eps = torch.tensor(torch.finfo(torch.float32).eps, dtype=wave.dtype, device=wave.device)
    return torch.maximum(energies, eps).log()


# ---------------------------------------------------------------------- configuration


@dataclass
class BeatsConfig:
    """The fields of the original `cfg` dict that inference needs, with the original defaults."""

    input_patch_size: int = -1
    embed_dim: int = 512
    conv_bias: bool = False
    encoder_layers: int = 12
    encoder_embed_dim: int = 768
    encoder_ffn_embed_dim: int = 3072
    encoder_attention_heads: int = 12
    activation_fn: str = "gelu"
    layer_norm_first: bool = False
    deep_norm: bool = False
    conv_pos: int = 128
    conv_pos_groups: int = 16
    relative_position_embedding: bool = False
    num_buckets: int = 320
    max_distance: int = 1280
    gru_rel_pos: bool = False
    finetuned_model: bool = False
    predictor_class: int = 527

    @classmethod
    def from_dict(cls, cfg: dict, source: str) -> "BeatsConfig":
        if not isinstance(cfg, dict):
            raise ModelError(f"{source}: 'cfg' is {type(cfg).__name__}, not a dict of BEATs settings")
        names = {f.name for f in fields(cls)}
        out = cls(**{k: v for k, v in cfg.items() if k in names})
        if out.input_patch_size <= 0:
            raise ModelError(f"{source}: cfg.input_patch_size is {out.input_patch_size}; expected the patch size (16)")
        if out.layer_norm_first:
            raise ModelError(f"{source}: cfg.layer_norm_first is true; only the post-LN BEATs models are supported")
        if out.activation_fn != "gelu":
            raise ModelError(f"{source}: cfg.activation_fn is {out.activation_fn!r}; only 'gelu' is supported")
        return out

    @property
    def width(self) -> int:
        return self.encoder_embed_dim


# ---------------------------------------------------------------------- modules


class _PosConv(nn.Module):
    """Grouped Conv1d whose weight is stored weight-normalised over all axes but the kernel axis (dim=2)."""

    def __init__(self, width: int, kernel: int, groups: int):
        super().__init__()
        self.kernel, self.groups = kernel, groups
        self.weight_g = nn.Parameter(torch.ones(1, 1, kernel))
        self.weight_v = nn.Parameter(torch.zeros(width, width // groups, kernel))
        self.bias = nn.Parameter(torch.zeros(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T) -> (B, C, T)
        norm = self.weight_v.pow(2).sum(dim=(0, 1), keepdim=True).sqrt()
        weight = self.weight_v * (self.weight_g / norm)
        y = F.conv1d(x, weight, self.bias, padding=self.kernel // 2, groups=self.groups)
        if self.kernel % 2 == 0:
            y = y[..., :-1]
        return F.gelu(y)


class _Attention(nn.Module):
    def __init__(self, cfg: BeatsConfig, bias: nn.Embedding | None):
        super().__init__()
        width, heads = cfg.encoder_embed_dim, cfg.encoder_attention_heads
        self.heads, self.head_dim = heads, width // heads
        self.q_proj, self.k_proj = nn.Linear(width, width), nn.Linear(width, width)
        self.v_proj, self.out_proj = nn.Linear(width, width), nn.Linear(width, width)
        if bias is not None:
            self.relative_attention_bias = bias  # one module shared by all layers, listed under each
        self.gated = cfg.gru_rel_pos
        if self.gated:
            self.grep_linear = nn.Linear(self.head_dim, 8)
            self.grep_a = nn.Parameter(torch.ones(1, heads, 1, 1))

    def forward(self, x: torch.Tensor, position_bias: torch.Tensor | None) -> torch.Tensor:
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)  # (B, H, T, d)
        k = self.k_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        scores = (q * self.head_dim ** -0.5) @ k.transpose(-1, -2)
        scores = scores - scores.amax(dim=-1, keepdim=True)  # as the original; softmax is shift-invariant
        if position_bias is not None:
            if self.gated:
                gates = torch.sigmoid(self.grep_linear(q).view(b, self.heads, t, 2, 4).sum(-1))
                gate_a, gate_b = gates[..., :1], gates[..., 1:]
                position_bias = (gate_a * (gate_b * self.grep_a - 1.0) + 2.0) * position_bias
            scores = scores + position_bias
        attn = torch.softmax(scores.float(), dim=-1).to(v.dtype)
        out = (attn @ v).transpose(1, 2).reshape(b, t, -1)
        return self.out_proj(out)


class _Layer(nn.Module):
    def __init__(self, cfg: BeatsConfig, bias: nn.Embedding | None):
        super().__init__()
        width = cfg.encoder_embed_dim
        self.self_attn = _Attention(cfg, bias)
        self.self_attn_layer_norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, cfg.encoder_ffn_embed_dim)
        self.fc2 = nn.Linear(cfg.encoder_ffn_embed_dim, width)
        self.final_layer_norm = nn.LayerNorm(width)
        self.alpha = math.pow(2 * cfg.encoder_layers, 0.25) if cfg.deep_norm else 1.0

    def forward(self, x: torch.Tensor, position_bias: torch.Tensor | None) -> torch.Tensor:
        x = self.self_attn_layer_norm(x * self.alpha + self.self_attn(x, position_bias))
        return self.final_layer_norm(x * self.alpha + self.fc2(F.gelu(self.fc1(x))))


class _Encoder(nn.Module):
    def __init__(self, cfg: BeatsConfig):
        super().__init__()
        width = cfg.encoder_embed_dim
        self.pos_conv = nn.ModuleList([_PosConv(width, cfg.conv_pos, cfg.conv_pos_groups)])
        self.layer_norm = nn.LayerNorm(width)
        bias = nn.Embedding(cfg.num_buckets, cfg.encoder_attention_heads) if cfg.relative_position_embedding else None
        self.layers = nn.ModuleList([_Layer(cfg, bias) for _ in range(cfg.encoder_layers)])
        self.relative, self.num_buckets, self.max_distance = bias is not None, cfg.num_buckets, cfg.max_distance

    def buckets(self, length: int, device) -> torch.Tensor:
        """Bidirectional log-spaced buckets of the offsets key - query, (T, T)."""
        pos = torch.arange(length, device=device)
        offset = pos[None, :] - pos[:, None]
        half = self.num_buckets // 2
        exact = half // 2
        distance = offset.abs()
        large = exact + (torch.log(distance.clamp(min=1).float() / exact) / math.log(self.max_distance / exact)
                         * (half - exact)).long()
        large = large.clamp(max=half - 1)
        return (offset > 0).long() * half + torch.where(distance < exact, distance, large)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_conv[0](x.transpose(1, 2)).transpose(1, 2)
        x = self.layer_norm(x)
        bias = None
        if self.relative:
            table = self.layers[0].self_attn.relative_attention_bias
            bias = table(self.buckets(x.shape[1], x.device)).permute(2, 0, 1).unsqueeze(0)  # (1, H, T, T)
        for layer in self.layers:
            x = layer(x, bias)
        return x


class Beats(nn.Module):
    """BEATs feature extractor: `forward(wave)` maps one 1-D 16 kHz clip to its tokens (N, encoder_embed_dim)."""

    def __init__(self, cfg: BeatsConfig):
        super().__init__()
        self.cfg = cfg
        patch = cfg.input_patch_size
        self.patch_embedding = nn.Conv2d(1, cfg.embed_dim, kernel_size=patch, stride=patch, bias=cfg.conv_bias)
        self.layer_norm = nn.LayerNorm(cfg.embed_dim)
        self.post_extract_proj = (nn.Linear(cfg.embed_dim, cfg.encoder_embed_dim)
                                  if cfg.embed_dim != cfg.encoder_embed_dim else None)
        self.encoder = _Encoder(cfg)

    def fbank(self, wave: torch.Tensor) -> torch.Tensor:
        """Normalised filterbank (frames, 128) in float64."""
        return (kaldi_fbank(wave.to(torch.float64) * 2 ** 15) - FBANK_MEAN) / (2 * FBANK_STD)

    def tokens(self, wave: torch.Tensor) -> int:
        """How many tokens `forward` returns for a clip of this length."""
        frames = 1 + (wave.shape[-1] - 400) // 160
        return (frames // self.cfg.input_patch_size) * (128 // self.cfg.input_patch_size)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if self.tokens(wave) < 1:
            raise ModelError(f"a {wave.shape[-1] / SAMPLE_RATE:.3f} s clip is too short for BEATs "
                             f"(it needs {self.cfg.input_patch_size} filterbank frames, about 0.17 s)")
        weight = self.patch_embedding.weight
        fbank = self.fbank(wave).to(weight.dtype)
        x = self.patch_embedding(fbank[None, None])  # (1, C, T/16, 8)
        x = x.flatten(2).transpose(1, 2)  # time-major: token i is (time i // 8, band i % 8)
        x = self.layer_norm(x)
        if self.post_extract_proj is not None:
            x = self.post_extract_proj(x)
        return self.encoder(x)[0]


# ---------------------------------------------------------------------- checkpoint


def beats_config(path: str | Path) -> BeatsConfig:
    """The BEATs settings stored in the checkpoint (the weights are memory-mapped, not read)."""
    data = read_checkpoint(path, "BEATs")
    if not isinstance(data, dict) or "cfg" not in data:
        raise ModelError(f"{path}: not a BEATs checkpoint (no 'cfg' entry)")
    return BeatsConfig.from_dict(data["cfg"], str(path))


def load_beats(path: str | Path) -> Beats:
    """BEATs from the original `.pt`: every tensor the encoder uses must be present with its shape.

    The state dict lists the shared relative-position table under every layer; copies under layers >= 1 may be
    absent but, if present, must equal layer 0's. The classifier head (`predictor.*`) is ignored.
    """
    data = read_checkpoint(path, "BEATs")
    if not isinstance(data, dict) or "cfg" not in data or "model" not in data:
        raise ModelError(f"{path}: not a BEATs checkpoint (expected the keys 'cfg' and 'model')")
    cfg = BeatsConfig.from_dict(data["cfg"], str(path))
    state = data["model"]
    with torch.device("meta"):
        model = Beats(cfg)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    first = "encoder.layers.0.self_attn.relative_attention_bias.weight"
    shared = [k for k in expected if k != first and re.fullmatch(SHARED, k)]
    tensor_report({k: tuple(v.shape) for k, v in state.items()}, expected, f"BEATs checkpoint {path}",
                  unused=UNUSED, optional=shared)
    for key in shared:
        if key in state and not torch.equal(state[key], state[first]):
            raise ModelError(f"BEATs checkpoint {path}: {key} differs from the shared table {first}")
    model = Beats(cfg)
    model.load_state_dict({k: state[k] if k in state else state[first] for k in expected}, strict=True)
    return model.eval()
