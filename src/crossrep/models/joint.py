"""Joint audio-text sequences of audio LLMs, written once for every family.

An audio LLM reads one sequence: a prompt template whose placeholder stands for the clip's audio tokens and whose
`{prompt}` holds the user prompt, which holds the transcript (`{text}`). Its hidden states are split by position:
the audio tokens make the "speech" side, the transcript's tokens (option `text_positions: transcript`) or every
non-audio position (`prompt`) the "text" side. `audio_positions: speech` keeps only the audio tokens (and encoder
frames) that cover part of the clip rather than a fixed-length padding. Options are recorded with the results.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ConfigError, ModelError
from .base import Adapter, masked_mean, to_host
from .lens import LensRequest
from .lens import scores as lens_scores

DEFAULT_PROMPT = "{text}"
CHOICES = {"text_positions": ("transcript", "prompt"), "audio_positions": ("all", "speech"),
           "text_input": ("joint", "alone")}


@dataclass(frozen=True)
class Prompt:
    """The formatted template split at the audio placeholder; `span` locates the transcript ("left" or "right",
    first and last+1 character), None if the user prompt does not hold it."""

    left: str
    right: str
    span: tuple[str, int, int] | None

    def part_span(self, side: str) -> tuple[int, int] | None:
        return self.span[1:] if self.span and self.span[0] == side else None


def build_prompt(text: str, prompt: str, template: str, placeholder: str) -> Prompt:
    if template.count(placeholder) != 1 or template.count("{prompt}") != 1:
        raise ModelError(f"template {template!r} needs one {placeholder} and one {{prompt}}")
    if prompt.count("{text}") > 1:
        raise ModelError(f"prompt {prompt!r} holds {{text}} more than once")
    text = text.strip()
    if "{text}" in prompt:
        pre, post = prompt.split("{text}")
        pre, post = pre.lstrip(), post.rstrip()
        user, at = pre + text + post, len(pre)
    else:
        user, at = prompt.strip(), None
    halves = template.split(placeholder)
    side = 1 if "{prompt}" in halves[1] else 0
    i = halves[side].index("{prompt}")
    halves[side] = halves[side][:i] + user + halves[side][i + len("{prompt}"):]
    span = None if at is None else (("left", "right")[side], i + at, i + at + len(text))
    return Prompt(halves[0], halves[1], span)


def text_alone(text: str, prompt: str, template: str, placeholder: str, block: str) -> tuple[str, tuple[int, int]]:
    """The text-only sequence of `template` (its audio `block`, the placeholder with its markers, removed; the
    placeholder alone where the template does not hold the block) and the transcript's character span in it."""
    if block in template:
        template = template.replace(block, placeholder, 1)
    parts = build_prompt(text, prompt, template, placeholder)
    side, first, last = parts.span
    shift = len(parts.left) if side == "right" else 0
    return parts.left + parts.right, (first + shift, last + shift)


def check_options(raw, prefix: str, family: str, template: str, placeholder: str, special=(), extra=None) -> dict:
    """`prompt`, `template`, `text_positions`, `audio_positions` (and a family's `extra` defaults), checked with
    the key at fault quoted and defaults filled in."""
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix}: expected a mapping of {family} options, got {raw!r}")
    defaults = {"prompt": DEFAULT_PROMPT, "template": template, "text_positions": "transcript",
                "audio_positions": "all", "text_input": "joint", **(extra or {})}
    for key in raw:
        if key not in defaults:
            raise ConfigError(f"{prefix}.{key}: unknown {family} option; known: {', '.join(defaults)}")
    out = dict(defaults, **raw)
    for key, allowed in CHOICES.items():
        if out[key] not in allowed:
            raise ConfigError(f"{prefix}.{key}: {out[key]!r} is not one of {', '.join(allowed)}")
    if not isinstance(out["prompt"], str) or out["prompt"].count("{text}") != 1:
        raise ConfigError(f"{prefix}.prompt: {out['prompt']!r} must contain {{text}} (the transcript) once")
    tpl = out["template"]
    if not isinstance(tpl, str) or tpl.count(placeholder) != 1 or tpl.count("{prompt}") != 1:
        raise ConfigError(f"{prefix}.template: {tpl!r} must contain {placeholder} and {{prompt}} once each")
    if placeholder in out["prompt"]:
        raise ConfigError(f"{prefix}.prompt: {out['prompt']!r} must not contain the audio placeholder {placeholder}")
    bad = [t for t in special if t in out["prompt"] + tpl.replace(placeholder, "")]
    if bad:
        raise ConfigError(f"{prefix}.prompt/template: the special token {bad[0]} is not allowed "
                          f"(refused: {', '.join(special)})")
    return out


