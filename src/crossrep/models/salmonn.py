"""SALMONN-7B (Whisper + BEATs, window-level Q-Former, Vicuna-7B with LoRA) on transformers and peft.

The model takes audio and text together. One forward pass of the LLM sees

    BOS + tok("USER: <Speech>") + 88 audio tokens + tok("</Speech> {user prompt}\\nASSISTANT:")

where the two halves of the prompt template are tokenised separately (SentencePiece, no BOS: the ids the official
transformers-4.28 stack produced) and the user prompt holds the transcript (option `prompt`, default "{text}":
the transcript alone, since the study's prompt is not published). The LLM's states of that joint sequence are
split by position: the audio tokens make the "speech" side, the transcript tokens (option
`text_positions: transcript`, default) or every non-audio position (`prompt`: BOS and template included) the
"text" side.

Audio path (official 7B code): the clip (mono 16 kHz, cut at 30 s) goes to Whisper's encoder (log-mel padded to
30 s: 1500 frames) and to BEATs (unpadded); `ln_speech` and `ln_audio` normalise them, BEATs is zero-padded to
1500 frames after its LayerNorm, both are concatenated (1280 + 768 = 2048 features: point "enc"), cut into 88
windows of 17 frames (0.34 s; the last 4 frames are dropped), each window is summarised by the Q-Former's single
query and projected to the LLM width.

Points: "enc" (speech only: the Q-Former's input), "in" (LLM input embeddings: projected audio tokens or token
embeddings), "1".."L" (each decoder layer's raw output; "L" is taken by a hook), "out" (the final RMSNorm applied
to layer L, as transformers reports the last hidden state).

Padding. Every clip reaches the LLM as 88 audio tokens; for clips shorter than 30 s the tail windows encode
Whisper's padded silence and BEATs' zeros. `audio_positions: all` (default, as the study: everything the model
sees) pools all 88 (and all 1500 "enc" frames); `speech` pools only the windows that cover part of the clip
(ceil(ceil(samples / 320) / 17)) and the encoder frames that do (ceil(samples / 320)).

Batches are right-padded after the prompt's right half; the causal mask keeps padding out of every real position,
so batched and one-at-a-time extraction agree. Each clip's BEATs pass runs alone (no padding reaches it).

Transcript tokens are those whose text overlaps the transcript's characters (SentencePiece pieces carry their
leading space, so "▁the" counts; a lone "▁" split off before the transcript is template whitespace). Text states
are those of the joint sequence: the transcript follows the audio and attends to it.

Memory (bfloat16 on one GPU): 7.49 B parameters = 14.98 GB of weights (Vicuna-7B 6.74 B, Whisper large-v2
encoder 0.64 B, BEATs 0.09 B, Q-Former + projection 0.026 B, LoRA 4.2 M kept in float32 by peft). The 33 hidden
states plus the normed output of a batch take 34 x batch x positions x 4096 x 2 bytes (0.67 GB for 8 x 300),
BEATs' attention about 0.3 GB per clip: about 17 GB in all for batch 8, so a 24 GB GPU suffices and 40 GB leaves
headroom. Loading goes through CPU memory (about 17 GB, Whisper's decoder included until it is dropped).
"""

from __future__ import annotations

import json
import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, ModelError
from .base import DTYPES, Adapter, ModelSpec, Point, Recorder, load_error, masked_mean, pick_device
from .checkpoint import read_checkpoint, tensor_report
from .salmonn_beats import Beats, BeatsConfig, beats_config, load_beats
from .salmonn_qformer import UNUSED as QFORMER_UNUSED
from .salmonn_qformer import WindowQFormer, official_name, sizes

