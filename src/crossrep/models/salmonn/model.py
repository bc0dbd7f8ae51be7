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

import math
import re
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ...errors import ModelError
from ..base import DTYPES, PRETRAINED, Recorder, load_error, on
from ..checkpoint import loading_report, read_checkpoint, tensor_report
from ..features import WhisperLogMel, pad_waves
from ..joint import DEFAULT_PROMPT, JointStates, TextStates, pad_rows, row
from ..joint import build_prompt as _build_prompt
from .beats import Beats, BeatsConfig, beats_config, load_beats
from .qformer import UNUSED as QFORMER_UNUSED
from .qformer import WindowQFormer, official_name, sizes

TEMPLATE = "USER: <Speech><SpeechHere></Speech> {prompt}\nASSISTANT:"
PLACEHOLDER = "<SpeechHere>"
SAMPLE_RATE = 16_000
MAX_SECONDS = 30
SECOND_PER_WINDOW = 0.333333
SAMPLES_PER_FRAME = 320  # one Whisper encoder frame: 20 ms
LORA_ALPHA = 32
LORA_DROPOUT = 0.1
LORA_TARGETS = ("q_proj", "v_proj")
LLM = "llama_model.base_model.model."  # official prefix of the LoRA tensors (PeftModel -> LoraModel -> Llama)
KEYS = ("salmonn", "whisper", "beats", "llm")
# Tensors a checkpoint saved by the official training code holds but inference does not use.
UNUSED = QFORMER_UNUSED + (
    re.compile(r"llama_model\.base_model\.model\.model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq"),
    re.compile(r"beats\.encoder\.layers\.\d+\.self_attn\.relative_attention_bias\.weight"),
)
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


# ---------------------------------------------------------------------- tokenizer


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