def offset_mask(offsets, span: tuple[int, int] | None) -> list[bool]:
    """Per token (character offsets from a fast tokenizer), whether it overlaps the characters `span`; tokens
    with an empty offset (specials) never do. Byte-level pieces of one character share its offsets: each counts."""
    if span is None or span[0] == span[1]:
        return [False] * len(offsets)
    first, last = span
    return [b > a and a < last and b > first for a, b in offsets]


@dataclass
class Row:
    """One joint sequence before padding: ids (the audio id at audio positions) and per-position roles."""

    ids: list[int]
    audio: list[bool]
    speech: list[bool]
    transcript: list[bool]


def row(left: tuple[list[int], list[bool]], right: tuple[list[int], list[bool]], audio_id: int, n_audio: int,
        n_speech: int, prefix: list[int] = ()) -> Row:
    """`prefix` (e.g. BOS) + left part + `n_audio` audio tokens (the first `n_speech` cover the clip) + right part."""
    (lids, lt), (rids, rt) = left, right
    head, tail = [False] * (len(prefix) + len(lids)), [False] * len(rids)
    return Row(ids=list(prefix) + lids + [audio_id] * n_audio + rids,
               audio=head + [True] * n_audio + tail,
               speech=head + [True] * n_speech + [False] * (n_audio - n_speech) + tail,
               transcript=[False] * len(prefix) + lt + [False] * n_audio + rt)


def pad_rows(rows: list[Row], pad_id: int, device) -> dict[str, torch.Tensor]:
    """Right-padded (B, N) tensors: ids, valid, audio, speech, transcript."""
    n = max(len(r.ids) for r in rows)

    def padded(values, fill):
        return torch.tensor([v + [fill] * (n - len(v)) for v in values], device=device)

    return {"ids": padded([r.ids for r in rows], pad_id),
            "valid": padded([[True] * len(r.ids) for r in rows], False),
            "audio": padded([r.audio for r in rows], False),
            "speech": padded([r.speech for r in rows], False),
            "transcript": padded([r.transcript for r in rows], False)}


@dataclass
class JointStates:
    """States of a batch of joint (audio, text) sequences, right-padded to N positions."""

    enc: torch.Tensor  # (B, T, D): the audio encoder's output as the model's adaptor takes it
    enc_valid: torch.Tensor  # bool (B, T): frames the encoder computed (padding to a fixed window included)
    enc_speech: torch.Tensor  # bool (B, T): encoder frames that cover part of the clip
    hidden: tuple[torch.Tensor, ...]  # L + 1 tensors (B, N, H): [0] input embeddings, [k] raw output of layer k
    out: torch.Tensor  # (B, N, H): the final norm applied to layer L's output
    valid: torch.Tensor  # bool (B, N): real positions (False: padding)
    audio: torch.Tensor  # bool (B, N): the audio tokens
    speech: torch.Tensor  # bool (B, N): audio tokens that cover part of the clip
    transcript: torch.Tensor  # bool (B, N): text tokens overlapping the transcript
    prompt: torch.Tensor  # bool (B, N): every valid non-audio position
    input_ids: torch.Tensor  # long (B, N): token ids as the model received them


@dataclass
class TextStates:
    """States of a batch of text-only sequences (`text_input: alone`), right-padded to N positions."""

    hidden: tuple[torch.Tensor, ...]  # L + 1 tensors (B, N, H), as in JointStates
    out: torch.Tensor
    valid: torch.Tensor
    transcript: torch.Tensor
    input_ids: torch.Tensor