TEMPLATE = "USER: <Speech><SpeechHere></Speech> {prompt}\nASSISTANT:"
PLACEHOLDER = "<SpeechHere>"
DEFAULT_PROMPT = "{text}"
SAMPLE_RATE = 16_000
MAX_SECONDS = 30
SECOND_PER_WINDOW = 0.333333
SAMPLES_PER_FRAME = 320  # one Whisper encoder frame: 20 ms
LORA_ALPHA = 32
LORA_DROPOUT = 0.1
LORA_TARGETS = ("q_proj", "v_proj")
LLM = "llama_model.base_model.model."  # official prefix of the LoRA tensors (PeftModel -> LoraModel -> Llama)
KEYS = ("salmonn", "whisper", "beats", "llm")
TINY_SEED = 4321
# Tensors a checkpoint saved by the official training code holds but inference does not use.
UNUSED = QFORMER_UNUSED + (
    re.compile(r"llama_model\.base_model\.model\.model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq"),
    re.compile(r"beats\.encoder\.layers\.\d+\.self_attn\.relative_attention_bias\.weight"),
)
OPTIONS = {
    "prompt": DEFAULT_PROMPT,
    "template": TEMPLATE,
    "text_positions": "transcript",
    "audio_positions": "all",
}
CHOICES = {"text_positions": ("transcript", "prompt"), "audio_positions": ("all", "speech")}
SPECIAL = ("<s>", "</s>", "<unk>", "[PAD]")  # split off by the official slow tokenizer: refused in prompts


# ---------------------------------------------------------------------- audio glue


def window_frames(frames: int) -> int:
    """Frames per Q-Former window (and stride): 17 for Whisper's 1500."""
    return round(frames * SECOND_PER_WINDOW / MAX_SECONDS)