class Salmonn:
    """SALMONN's forward pass as far as the LLM's hidden states."""

    def __init__(self, features, whisper: nn.Module, beats: Beats, audio: SalmonnAudio, llm: nn.Module,
                 tokenizer: Tokenizer, device: torch.device, dtype: torch.dtype):
        self.features, self.whisper, self.beats, self.audio = features, whisper, beats, audio
        self.llm, self.tokenizer, self.device, self.dtype = llm, tokenizer, device, dtype
        self.body = llm.base_model.model.model  # LlamaModel with the LoRA layers in place
        self.log_mel: WhisperLogMel | None = None  # set: the log-mel is computed on the device
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

        from ..files import local_file

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

        tokenizer = Tokenizer(file_of(llm, "tokenizer.model"))
        if llm_cfg.bos_token_id is not None and llm_cfg.bos_token_id != tokenizer.bos:
            raise ModelError(f"{llm}: config bos_token_id {llm_cfg.bos_token_id} differs from the tokenizer's "
                             f"BOS id {tokenizer.bos}")
        try:
            model, info = WhisperModel.from_pretrained(whisper, dtype=dtype, output_loading_info=True,
                                                           **PRETRAINED)
        except OSError as exc:
            raise load_error("Whisper", whisper, exc) from None
        loading_report(info, f"Whisper {whisper}", keep=lambda k: k.startswith("encoder."))
        encoder = model.encoder
        del model
        try:
            base, info = LlamaForCausalLM.from_pretrained(llm, dtype=dtype, output_loading_info=True,
                                                          **PRETRAINED)
        except OSError as exc:
            raise load_error("LLaMA", llm, exc) from None
        loading_report(info, f"LLaMA {llm}", keep=lambda k: "rotary_emb.inv_freq" not in k)
        return cls(features, encoder.to(device).eval(), load_beats(beats).to(device, dtype).eval(),
                   _audio_module(audio, state, dtype).to(device).eval(),
                   _with_lora(base, lora, state).to(device).eval(), tokenizer, device, dtype)

    # ------------------------------------------------------------------ forward

    def prepare(self, waveform, text, prompt: str = DEFAULT_PROMPT, template: str = TEMPLATE) -> dict:
        """The CPU part of `states` (no weights): log-mel features, clips for BEATs, the token rows."""
        single = isinstance(text, str)
        waves = [waveform] if single else list(waveform)
        texts = [text] if single else list(text)
        if len(waves) != len(texts):
            raise ModelError(f"{len(waves)} waveforms but {len(texts)} texts")
        waves = [_clip(w) for w in waves]
        if self.log_mel is not None:  # the log-mel is computed on the device by `run`
            audio = dict(zip(("padded", "lengths"), pad_waves(waves)))
        else:
            audio = {"mel": self.features(waves, sampling_rate=SAMPLE_RATE, return_tensors="pt")["input_features"]}
        frames = self.features.nb_max_frames // 2  # Whisper's encoder halves the 3000 mel frames
        k = window_frames(frames)
        n_windows = frames // k
        rows, real = [], []
        for wave, sentence in zip(waves, texts):
            parts = build_prompt(sentence, prompt, template)
            real.append(min(math.ceil(len(wave) / SAMPLES_PER_FRAME), frames))
            rows.append(row(self.tokenizer.encode(parts.left, parts.part_span("left")),
                            self.tokenizer.encode(parts.right, parts.part_span("right")), audio_id=-1,
                            n_audio=n_windows, n_speech=min(math.ceil(real[-1] / k), n_windows),
                            prefix=[self.tokenizer.bos]))
        return dict(audio, waves=[torch.from_numpy(w) for w in waves], rows=pad_rows(rows, -1, "cpu"),
                    real=torch.tensor(real))

    @torch.inference_mode()
    def run(self, prepared: dict) -> JointStates:
        """The model's part of `states`: both encoders, the Q-Former, the LLM."""
        if self.log_mel is not None:
            mel = self.log_mel(on(self.device, prepared["padded"]), prepared["lengths"])[0]
        else:
            mel = on(self.device, prepared["mel"])
        frames = self.whisper(mel.to(self.dtype)).last_hidden_state
        beats = [self.beats(on(self.device, w)) for w in prepared["waves"]]
        enc = self.audio.features(frames, beats)
        tokens = self.audio.tokens(enc)
        held = prepared["rows"]["audio"]  # on the host: no device synchronisation for the check
        if held.shape[0] * tokens.shape[1] != int(held.sum()):
            raise ModelError(f"the Q-Former gave {tokens.shape[1]} audio tokens per clip; the prompts hold "
                             f"{int(held.sum())} for {held.shape[0]} clips")
        t = {k: on(self.device, v) for k, v in prepared["rows"].items()}
        ids, audio, valid = t["ids"], t["audio"], t["valid"]
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
        positions = torch.arange(enc.shape[1], device=self.device)
        return JointStates(
            enc=enc, enc_valid=torch.ones_like(enc[..., 0], dtype=torch.bool),
            enc_speech=positions[None, :] < on(self.device, prepared["real"])[:, None],
            hidden=(embeds,) + tuple(rec.values[str(i)] for i in range(1, layers + 1)), out=out.last_hidden_state,
            valid=valid, audio=audio, speech=t["speech"], transcript=t["transcript"], prompt=valid & ~audio,
            input_ids=ids.masked_fill(audio, -1),
        )

    @torch.inference_mode()
    def run_text(self, rows: dict) -> TextStates:
        """The LLM (its LoRA included, as SALMONN always runs it) on text-only rows, without audio."""
        t = {k: on(self.device, v) for k, v in rows.items()}
        embeds = self.body.embed_tokens(t["ids"]).masked_fill(~t["valid"][..., None], 0.0)
        rec = Recorder()
        rec.layers(self.body.layers, first_input=False)
        try:
            out = self.body(inputs_embeds=embeds, attention_mask=t["valid"].long(), use_cache=False)
        finally:
            rec.remove()
        layers = len(self.body.layers)
        return TextStates(hidden=(embeds,) + tuple(rec.values[str(i)] for i in range(1, layers + 1)),
                          out=out.last_hidden_state, valid=t["valid"], transcript=t["transcript"], input_ids=t["ids"])

    def states(self, waveform, text, prompt: str = DEFAULT_PROMPT, template: str = TEMPLATE) -> JointStates:
        """Hidden states of BOS + left prompt + audio tokens + right prompt for one clip and its text, or for
        lists of them (a batch, right-padded)."""
        return self.run(self.prepare(waveform, text, prompt, template))


def build_prompt(text: str, prompt: str = DEFAULT_PROMPT, template: str = TEMPLATE):
    """The SALMONN template split at its speech placeholder (see `crossrep.models.joint.build_prompt`)."""
    return _build_prompt(text, prompt, template, PLACEHOLDER)


def _clip(wave) -> np.ndarray:
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise ModelError(f"SALMONN takes mono waveforms, got an array of shape {wave.shape}")
    return np.ascontiguousarray(wave[: MAX_SECONDS * SAMPLE_RATE])


def file_of(repo: str, name: str) -> str:
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