class JointAdapter(Adapter):
    """An audio LLM: both modalities take (16 kHz clip, transcript) pairs; `embed_joint` runs one forward pass
    for both. Subclasses name the family, the default template and placeholder, and implement `states`."""

    joint_inputs = True
    FAMILY = "audio LLM"
    TEMPLATE = "{audio}{prompt}"
    PLACEHOLDER = "{audio}"
    SPECIAL: tuple[str, ...] = ()  # tokens a prompt or template may not contain
    AUDIO_BLOCK = ""  # the template's audio block (placeholder and markers) `text_input: alone` removes
    EXTRA_OPTIONS: dict = {}

    @classmethod
    def check_options(cls, raw: dict, prefix: str) -> dict:
        return check_options(raw, prefix, cls.FAMILY, cls.TEMPLATE, cls.PLACEHOLDER, cls.SPECIAL, cls.EXTRA_OPTIONS)

    @abstractmethod
    def prepare(self, waves: list[np.ndarray], texts: list[str]):
        """The CPU part of a forward pass (features, token rows), with the options' prompt and template."""

    @abstractmethod
    def run(self, prepared) -> JointStates:
        """One forward pass of a prepared batch."""

    def states(self, waves: list[np.ndarray], texts: list[str]) -> JointStates:
        return self.run(self.prepare(waves, texts))

    def encode_text(self, text: str, span: tuple[int, int]) -> tuple[list[int], list[bool]]:
        """Ids of a whole text-only sequence (no special tokens added) and, per id, whether it is the transcript."""
        raise ModelError(f"{self.FAMILY} cannot run text alone")

    def text_prefix(self) -> list[int]:
        """Ids the model puts before every sequence (a BOS), as in its joint rows."""
        return []

    def prepare_text(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Right-padded rows of the text-only sequences (`text_input: alone`)."""
        rows = []
        for sentence in texts:
            whole, span = text_alone(sentence, self.options["prompt"], self.options["template"], self.PLACEHOLDER,
                                     self.AUDIO_BLOCK or self.PLACEHOLDER)
            rows.append(row(self.encode_text(whole, span), ([], []), audio_id=-1, n_audio=0, n_speech=0,
                            prefix=self.text_prefix()))
        return pad_rows(rows, 0, "cpu")

    def run_text(self, rows: dict[str, torch.Tensor]) -> TextStates:
        """One forward pass of text-only rows, without audio."""
        raise ModelError(f"{self.FAMILY} cannot run text alone")

    def featurize(self, modality: str, iso: str, inputs: list):
        return self.featurize_joint(iso, inputs)

    def featurize_joint(self, iso: str, inputs: list):
        if not all(isinstance(x, (tuple, list)) and len(x) == 2 for x in inputs):
            raise ModelError(f"{self.FAMILY} takes (waveform, transcript) pairs for both modalities")
        texts = [str(x[1]) for x in inputs]
        joint = self.prepare([x[0] for x in inputs], texts)
        if self.options["text_input"] == "joint":
            return joint
        return {"joint": joint, "text": self.prepare_text(texts)}

    def forward(self, modality: str, iso: str, features, points: tuple[str, ...]) -> dict[str, torch.Tensor]:
        return self.forward_joint(iso, features, {modality: points})[modality]

    def lens_modules(self) -> tuple[torch.nn.Module, torch.nn.Module]:
        """(final norm, LM head) of the decoder, for the logit lens."""
        raise ModelError(f"{self.FAMILY} offers no logit lens")

    def embed_joint(self, iso: str, inputs: list, points: dict[str, tuple[str, ...]],
                    lens: LensRequest | None = None) -> dict[str, dict]:
        """{modality: {point: (batch, width) float64 array}} for the modalities in `points`, one forward pass."""
        out = self.forward_joint(iso, self.featurize_joint(iso, inputs), points, lens)
        return {m: to_host(v) for m, v in out.items()}

    @torch.inference_mode()
    def forward_joint(self, iso: str, features, points: dict[str, tuple[str, ...]],
                      lens: LensRequest | None = None) -> dict[str, dict]:
        """{modality: {point: pooled tensor}} of a featurized batch, from one forward pass; with `lens` and the
        speech side asked for, also the logit lens's `lens_<point>` scores and `lenstop_<point>` ids there."""
        if "enc" in points.get("text", ()):
            raise ModelError(f"{self.FAMILY} has no point 'enc' for text")
        alone = self.options["text_input"] == "alone"
        joint_features = features["joint"] if alone else features
        passes = {}  # modality -> (states of its pass, mask of its positions)
        transcript_only = self.options["text_positions"] == "transcript"
        if "speech" in points or not alone:
            st = self.run(joint_features)
            every = self.options["audio_positions"] == "all"
            passes["speech"] = (st, st.audio if every else st.speech)
            passes["text"] = (st, st.transcript if transcript_only else st.prompt)
        if alone and "text" in points:
            ts = self.run_text(features["text"])
            passes["text"] = (ts, ts.transcript if transcript_only else ts.valid)
        out = {}
        for modality, names in points.items():
            states, mask = passes[modality]
            values = {"in": states.hidden[0], "out": states.out}
            values.update({str(i): h for i, h in enumerate(states.hidden[1:], 1)})
            pooled = {}
            for p in names:
                if p == "enc":
                    every = self.options["audio_positions"] == "all"
                    pooled[p] = masked_mean(states.enc, states.enc_valid if every else states.enc_speech)
                elif p in values:
                    pooled[p] = masked_mean(values[p], mask)
                else:
                    raise ModelError(f"{self.FAMILY} has no point {p!r}")
            out[modality] = pooled
        if lens is not None and "speech" in points:
            st = passes["speech"][0]
            values = {"in": st.hidden[0], "out": st.out}
            values.update({str(i): h for i, h in enumerate(st.hidden[1:], 1)})
            norm, head = self.lens_modules()
            own = [st.input_ids[b][st.transcript[b]].tolist() for b in range(st.input_ids.shape[0])]
            for p in lens.points:
                if p not in values:
                    raise ModelError(f"{self.FAMILY}: the logit lens reads decoder points; {p!r} is not one")
                scored, top = lens_scores(values[p], st.audio, norm, head, p == "out", own, list(lens.partner),
                                          lens.k)
                out["speech"][f"lens_{p}"], out["speech"][f"lenstop_{p}"] = scored, top
        return out
