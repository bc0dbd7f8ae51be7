"""SALMONN in the pipeline: both modalities get (waveform, transcript) pairs; "speech" pools the audio positions
of the joint sequence, "text" the text positions (see `crossrep.models.joint` and the model's docstring)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import ConfigError
from ..base import DTYPES, ModelSpec, Point, load_error, pick_device
from ..features import WhisperLogMel
from ..joint import JointAdapter, JointStates, TextStates
from ..points import stack
from ..tiny import cached
from .model import KEYS, PLACEHOLDER, SPECIAL, TEMPLATE, Salmonn, Tokenizer, build_prompt, file_of
from .tiny import build_tiny, tiny_paths


class SalmonnAdapter(JointAdapter):
    FAMILY = "SALMONN"
    device_features = True
    offers_lens = True  # final norm and LM head loaded: the logit lens can read them
    TEMPLATE, PLACEHOLDER, SPECIAL = TEMPLATE, PLACEHOLDER, SPECIAL
    AUDIO_BLOCK = "<Speech><SpeechHere></Speech>"

    def __init__(self, checkpoint, options: dict | None = None, device: str = "auto", dtype: str = "float32",
                 features: str = "cpu"):
        paths = _mapping(checkpoint)
        self.checkpoint = paths
        self.options = self.check_options(options or {}, "options")
        self.model = Salmonn.from_checkpoints(**paths, device=pick_device(device), dtype=DTYPES[dtype])
        if features == "device":
            self.model.log_mel = WhisperLogMel(self.model.features)

    @classmethod
    def resolve(cls, checkpoint, cache: Path) -> dict[str, str]:
        if checkpoint == "tiny":
            return tiny_paths(cached(cache / "tiny-salmonn", build_tiny))
        paths = _mapping(checkpoint)
        for key in ("salmonn", "beats"):  # files: local paths or hf://owner/repo/path (fetched by prefetch)
            if not paths[key].startswith("hf://") and not Path(paths[key]).is_file():
                raise ConfigError(f"checkpoint.{key}: {paths[key]!r} is not a file (nor an hf:// reference)")
        return paths

    @classmethod
    def spec(cls, checkpoint, options: dict | None = None) -> ModelSpec:
        from transformers import LlamaConfig, WhisperConfig

        from ..files import local_file
        from .beats import beats_config

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
        text = stack(width, layers)
        # the audio's "in" is the Q-Former's output as the LLM takes it: the length adaptation of the speech side
        speech = [Point("enc", whisper.d_model + beats.encoder_embed_dim, -1.0, "encoder")] + stack(
            width, layers, first="adaptor")
        pairs = [("enc", "in", "enc")] + [(p.name, p.name, p.name) for p in text]
        return ModelSpec(checkpoint=paths, points={"text": tuple(text), "speech": tuple(speech)},
                         pairs=tuple(pairs), languages={"text": None, "speech": None})

    @classmethod
    def text_tokenizer(cls, checkpoint, options: dict | None = None):
        """The transcript's ids as `Salmonn.states` marks them: the prompt part holding the transcript, encoded
        alone, less the template's and prompt's own tokens (a lone "▁" before the transcript included)."""
        opts = cls.check_options(options or {}, "options")
        tokenizer = Tokenizer(file_of(_mapping(checkpoint)["llm"], "tokenizer.model"))

        def ids(text: str) -> list[int]:
            parts = build_prompt(text, opts["prompt"], opts["template"])
            side = parts.span[0]
            part, mask = tokenizer.encode(parts.left if side == "left" else parts.right, parts.part_span(side))
            return [i for i, keep in zip(part, mask) if keep]

        return ids

    @classmethod
    def token_texts(cls, checkpoint, options: dict, ids: list[int]) -> list[str]:
        """Each token id as a SentencePiece piece (`<id N>` past the vocabulary)."""
        sp = Tokenizer(file_of(_mapping(checkpoint)["llm"], "tokenizer.model")).sp
        return [sp.id_to_piece(i) if 0 <= i < sp.get_piece_size() else f"<id {i}>" for i in ids]

    def prepare(self, waves: list[np.ndarray], texts: list[str]) -> dict:
        return self.model.prepare(waves, texts, prompt=self.options["prompt"], template=self.options["template"])

    def run(self, prepared: dict) -> JointStates:
        return self.model.run(prepared)

    def lens_modules(self):
        return self.model.body.norm, self.model.llm.get_output_embeddings()

    def encode_text(self, text: str, span: tuple[int, int]) -> tuple[list[int], list[bool]]:
        return self.model.tokenizer.encode(text, span)

    def text_prefix(self) -> list[int]:
        return [self.model.tokenizer.bos]

    def run_text(self, rows: dict) -> TextStates:
        return self.model.run_text(rows)


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