class SalmonnAudio(nn.Module):
    """The trained glue between the encoders and the LLM, with the official module names."""

    def __init__(self, whisper_width: int, beats_width: int, q_hidden: int, q_intermediate: int, llm_width: int):
        super().__init__()
        self.ln_speech = nn.LayerNorm(whisper_width)
        self.ln_audio = nn.LayerNorm(beats_width)
        self.speech_Qformer = WindowQFormer(q_hidden, q_intermediate, whisper_width + beats_width)
        self.speech_llama_proj = nn.Linear(q_hidden, llm_width)

    def features(self, whisper: torch.Tensor, beats: list[torch.Tensor]) -> torch.Tensor:
        """(B, T, Dw) Whisper frames and B BEATs sequences -> (B, T, Dw + Db), BEATs zero-padded after its norm."""
        b, t, _ = whisper.shape
        speech = self.ln_speech(whisper)
        audio = speech.new_zeros(b, t, self.ln_audio.normalized_shape[0])
        for i, tokens in enumerate(beats):
            if tokens.shape[0] > t:
                raise ModelError(f"BEATs gave {tokens.shape[0]} tokens, more than Whisper's {t} frames")
            audio[i, : tokens.shape[0]] = self.ln_audio(tokens).to(audio.dtype)
        return torch.cat([speech, audio], dim=-1)

    def tokens(self, features: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> (B, windows, LLM width): one Q-Former query per non-overlapping window."""
        b, t, c = features.shape
        k = window_frames(t)
        windows = features.unfold(1, k, k).transpose(2, 3)  # (B, L, k, C); trailing frames dropped
        out = self.speech_Qformer(windows.reshape(-1, k, c))
        return self.speech_llama_proj(out).view(b, windows.shape[1], -1)


def official_audio_names(audio: nn.Module) -> dict[str, str]:
    """Official checkpoint name of every tensor of a `SalmonnAudio`."""
    names = {}
    for name in audio.state_dict():
        if name.startswith("speech_Qformer."):
            names[name] = official_name(name.removeprefix("speech_Qformer."))
        else:
            names[name] = name
    return names


def lora_names(layers: int) -> list[tuple[int, str, str]]:
    """(layer, projection, official name prefix) of each LoRA pair."""
    return [(i, t, f"{LLM}model.layers.{i}.self_attn.{t}") for i in range(layers) for t in LORA_TARGETS]


# ---------------------------------------------------------------------- prompt


@dataclass(frozen=True)
class Prompt:
    """The formatted template split at the speech placeholder; `span` locates the transcript
    ("left" or "right", first and last+1 character), None if the user prompt does not hold it."""

    left: str
    right: str
    span: tuple[str, int, int] | None


def build_prompt(text: str, prompt: str = DEFAULT_PROMPT, template: str = TEMPLATE) -> Prompt:
    if template.count(PLACEHOLDER) != 1 or template.count("{prompt}") != 1:
        raise ModelError(f"SALMONN template {template!r} needs one {PLACEHOLDER} and one {{prompt}}")
    if prompt.count("{text}") > 1:
        raise ModelError(f"SALMONN prompt {prompt!r} holds {{text}} more than once")
    text = text.strip()
    if "{text}" in prompt:
        pre, post = prompt.split("{text}")
        pre, post = pre.lstrip(), post.rstrip()
        user, at = pre + text + post, len(pre)
    else:
        user, at = prompt.strip(), None
    halves = template.split(PLACEHOLDER)
    side = 1 if "{prompt}" in halves[1] else 0
    i = halves[side].index("{prompt}")
    halves[side] = halves[side][:i] + user + halves[side][i + len("{prompt}"):]
    span = None if at is None else (("left", "right")[side], i + at, i + at + len(text))
    return Prompt(halves[0], halves[1], span)


class Tokenizer:
    """Vicuna's SentencePiece model, used as the official stack did: each part encoded alone, no BOS."""

    def __init__(self, model_file: str):
        import sentencepiece as spm

        try:
            self.sp = spm.SentencePieceProcessor(model_file=model_file)
        except (OSError, RuntimeError) as exc:
            raise ModelError(f"cannot read the SentencePiece model {model_file!r}: {exc}") from None
        self.bos = self.sp.bos_id()
        self.pad_token, self.pad_id = "[PAD]", self.sp.get_piece_size()  # added by the official code; never fed

    def encode(self, part: str, span: tuple[int, int] | None = None) -> tuple[list[int], list[bool]]:
        """Token ids of `part` and, per token, whether it overlaps the characters `span` of `part`."""
        for token in SPECIAL:
            if token in part:
                raise ModelError(f"prompt part {part!r} contains the special token {token}")
        ids = self.sp.encode(part) if part else []
        if span is None or span[0] == span[1]:
            return ids, [False] * len(ids)
        # Byte offsets in " " + part (SentencePiece's dummy prefix): pieces map 1:1 onto the text's bytes.
        first, last = 1 + len(part[: span[0]].encode()), 1 + len(part[: span[1]].encode())
        mask, at = [], 0
        for i in ids:
            if self.sp.is_byte(i):
                width = 1
            elif self.sp.is_unknown(i) or self.sp.is_control(i):
                raise ModelError(f"cannot locate the transcript in {part!r}: the tokenizer maps part of it to "
                                 f"{self.sp.id_to_piece(i)}")
            else:
                width = len(self.sp.id_to_piece(i).replace("\u2581", " ").encode())
            mask.append(at < last and at + width > first)
            at += width
        if at != len((" " + part).encode()):
            raise ModelError(f"cannot locate the transcript in {part!r}: the tokenizer normalises the text")
        return ids, mask


# ---------------------------------------------------------------------- model


@dataclass
class SalmonnStates:
    """States of a batch of joint (audio, text) sequences, right-padded to N positions."""

    enc: torch.Tensor  # (B, 1500, Dw + Db): the Q-Former's input
    enc_speech: torch.Tensor  # bool (B, 1500): encoder frames that cover part of the clip
    hidden: tuple[torch.Tensor, ...]  # L + 1 tensors (B, N, H): [0] input embeddings, [k] raw output of layer k
    out: torch.Tensor  # (B, N, H): final RMSNorm applied to layer L's output
    valid: torch.Tensor  # bool (B, N): real positions (False: padding)
    audio: torch.Tensor  # bool (B, N): the audio tokens
    speech: torch.Tensor  # bool (B, N): audio tokens whose window covers part of the clip
    transcript: torch.Tensor  # bool (B, N): text tokens overlapping the transcript
    prompt: torch.Tensor  # bool (B, N): every valid non-audio position (BOS, template, user prompt)
    input_ids: torch.Tensor  # long (B, N): token ids; -1 at audio positions and padding


class Salmonn:
    """SALMONN's forward pass as far as the LLM's hidden states."""

    def __init__(self, features, whisper: nn.Module, beats: Beats, audio: SalmonnAudio, llm: nn.Module,
                 tokenizer: Tokenizer, device: torch.device, dtype: torch.dtype):
        self.features, self.whisper, self.beats, self.audio = features, whisper, beats, audio
        self.llm, self.tokenizer, self.device, self.dtype = llm, tokenizer, device, dtype
        self.body = llm.base_model.model.model  # LlamaModel with the LoRA layers in place
        for module in (whisper, beats, audio, llm):
            module.requires_grad_(False)

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_checkpoints(cls, salmonn: str, whisper: str, beats: str, llm: str, device: str | torch.device = "cpu",
                         dtype: str | torch.dtype = torch.float32) -> "Salmonn":
        """Load the official SALMONN `.pth` and the BEATs `.pt` (local paths or `hf://owner/repo/file`), a
        transformers Whisper folder or hub id and a transformers LLaMA folder or hub id (with `tokenizer.model`).
        Every tensor the forward pass uses must be present with the shape the configs imply; anything missing,
        mis-shaped or unexpected (other than the known-unused tensors) is a ModelError listing the names."""
        from transformers import LlamaConfig, LlamaForCausalLM, WhisperConfig, WhisperFeatureExtractor, WhisperModel

        from .files import local_file

        dtype = DTYPES[dtype] if isinstance(dtype, str) else dtype
        device = torch.device(device)
        salmonn, beats = str(local_file(salmonn, "SALMONN checkpoint")), str(local_file(beats, "BEATs checkpoint"))
        try:
            whisper_cfg = WhisperConfig.from_pretrained(whisper)
            features = WhisperFeatureExtractor.from_pretrained(whisper)
        except OSError as exc:
            raise load_error("the Whisper config", whisper, exc) from None
        try:
            llm_cfg = LlamaConfig.from_pretrained(llm)
        except OSError as exc:
            raise load_error("the LLaMA config", llm, exc) from None
        beats_cfg = beats_config(beats)
        # The small SALMONN checkpoint first, so that a bad one fails before the big weights load.
        state = read_checkpoint(salmonn, "SALMONN")
        if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
            raise ModelError(f"SALMONN checkpoint {salmonn}: expected a dict with a 'model' state dict")
        state = state["model"]
        audio, lora = _check_salmonn(state, salmonn, whisper_cfg.d_model, beats_cfg, llm_cfg)

        tokenizer = Tokenizer(_file(llm, "tokenizer.model"))
        if llm_cfg.bos_token_id is not None and llm_cfg.bos_token_id != tokenizer.bos:
            raise ModelError(f"{llm}: config bos_token_id {llm_cfg.bos_token_id} differs from the tokenizer's "
                             f"BOS id {tokenizer.bos}")
        try:
            model, info = WhisperModel.from_pretrained(whisper, dtype=dtype, output_loading_info=True)
        except OSError as exc:
            raise load_error("Whisper", whisper, exc) from None
        _loading_report(info, f"Whisper {whisper}", keep=lambda k: k.startswith("encoder."))
        encoder = model.encoder
        del model
        try:
            base, info = LlamaForCausalLM.from_pretrained(llm, dtype=dtype, output_loading_info=True)
        except OSError as exc:
            raise load_error("LLaMA", llm, exc) from None
        _loading_report(info, f"LLaMA {llm}", keep=lambda k: "rotary_emb.inv_freq" not in k)
        return cls(features, encoder.to(device).eval(), load_beats(beats).to(device, dtype).eval(),
                   _audio_module(audio, state, dtype).to(device).eval(),
                   _with_lora(base, lora, state).to(device).eval(), tokenizer, device, dtype)

    # ------------------------------------------------------------------ forward

    @torch.inference_mode()
    def encode_audio(self, waves: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 1500, Dw + Db) encoder features and (B, 88, H) audio tokens of mono 16 kHz clips."""
        feats = self.features(waves, sampling_rate=SAMPLE_RATE, return_tensors="pt")["input_features"]
        frames = self.whisper(feats.to(self.device, self.dtype)).last_hidden_state
        beats = [self.beats(torch.from_numpy(w).to(self.device)) for w in waves]
        enc = self.audio.features(frames, beats)
        return enc, self.audio.tokens(enc)

    @torch.inference_mode()
    def states(self, waveform, text, prompt: str = DEFAULT_PROMPT, template: str = TEMPLATE) -> SalmonnStates:
        """Hidden states of BOS + left prompt + audio tokens + right prompt for one clip and its text, or for
        lists of them (a batch, right-padded)."""
        single = isinstance(text, str)
        waves = [waveform] if single else list(waveform)
        texts = [text] if single else list(text)
        if len(waves) != len(texts):
            raise ModelError(f"{len(waves)} waveforms but {len(texts)} texts")
        waves = [_clip(w) for w in waves]
        enc, tokens = self.encode_audio(waves)
        n_windows, k = tokens.shape[1], window_frames(enc.shape[1])
        rows = []
        for wave, sentence in zip(waves, texts):
            parts = build_prompt(sentence, prompt, template)
            span = parts.span
            left, left_t = self.tokenizer.encode(parts.left, span[1:] if span and span[0] == "left" else None)
            right, right_t = self.tokenizer.encode(parts.right, span[1:] if span and span[0] == "right" else None)
            real = min(math.ceil(len(wave) / SAMPLES_PER_FRAME), enc.shape[1])
            speech = min(math.ceil(real / k), n_windows)
            rows.append(dict(ids=[self.tokenizer.bos] + left + [-1] * n_windows + right,
                             transcript=[False] + left_t + [False] * n_windows + right_t,
                             audio=[False] * (1 + len(left)) + [True] * n_windows + [False] * len(right),
                             speech=[False] * (1 + len(left)) + [True] * speech + [False] * (n_windows - speech)
                             + [False] * len(right), real=real))
        n = max(len(r["ids"]) for r in rows)

        def padded(key, fill):
            return torch.tensor([r[key] + [fill] * (n - len(r[key])) for r in rows], device=self.device)

        ids, audio = padded("ids", -1), padded("audio", False)
        valid = torch.tensor([[True] * len(r["ids"]) + [False] * (n - len(r["ids"])) for r in rows],
                             device=self.device)
        embeds = self.body.embed_tokens(ids.clamp(min=0))
        embeds = embeds.masked_fill(~valid[..., None], 0.0)
        embeds[audio] = tokens.reshape(-1, tokens.shape[-1]).to(embeds.dtype)
        rec = Recorder()
        rec.layers(self.body.layers, first_input=False)
        try:
            out = self.body(inputs_embeds=embeds, attention_mask=valid.long(), use_cache=False)
        finally:
            rec.remove()
        layers = len(self.body.layers)
        frames = torch.arange(enc.shape[1], device=self.device)
        return SalmonnStates(
            enc=enc, enc_speech=frames[None, :] < torch.tensor([r["real"] for r in rows], device=self.device)[:, None],
            hidden=(embeds,) + tuple(rec.values[str(i)] for i in range(1, layers + 1)), out=out.last_hidden_state,
            valid=valid, audio=audio, speech=padded("speech", False), transcript=padded("transcript", False),
            prompt=valid & ~audio, input_ids=ids,
        )


def _clip(wave) -> np.ndarray:
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise ModelError(f"SALMONN takes mono waveforms, got an array of shape {wave.shape}")
    return np.ascontiguousarray(wave[: MAX_SECONDS * SAMPLE_RATE])


def _file(repo: str, name: str) -> str:
    """A file of a local folder or of a hub repository (from the local cache when offline)."""
    local = Path(repo).expanduser()
    if local.is_dir():
        if not (local / name).is_file():
            raise ModelError(f"{repo}: no {name} (SALMONN tokenises with the SentencePiece model)")
        return str(local / name)
    try:
        from huggingface_hub import hf_hub_download

        return hf_hub_download(repo, name)
    except Exception as exc:  # hub errors have many types
        raise load_error(name, repo, exc) from None


def _loading_report(info: dict, source: str, keep) -> None:
    """transformers' loading info as a ModelError: missing, mis-shaped or unexpected tensors among those kept."""
    missing = sorted(k for k in info.get("missing_keys", ()) if keep(k))
    unexpected = sorted(k for k in info.get("unexpected_keys", ()) if keep(k))
    shaped = sorted(str(k) for k in info.get("mismatched_keys", ()) if keep(k[0] if isinstance(k, tuple) else k))
    problems = [f"{len(v)} {label}: {', '.join(v)}" for label, v in
                (("missing", missing), ("mis-shaped", shaped), ("unexpected", unexpected)) if v]
    if problems:
        raise ModelError(f"{source}: " + "; ".join(problems))


def _check_salmonn(state: dict, source: str, whisper_width: int, beats_cfg: BeatsConfig, llm_cfg):
    """Expected tensors of the SALMONN checkpoint from the configs and the checkpoint's own sizes; raises on
    any missing, mis-shaped or unexpected (not known-unused) tensor. Returns the audio sizes and LoRA rank."""
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    q_hidden, q_inter = sizes(shapes)
    audio = (whisper_width, beats_cfg.encoder_embed_dim, q_hidden, q_inter, llm_cfg.hidden_size)
    with torch.device("meta"):
        module = SalmonnAudio(*audio)
    names = official_audio_names(module)
    expected = {names[k]: tuple(v.shape) for k, v in module.state_dict().items()}
    first = f"{lora_names(1)[0][2]}.lora_A.default.weight"
    rank = shapes.get(first, (8,))[0]
    head = getattr(llm_cfg, "head_dim", None) or llm_cfg.hidden_size // llm_cfg.num_attention_heads
    width = {"q_proj": llm_cfg.num_attention_heads * head, "v_proj": llm_cfg.num_key_value_heads * head}
    for _, target, prefix in lora_names(llm_cfg.num_hidden_layers):
        expected[f"{prefix}.lora_A.default.weight"] = (rank, llm_cfg.hidden_size)
        expected[f"{prefix}.lora_B.default.weight"] = (width[target], rank)
    tensor_report(shapes, expected, f"SALMONN checkpoint {source}", unused=UNUSED)
    return audio, rank


def _audio_module(sizes_: tuple, state: dict, dtype: torch.dtype) -> SalmonnAudio:
    module = SalmonnAudio(*sizes_)
    names = official_audio_names(module)
    module.load_state_dict({k: state[names[k]] for k in names}, strict=True)
    return module.to(dtype)


def _with_lora(base: nn.Module, rank: int, state: dict) -> nn.Module:
    """The LLM wrapped by peft with SALMONN's LoRA (q and v projections, alpha 32, unmerged), loaded."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=rank, lora_alpha=LORA_ALPHA, lora_dropout=LORA_DROPOUT, target_modules=list(LORA_TARGETS),
                        task_type="CAUSAL_LM", bias="none")
    with warnings.catch_warnings():  # peft calls a transformers method deprecated in v5
        warnings.simplefilter("ignore", FutureWarning)
        model = get_peft_model(base, config)
    layers = model.base_model.model.model.layers
    with torch.no_grad():
        for i, target, prefix in lora_names(len(layers)):
            proj = getattr(layers[i].self_attn, target)
            proj.lora_A["default"].weight.copy_(state[f"{prefix}.lora_A.default.weight"])
            proj.lora_B["default"].weight.copy_(state[f"{prefix}.lora_B.default.weight"])
    return model


# ---------------------------------------------------------------------- adapter


class SalmonnAdapter(Adapter):
    """SALMONN in the pipeline: both modalities get (waveform, transcript) pairs; "speech" pools the audio
    positions of the joint sequence, "text" the text positions (see the module docstring and `OPTIONS`)."""

    joint_inputs = True

    def __init__(self, checkpoint, options: dict | None = None, device: str = "auto", dtype: str = "float32"):
        paths = _mapping(checkpoint)
        self.checkpoint = paths
        self.options = self.check_options(options or {}, "options")
        self.model = Salmonn.from_checkpoints(**paths, device=pick_device(device), dtype=DTYPES[dtype])

    @classmethod
    def check_options(cls, raw: dict, prefix: str) -> dict:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{prefix}: expected a mapping of SALMONN options, got {raw!r}")
        for key in raw:
            if key not in OPTIONS:
                raise ConfigError(f"{prefix}.{key}: unknown SALMONN option; known: {', '.join(OPTIONS)}")
        out = dict(OPTIONS, **raw)
        for key, allowed in CHOICES.items():
            if out[key] not in allowed:
                raise ConfigError(f"{prefix}.{key}: {out[key]!r} is not one of {', '.join(allowed)}")
        if not isinstance(out["prompt"], str) or out["prompt"].count("{text}") != 1:
            raise ConfigError(f"{prefix}.prompt: {out['prompt']!r} must contain {{text}} (the transcript) once")
        template = out["template"]
        if not isinstance(template, str) or template.count(PLACEHOLDER) != 1 or template.count("{prompt}") != 1:
            raise ConfigError(f"{prefix}.template: {template!r} must contain {PLACEHOLDER} and {{prompt}} once each")
        if any(token in out["prompt"] + template for token in SPECIAL):
            raise ConfigError(f"{prefix}.prompt/template: special tokens ({', '.join(SPECIAL)}) are not allowed")
        return out

    @classmethod
    def resolve(cls, checkpoint, cache: Path) -> dict[str, str]:
        if checkpoint == "tiny":
            path = cache / "tiny-salmonn"
            if not (path / "crossrep-tiny.json").is_file():
                build_tiny(path)
            return tiny_paths(path)
        paths = _mapping(checkpoint)
        for key in ("salmonn", "beats"):  # files: local paths or hf://owner/repo/path (fetched by prefetch)
            if not paths[key].startswith("hf://") and not Path(paths[key]).is_file():
                raise ConfigError(f"checkpoint.{key}: {paths[key]!r} is not a file (nor an hf:// reference)")
        return paths

    @classmethod
    def spec(cls, checkpoint, options: dict | None = None) -> ModelSpec:
        from transformers import LlamaConfig, WhisperConfig

        from .files import local_file

        paths = _mapping(checkpoint)
        try:
            whisper = WhisperConfig.from_pretrained(paths["whisper"])
        except OSError as exc:
            raise load_error("the Whisper config", paths["whisper"], exc) from None
        try:
            llm = LlamaConfig.from_pretrained(paths["llm"])
        except OSError as exc:
            raise load_error("the LLaMA config", paths["llm"], exc) from None
        beats = beats_config(local_file(paths["beats"], "BEATs checkpoint"))
        width, layers = llm.hidden_size, llm.num_hidden_layers
        layer_points = [Point(str(i), width, float(i)) for i in range(1, layers + 1)] + [
            Point("out", width, layers + 0.5, "output")]
        common = [Point("in", width, 0.0, "input")] + layer_points
        # the audio's "in" is the Q-Former's output as the LLM takes it: the length adaptation of the speech side
        speech = [Point("enc", whisper.d_model + beats.encoder_embed_dim, -1.0, "encoder"),
                  Point("in", width, 0.0, "adaptor")] + layer_points
        pairs = [("enc", "in", "enc")] + [(p.name, p.name, p.name) for p in common]
        return ModelSpec(checkpoint=paths,
                         points={"text": tuple(common), "speech": tuple(speech)},
                         pairs=tuple(pairs), languages={"text": None, "speech": None})

    @classmethod
    def text_tokenizer(cls, checkpoint, options: dict | None = None):
        """The transcript's ids as `Salmonn.states` marks them: the prompt part holding the transcript, encoded
        alone, less the template's and prompt's own tokens (a lone "▁" before the transcript included)."""
        opts = cls.check_options(options or {}, "options")
        tokenizer = Tokenizer(_file(_mapping(checkpoint)["llm"], "tokenizer.model"))

        def ids(text: str) -> list[int]:
            parts = build_prompt(text, opts["prompt"], opts["template"])
            side, first, last = parts.span
            part, mask = tokenizer.encode(parts.left if side == "left" else parts.right, (first, last))
            return [i for i, keep in zip(part, mask) if keep]

        return ids

    @torch.inference_mode()
    def embed(self, modality: str, iso: str, inputs: list, points: tuple[str, ...]) -> dict[str, np.ndarray]:
        if not all(isinstance(x, (tuple, list)) and len(x) == 2 for x in inputs):
            raise ModelError("SALMONN takes (waveform, transcript) pairs for both modalities")
        if modality == "text" and "enc" in points:
            raise ModelError("SALMONN has no point 'enc' for text")
        waves, texts = [x[0] for x in inputs], [str(x[1]) for x in inputs]
        opts = self.options
        st = self.model.states(waves, texts, prompt=opts["prompt"], template=opts["template"])
        if modality == "speech":
            every = opts["audio_positions"] == "all"
            mask = st.audio if every else st.speech
            enc_mask = torch.ones_like(st.enc_speech) if every else st.enc_speech
        else:
            mask = st.transcript if opts["text_positions"] == "transcript" else st.prompt
        values = {"in": st.hidden[0], "out": st.out}
        values.update({str(i): h for i, h in enumerate(st.hidden[1:], 1)})
        out = {}
        for p in points:
            if p == "enc":
                out[p] = masked_mean(st.enc, enc_mask)
            elif p in values:
                out[p] = masked_mean(values[p], mask)
            else:
                raise ModelError(f"SALMONN has no point {p!r}")
        return out


def _mapping(checkpoint) -> dict[str, str]:
    """The four references of a SALMONN checkpoint mapping, checked."""
    if not isinstance(checkpoint, dict):
        raise ConfigError(f"SALMONN checkpoint: expected 'tiny' or a mapping with the keys {', '.join(KEYS)}")
    for key in checkpoint:
        if key not in KEYS:
            raise ConfigError(f"checkpoint.{key}: unknown SALMONN component; expected {', '.join(KEYS)}")
    for key in KEYS:
        if not isinstance(checkpoint.get(key), str) or not checkpoint[key]:
            raise ConfigError(f"checkpoint.{key}: missing (the SALMONN checkpoint needs {', '.join(KEYS)})")
    return {k: checkpoint[k] for k in KEYS}


# ---------------------------------------------------------------------- tiny random model


def tiny_paths(path: Path) -> dict[str, str]:
    return {"salmonn": str(path / "salmonn.pth"), "whisper": str(path / "whisper"), "beats": str(path / "beats.pt"),
            "llm": str(path / "llm")}


def _randomise(module: nn.Module, gen: torch.Generator) -> None:
    """Every parameter random: norm weights around 1, other tensors scaled by 1/sqrt(fan-in)."""
    with torch.no_grad():
        for sub in module.modules():
            norm = type(sub).__name__.endswith("Norm")
            for name, p in sub.named_parameters(recurse=False):
                noise = torch.randn(p.shape, generator=gen)
                if norm and name == "weight":
                    p.copy_(1.0 + 0.2 * noise)
                elif p.dim() == 1:
                    p.copy_(0.2 * noise)
                else:
                    p.copy_(noise / math.sqrt(p[0].numel()))


def _train_tokenizer(seed: int) -> bytes:
    """A small Llama-style SentencePiece BPE model (byte fallback, digits split, no normalisation)."""
    import io

    import sentencepiece as spm

    from ..data.demo import corpus

    lines = [line for lines in corpus().values() for line in lines]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, vocab_size=3000, model_type="bpe",
        character_coverage=0.995, byte_fallback=True, split_digits=True, add_dummy_prefix=True,
        remove_extra_whitespaces=False, normalization_rule_name="identity", allow_whitespace_only_pieces=True,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=1, minloglevel=2)
    return model.getvalue()


def build_tiny(path: Path, seed: int = TINY_SEED) -> Path:
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
    llm_cfg = LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=2048,
                          bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False)
    llm = LlamaForCausalLM(llm_cfg)
    _randomise(llm, gen)
    llm.save_pretrained(llm_dir)

    whisper_cfg = WhisperConfig(vocab_size=64, num_mel_bins=80, d_model=32, encoder_layers=2,
                                encoder_attention_heads=4, encoder_ffn_dim=64, decoder_layers=1,
                                decoder_attention_heads=4, decoder_ffn_dim=64, max_source_positions=1500,
                                max_target_positions=32, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                                decoder_start_token_id=3, suppress_tokens=[], begin_suppress_tokens=[])
    whisper = WhisperForConditionalGeneration(whisper_cfg)
    _randomise(whisper, gen)
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
    _randomise(beats, gen)
    beats_state = dict(beats.state_dict())
    beats_state["predictor.weight"] = torch.randn(10, 48, generator=gen) / math.sqrt(48)
    beats_state["predictor.bias"] = 0.2 * torch.randn(10, generator=gen)
    torch.save({"cfg": beats_cfg, "model": beats_state}, path / "beats.pt")

    q_hidden, q_inter = 128, 256
    audio = SalmonnAudio(32, 48, q_hidden, q_inter, 64)
    _randomise(audio, gen)
    names = official_audio_names(audio)
    state = {names[k]: v.clone() for k, v in audio.state_dict().items()}
    for _, target, prefix in lora_names(llm_cfg.num_hidden_layers):
        state[f"{prefix}.lora_A.default.weight"] = torch.randn(8, 64, generator=gen) / math.sqrt(64)
        state[f"{prefix}.lora_B.default.weight"] = torch.randn(64, 8, generator=gen) / math.sqrt(8)
    state.update(_unused_extras(q_hidden, q_inter, llm_cfg, beats_state, gen))
    torch.save({"model": state}, path / "salmonn.pth")
    (path / "crossrep-tiny.json").write_text(json.dumps(
        {"what": "small random SALMONN built by crossrep for demos and tests; not a trained model", "seed": seed,
         "files": {k: str(Path(v).relative_to(path)) for k, v in tiny_paths(path).items()}}, indent=1))
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
