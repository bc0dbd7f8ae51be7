"""Audio LLMs native to transformers: a Whisper-style audio tower, a projector and a causal decoder whose
placeholder ids are replaced by the projected audio frames. Written once; a family names its classes, its
placeholder and template, and where its tower and decoder layers live.

One forward pass of the model's own module (`backbone`: the model without its LM head) per batch, on ids
expanded as the family's processor expands them: the placeholder repeated once per audio token, the count
computed from the feature mask by the tower's own length rule. Positions: the expanded placeholder ids are the
audio side; the transcript's tokens are found from the fast tokenizer's character offsets (byte-level pieces of
one character share its offsets, so each piece counts). Batches are right-padded; the causal mask keeps padding
out of every real position, so batched and one-at-a-time extraction agree.

Points: "enc" (speech only: the audio tower's output before the projector; `audio_positions: all` pools every
frame the tower gives, Whisper's 30 s padding included, `speech` only the frames of the clip), "in" (the decoder's
input embeddings: projected audio frames or token embeddings), "1".."L" (each decoder layer's raw output, by
hooks), "out" (the final norm of layer L: transformers' last hidden state).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import ModelError
from .base import DTYPES, PRETRAINED, ModelSpec, Point, Recorder, load_error, on, pick_device
from .features import WhisperLogMel, pad_waves
from .joint import JointAdapter, JointStates, TextStates, build_prompt, offset_mask, pad_rows, row
from .points import stack
from .tiny import cached

SAMPLE_RATE = 16_000


class AudioLLM(JointAdapter):
    """A transformers audio LLM; subclasses set the class attributes and, for `checkpoint: tiny`, `build_tiny`."""

    MODEL = ""  # transformers class with the checkpoint's weights (an *ForConditionalGeneration)
    MODEL_TYPE = ""  # the config's model_type
    ALSO_ACCEPTED: tuple[str, ...] = ()  # other model types `sizes` and `load_model` know how to read
    MASK_KWARG = "feature_attention_mask"  # the backbone's keyword for the mel-frame mask (None: it takes none)
    AUDIO_ID_KEY = "audio_token_id"  # config key of the placeholder id
    TINY = ""  # cache folder name of the tiny build
    max_seconds = 30.0  # one Whisper window; longer clips would be cut silently by the feature extractor
    device_features = True
    offers_lens = True  # final norm and LM head loaded: the logit lens can read them

    def __init__(self, checkpoint: str, options: dict, device: str = "auto", dtype: str = "float32",
                 features: str = "cpu"):
        import transformers

        self.checkpoint, self.options = checkpoint, self.check_options(options or {}, "options")
        self.device, self.dtype = pick_device(device), DTYPES[dtype]
        try:
            model = self.load_model(checkpoint)
            self.features = transformers.AutoFeatureExtractor.from_pretrained(checkpoint)
        except OSError as exc:
            raise load_error(self.FAMILY, checkpoint, exc) from None
        self.tokenizer = self.load_tokenizer(checkpoint)
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.audio_id = int(getattr(model.config, self.AUDIO_ID_KEY))
        token = self.tokenizer.convert_tokens_to_ids(self.PLACEHOLDER)
        if token != self.audio_id:
            raise ModelError(f"{checkpoint}: the tokenizer maps {self.PLACEHOLDER} to {token} but the config's "
                             f"{self.AUDIO_ID_KEY} is {self.audio_id}")
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.log_mel = WhisperLogMel(self.features) if features == "device" else None

    # ------------------------------------------------------------------ family hooks

    def load_model(self, checkpoint: str) -> torch.nn.Module:
        import transformers

        return getattr(transformers, self.MODEL).from_pretrained(checkpoint, dtype=self.dtype, **PRETRAINED)

    def backbone(self) -> torch.nn.Module:
        """The module that merges audio into the ids and runs the decoder, without the LM head."""
        return self.model.model

    def tower(self) -> torch.nn.Module:
        return self.backbone().audio_tower

    def layers(self):
        return self.backbone().language_model.layers

    def token_counts(self, mel_frames: torch.Tensor) -> torch.Tensor:
        """Audio tokens (= tower frames) per clip from its valid mel frames, by the tower's own rule."""
        return self.tower()._get_feat_extract_output_lengths(mel_frames)[1]

    def speech_counts(self, mel_frames: torch.Tensor) -> tuple[list[int], list[int]]:
        """(audio tokens covering the clip, encoder frames covering it) per clip; here every token covers it and
        the tower's frames are the tokens."""
        n = [int(v) for v in self.token_counts(mel_frames)]
        return n, n

    def record_encoder(self, rec: Recorder) -> None:
        """Hook that keeps "enc": here the tower's output, (B, frames of 30 s, D)."""
        rec.output(self.tower(), "enc")

    def encoder_states(self, enc: torch.Tensor, counts: list[int]) -> tuple[torch.Tensor, ...]:
        """(enc, valid, speech): the recorded tower states as (B, T, D) and two (B, T) masks, every frame the
        tower computed and those covering the clip."""
        frames = torch.arange(enc.shape[1], device=enc.device)
        speech = frames[None, :] < torch.tensor(counts, device=enc.device)[:, None]
        return enc, torch.ones_like(speech), speech

    # ------------------------------------------------------------------ no weights needed

    @classmethod
    def build_tiny(cls, path: Path) -> None:
        raise ModelError(f"{cls.FAMILY} has no tiny build")

    @classmethod
    def resolve(cls, checkpoint, cache: Path) -> str:
        if not isinstance(checkpoint, str):
            raise ModelError(f"a {cls.FAMILY} checkpoint is a hub id, a local folder or `tiny`, got {checkpoint!r}")
        return str(cached(cache / cls.TINY, cls.build_tiny)) if checkpoint == "tiny" else checkpoint

    @classmethod
    def config(cls, checkpoint: str):
        from transformers import AutoConfig

        cfg = from_pretrained(AutoConfig, checkpoint, f"the {cls.FAMILY} config")
        accepted = (cls.MODEL_TYPE,) + cls.ALSO_ACCEPTED
        if cfg.model_type not in accepted:
            raise ModelError(f"{checkpoint}: model_type is {cfg.model_type!r}, not {' or '.join(accepted)}")
        return cfg

    @classmethod
    def sizes(cls, cfg) -> tuple[int, int, int]:
        """(decoder width, decoder layers, tower width) from the loaded config (hub JSONs may leave them to
        the config classes' defaults)."""
        text = cfg.text_config
        return text.hidden_size, text.num_hidden_layers, cfg.audio_config.d_model

    @classmethod
    def spec(cls, checkpoint: str, options: dict) -> ModelSpec:
        width, layers, tower = cls.sizes(cls.config(checkpoint))
        text = stack(width, layers)
        speech = [Point("enc", tower, -1.0, "encoder")] + stack(width, layers, first="adaptor")
        pairs = [("enc", "in", "enc")] + [(p.name, p.name, p.name) for p in text]
        return ModelSpec(checkpoint=checkpoint, points={"text": tuple(text), "speech": tuple(speech)},
                         pairs=tuple(pairs), languages={"text": None, "speech": None})

    @classmethod
    def load_tokenizer(cls, checkpoint: str):
        from transformers import AutoTokenizer

        tokenizer = from_pretrained(AutoTokenizer, checkpoint, f"the {cls.FAMILY} tokenizer")
        if not tokenizer.is_fast:
            raise ModelError(f"{checkpoint}: {cls.FAMILY} needs a fast tokenizer (character offsets locate the "
                             f"transcript); got {type(tokenizer).__name__}")
        return tokenizer

    @classmethod
    def token_texts(cls, checkpoint: str, options: dict, ids: list[int]) -> list[str]:
        """Each token id as the tokenizer writes it (`<id N>` for LM-head rows past the tokenizer's size)."""
        tokenizer = cls.load_tokenizer(checkpoint)
        return [tokenizer.decode([i]) if 0 <= i < len(tokenizer) else f"<id {i}>" for i in ids]

    @classmethod
    def text_tokenizer(cls, checkpoint: str, options: dict):
        """The transcript's ids as `states` marks them: the template part holding it, tokenised alone."""
        opts = cls.check_options(options or {}, "options")
        tokenizer = cls.load_tokenizer(checkpoint)

        def ids(text: str) -> list[int]:
            parts = build_prompt(text, opts["prompt"], opts["template"], cls.PLACEHOLDER)
            side = parts.span[0]
            part, mask = encode(tokenizer, parts.left if side == "left" else parts.right, parts.part_span(side))
            return [i for i, keep in zip(part, mask) if keep]

        return ids

    # ------------------------------------------------------------------ forward

    def mel(self, waves: list[np.ndarray]) -> dict[str, torch.Tensor]:
        """Log-mel features padded to 30 s ("mel") and the valid-frame mask ("mel_mask"), as the family's processor
        makes them; with device features, the padded clips ("waves", "lengths") and the mask their lengths give."""
        for w in waves:
            if len(w) > self.max_seconds * SAMPLE_RATE:
                raise ModelError(f"a clip of {len(w) / SAMPLE_RATE:.1f} s is longer than the {self.max_seconds:g} s "
                                 f"{self.FAMILY} takes")
        if self.log_mel is not None:  # computed on the device by `run`
            padded, lengths = pad_waves(waves)
            frames = torch.arange(self.features.nb_max_frames)
            mask = (frames[None, :] < (-(-lengths // self.features.hop_length))[:, None]).long()
            return {"waves": padded, "lengths": lengths, "mel_mask": mask}
        feats = self.features(waves, sampling_rate=SAMPLE_RATE, return_attention_mask=True, padding="max_length",
                              return_tensors="pt")
        return {"mel": feats["input_features"], "mel_mask": feats["attention_mask"]}

    def prepare(self, waves: list[np.ndarray], texts: list[str]) -> dict:
        """Mel features, their mask, audio tokens per clip and the expanded token rows (CPU, no weights)."""
        audio = self.mel([_mono(w) for w in waves])
        frames = audio["mel_mask"].sum(-1)
        counts = [int(n) for n in self.token_counts(frames)]
        speech, enc_frames = self.speech_counts(frames)
        rows = []
        for n, n_speech, sentence in zip(counts, speech, texts):
            if n < 2:  # a single placeholder takes transformers' legacy merge path, which reshapes the sequence
                raise ModelError(f"a clip gives {n} audio token; {self.FAMILY} needs at least 2 (about 0.1 s)")
            parts = build_prompt(sentence, self.options["prompt"], self.options["template"], self.PLACEHOLDER)
            rows.append(row(encode(self.tokenizer, parts.left, parts.part_span("left")),
                            encode(self.tokenizer, parts.right, parts.part_span("right")),
                            audio_id=self.audio_id, n_audio=n, n_speech=n_speech))
        return dict(audio, counts=counts, enc_frames=enc_frames, rows=pad_rows(rows, self.pad_id, "cpu"))

    @torch.inference_mode()
    def run(self, prepared: dict) -> JointStates:
        t = {k: on(self.device, v) for k, v in prepared["rows"].items()}
        if self.log_mel is not None:  # `prepare` left the padded clips
            mel = self.log_mel(on(self.device, prepared["waves"]), prepared["lengths"])[0].to(self.dtype)
        else:
            mel = on(self.device, prepared["mel"], self.dtype)
        rec = Recorder()
        self.record_encoder(rec)
        rec.layers(self.layers(), first_input=False)
        try:
            out = self.backbone()(input_ids=t["ids"], attention_mask=t["valid"].long(),
                                  input_features=mel, **({self.MASK_KWARG: on(self.device, prepared["mel_mask"])}
                                                         if self.MASK_KWARG else {}),
                                  output_hidden_states=True, use_cache=False)
        finally:
            rec.remove()
        enc, enc_valid, enc_speech = self.encoder_states(rec.values["enc"], prepared["enc_frames"])
        n_layers = len(self.layers())
        return JointStates(
            enc=enc, enc_valid=enc_valid, enc_speech=enc_speech,
            hidden=(out.hidden_states[0],) + tuple(rec.values[str(i)] for i in range(1, n_layers + 1)),
            out=out.hidden_states[-1], valid=t["valid"], audio=t["audio"], speech=t["speech"],
            transcript=t["transcript"], prompt=t["valid"] & ~t["audio"], input_ids=t["ids"])


    def lens_modules(self) -> tuple[torch.nn.Module, torch.nn.Module]:
        return self.backbone().language_model.norm, self.model.get_output_embeddings()

    def encode_text(self, text: str, span: tuple[int, int]) -> tuple[list[int], list[bool]]:
        return encode(self.tokenizer, text, span)

    @torch.inference_mode()
    def run_text(self, rows: dict[str, torch.Tensor]) -> TextStates:
        t = {k: on(self.device, v) for k, v in rows.items()}
        rec = Recorder()
        rec.layers(self.layers(), first_input=False)
        try:
            out = self.backbone()(input_ids=t["ids"], attention_mask=t["valid"].long(), output_hidden_states=True,
                                  use_cache=False)
        finally:
            rec.remove()
        n_layers = len(self.layers())
        return TextStates(hidden=(out.hidden_states[0],) + tuple(rec.values[str(i)] for i in range(1, n_layers + 1)),
                          out=out.hidden_states[-1], valid=t["valid"], transcript=t["transcript"], input_ids=t["ids"])


def from_pretrained(loader, checkpoint: str, what: str):
    """`loader.from_pretrained(checkpoint)` with a loading failure that says what is missing and how to get it."""
    try:
        return loader.from_pretrained(checkpoint)
    except (OSError, ValueError) as exc:
        raise load_error(what, checkpoint, exc) from None


def encode(tokenizer, part: str, span: tuple[int, int] | None) -> tuple[list[int], list[bool]]:
    """Ids of one template part (no special tokens added) and, per id, whether it overlaps `span`."""
    if not part:
        return [], []
    enc = tokenizer(part, add_special_tokens=False, return_offsets_mapping=True)
    return list(enc["input_ids"]), offset_mask(enc["offset_mapping"], span)


def _mono(wave) -> np.ndarray:
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise ModelError(f"audio LLMs take mono waveforms, got an array of shape {wave.shape}")
    return wave
