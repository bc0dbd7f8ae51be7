"""SONAR in the pipeline: the text encoder and one speech encoder per language (see `encoders`)."""

from __future__ import annotations

from pathlib import Path

import torch

from ...errors import ConfigError, ModelError
from ..base import DTYPES, Adapter, ModelSpec, load_error, masked_mean, on, pick_device
from ..features import KaldiFbank, pad_waves
from ..points import stack
from ..tiny import cached
from .encoders import (SPEECH_LANGUAGES, TEXT_MAX_TOKENS, SonarSpeechEncoder, SonarTextEncoder, _count, fbank,
                       read_state)


class SonarAdapter(Adapter):
    device_features = True
    """`checkpoint`: {text: ref, tokenizer: ref, speech: {iso: ref, ...}} or `tiny`; refs as in models.files."""

    def __init__(self, checkpoint: dict, options: dict, device: str = "auto", dtype: str = "float32",
                 features: str = "cpu"):
        from ..files import local_file

        self.device, self.dtype, self.checkpoint = pick_device(device), DTYPES[dtype], checkpoint
        self.tokenizer, self.options = load_tokenizer(checkpoint), options
        self.text = SonarTextEncoder.from_checkpoint(local_file(checkpoint["text"], "SONAR text encoder"),
                                                     options.get("text_heads"))
        self.text.to(self.device, self.dtype)
        check_vocabulary(self.tokenizer, self.text.encoder.config.vocab_size, checkpoint)
        self._speech: tuple[str, SonarSpeechEncoder] | None = None
        self.fbank = KaldiFbank() if features == "device" else None

    @classmethod
    def check_options(cls, raw: dict, prefix: str) -> dict:
        """`text_heads`, `pooler_heads`: attention heads where no tensor shape carries them (null: the default
        of the module docstring)."""
        raw = {} if raw is None else raw
        if not isinstance(raw, dict):
            raise ConfigError(f"{prefix}: expected a mapping of SONAR options, got {raw!r}")
        out = {"text_heads": None, "pooler_heads": None}
        for key, value in raw.items():
            if key not in out:
                raise ConfigError(f"{prefix}.{key}: unknown SONAR option; known: {', '.join(out)}")
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"{prefix}.{key}: expected a positive number of heads, got {value!r}")
            out[key] = value
        return out

    @classmethod
    def resolve(cls, checkpoint, cache: Path):
        if checkpoint == "tiny":
            from .tiny import build_tiny, tiny_checkpoint

            return tiny_checkpoint(cached(cache / "tiny-sonar", build_tiny))
        if not isinstance(checkpoint, dict) or not {"text", "tokenizer", "speech"} <= set(checkpoint) \
                or not isinstance(checkpoint["speech"], dict):
            raise ModelError(f"a SONAR checkpoint is `tiny` or a mapping with text, tokenizer and speech "
                             f"(a mapping from language to speech encoder), got {checkpoint!r}")
        return checkpoint

    @classmethod
    def spec(cls, checkpoint: dict, options: dict) -> ModelSpec:
        from ... import languages as langs
        from ..files import local_file

        text, _ = read_state(local_file(checkpoint["text"], "SONAR text encoder"))
        width = text["encoder_frontend.embed.weight"].shape[1]
        n_text = _count(text, "encoder.layers.")
        first = next(iter(checkpoint["speech"].values()))
        speech, _ = read_state(local_file(first, "SONAR speech encoder"))
        fs1 = any(k.startswith("encoder.w2v_model.") for k in speech)
        n_speech = _count(speech, "encoder.w2v_model.encoder.layers." if fs1 else "encoder.layers.")
        pool = ("pool", "adaptor", 1.0)
        points = {"text": tuple(stack(width, n_text, top=pool)), "speech": tuple(stack(width, n_speech, top=pool))}
        pairs = ([("in", "in", "in")] + [(str(i), str(i), str(i)) for i in range(1, min(n_text, n_speech) + 1)]
                 + [("pool", "pool", "pool")])
        missing = sorted(set(langs.STUDY) - SPEECH_LANGUAGES)
        advice = {"speech": f"SONAR has no speech encoder for {', '.join(missing)}: give the model "
                            f"`languages: paper-sonar` (the study's SONAR set) or a list without them, or add "
                            f"`checkpoint.speech.<iso>` for a language SONAR has"}
        return ModelSpec(checkpoint=checkpoint, points=points, pairs=tuple(pairs),
                         languages={"text": None, "speech": frozenset(checkpoint["speech"])}, advice=advice)

    @classmethod
    def text_tokenizer(cls, checkpoint: dict, options: dict):
        tokenizer = load_tokenizer(checkpoint)  # ids cut as `featurize` cuts them, less the tag and </s>
        return lambda text: list(tokenizer(text, add_special_tokens=False)["input_ids"])[:TEXT_MAX_TOKENS - 2]

    def featurize(self, modality: str, iso: str, inputs: list) -> tuple[torch.Tensor, torch.Tensor]:
        """(token ids, lengths) or (standardised fbank frames, lengths), zero-padded."""
        if modality == "text":
            from ... import languages as langs

            self.tokenizer.src_lang = langs.get(iso).flores
            enc = self.tokenizer(inputs, padding=True, truncation=True, max_length=TEXT_MAX_TOKENS,
                                 return_tensors="pt")
            return enc["input_ids"], enc["attention_mask"].sum(dim=1)
        if self.fbank is not None:  # computed on the device by `forward`
            return pad_waves(inputs)
        return collate([torch.from_numpy(fbank(w)) for w in inputs])

    @torch.inference_mode()
    def forward(self, modality: str, iso: str, features, points: tuple[str, ...]) -> dict[str, torch.Tensor]:
        x, lengths = features
        if modality == "text":
            out = self.text.states(on(self.device, x), on(self.device, lengths))
        else:
            if self.fbank is not None:
                x, lengths = self._device_fbank(on(self.device, x), lengths)
            out = self._speech_encoder(iso).states(on(self.device, x, self.dtype), on(self.device, lengths))
        names = ["in"] + [str(i) for i in range(1, len(out.states) - 1)]  # the last state is the final LN
        mask = out.mask()
        pooled = {name: masked_mean(state, mask) for name, state in zip(names, out.states) if name in points}
        pooled["pool"] = out.pooled
        return {p: pooled[p] for p in points}

    def _device_fbank(self, waves: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`fbank` and the batching of `featurize` on the device: each bin standardised over the clip with the
        unbiased std and no epsilon, zero-padded to an even frame count."""
        feats = []
        for wave, n in zip(waves, lengths.tolist()):
            f = self.fbank(wave[:n])
            if len(f) < 2:
                raise ModelError(f"a clip of {n} samples gives fewer than 2 fbank frames")
            feats.append(((f - f.mean(dim=0)) / f.std(dim=0, unbiased=True)).to(torch.float32))
        batch, counts = collate(feats)
        return batch.to(self.dtype), counts

    def _speech_encoder(self, iso: str) -> SonarSpeechEncoder:
        from ..files import local_file

        ref = self.checkpoint["speech"].get(iso)
        if ref is None:
            raise ModelError(f"SONAR: no speech encoder given for {iso} (checkpoint.speech.{iso})")
        if self._speech is None or self._speech[0] != ref:
            self._speech = None
            model = SonarSpeechEncoder.from_checkpoint(local_file(ref, f"SONAR speech encoder for {iso}"),
                                                       pooler_heads=self.options.get("pooler_heads"))
            self._speech = (ref, model.to(self.device, self.dtype))
        return self._speech[1]


def collate(feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Standardised fbank frames of a batch, zero-padded to an even frame count as the official collater does,
    on their device, and the frame counts (on the host)."""
    counts = torch.tensor([len(f) for f in feats])
    t = int(counts.max()) + int(counts.max()) % 2
    batch = feats[0].new_zeros(len(feats), t, feats[0].shape[1])
    for i, f in enumerate(feats):
        batch[i, :len(f)] = f
    return batch, counts


def load_tokenizer(checkpoint: dict):
    """The NLLB tokenizer at `checkpoint["tokenizer"]` (a transformers folder or hub id)."""
    from transformers import NllbTokenizer

    try:
        return NllbTokenizer.from_pretrained(checkpoint["tokenizer"])
    except OSError as exc:
        raise load_error("the NLLB tokenizer for SONAR", checkpoint["tokenizer"], exc) from None


def check_vocabulary(tokenizer, rows: int, checkpoint: dict) -> None:
    """Refuse a tokenizer far smaller than the text encoder's embedding table: transformers returns a stub
    (about 200 tokens, every word <unk>) for an NLLB hub id that is not cached offline, and every sentence would
    then look alike."""
    if len(tokenizer) < rows // 2:
        raise ModelError(f"the NLLB tokenizer {checkpoint['tokenizer']!r} has {len(tokenizer)} tokens but the SONAR "
                         f"text encoder {checkpoint['text']!r} embeds {rows}: not its tokenizer (offline and not in "
                         f"the local cache? run `crossrep prefetch JOB` on a login node first)")
