"""Any transformers text encoder with any transformers speech encoder (`adapter: hf_encoders`).

`checkpoint: {text: ID, speech: ID}` (hub ids or local folders; the same id twice for a model holding both, as
SeamlessM4T v2). The encoder of each is the model's `text_encoder` / `speech_encoder` where it has one, else its
`get_encoder()` for encoder-decoder models (Whisper), else the model itself (BERT, XLM-R, LaBSE, wav2vec 2.0,
MMS, w2v-BERT 2.0). Its layers are the largest `ModuleList` of it by parameter count (option `text_layers` /
`speech_layers`: a module path such as `encoder.layer`, where that rule picks wrongly).

Points: "in" (text: the input of layer 1; speech: the features the encoder receives, pooled over the feature
mask, or the input of layer 1 for models fed raw samples), "1".."L" (each layer's raw output), and "pool" where
the model returns a `pooler_output` (BERT-style poolers; not mean-pooled). Every other point is mean-pooled over
its valid positions: the tokenizer's attention mask; for speech, the encoder's own length rule
(`_get_feat_extract_output_lengths`) where it has one, the feature mask where states keep the feature rate, else
the mask scaled to the states' rate (Whisper: 3000 mel frames -> 1500 states, the clip's ceil(frames / 2)).

Cross-modal pairs (option `pairs`): `relative` (default): "in" with "in" and each text layer i with the speech layer
nearest to i * Ls / Lt, halves up (labelled "i" when the depths agree, else "i/j"), "pool" with "pool" where both
have one; or a list of [text point, speech point]. Text tokenizers with a `src_lang` get the language's code
(SeamlessM4T's "eng" or NLLB's "eng_Latn", whichever their vocabulary holds). Languages are not restricted.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from ... import languages as langs
from ...errors import ConfigError, ModelError
from ..audio_llm import SAMPLE_RATE
from ..base import DTYPES, PRETRAINED, Adapter, ModelSpec, Point, Recorder, load_error, masked_mean, on, pick_device

MODALITY_ATTR = {"text": "text_encoder", "speech": "speech_encoder"}
OPTIONS = {"pairs": "relative", "text_layers": None, "speech_layers": None}


def encoder_of(model: nn.Module, modality: str) -> nn.Module:
    part = getattr(model, MODALITY_ATTR[modality], None)
    if isinstance(part, nn.Module):
        return part
    if getattr(model.config, "is_encoder_decoder", False) and hasattr(model, "get_encoder"):
        return model.get_encoder()
    return model


def find_layers(encoder: nn.Module, path: str | None, where: str) -> nn.ModuleList:
    if path is not None:
        module = encoder
        for part in path.split("."):
            module = getattr(module, part, None)
        if not isinstance(module, nn.ModuleList):
            raise ModelError(f"{where}: {path!r} is not a ModuleList of the encoder ({type(encoder).__name__})")
        return module
    lists = [m for m in encoder.modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    if not lists:
        raise ModelError(f"{where}: {type(encoder).__name__} has no layer list; give the option's module path")
    return max(lists, key=lambda m: sum(p.numel() for p in m.parameters()))


def first_width(encoder: nn.Module) -> int:
    """Input width of the first linear or convolution layer (1 for models fed raw samples)."""
    for m in encoder.modules():
        if isinstance(m, nn.Linear):
            return m.in_features
        if isinstance(m, nn.Conv1d):
            return m.in_channels
    raise ModelError(f"{type(encoder).__name__}: no linear or convolution layer to read the input width from")


def hidden_width(layers: nn.ModuleList) -> int:
    """The width of a layer's output: the out-features of its last linear layer."""
    last = [m for m in layers[0].modules() if isinstance(m, nn.Linear)]
    if not last:
        raise ModelError(f"{type(layers[0]).__name__}: no linear layer to read the width from")
    return last[-1].out_features


def relative_pairs(text: list[Point], speech: list[Point]) -> list[tuple[str, str, str]]:
    lt = [p for p in text if p.kind == "layer"]
    ls = [p for p in speech if p.kind == "layer"]
    pairs = [("in", "in", "in")]
    for i in range(1, len(lt) + 1):
        j = max(1, math.floor(i * len(ls) / len(lt) + 0.5))
        pairs.append((str(i) if i == j else f"{i}/{j}", str(i), str(j)))
    if any(p.name == "pool" for p in text) and any(p.name == "pool" for p in speech):
        pairs.append(("pool", "pool", "pool"))
    return pairs


class HFEncodersAdapter(Adapter):
    def __init__(self, checkpoint: dict, options: dict, device: str = "auto", dtype: str = "float32",
                 features: str = "cpu"):
        from transformers import AutoFeatureExtractor, AutoModel, AutoTokenizer

        self.checkpoint, self.options = _mapping(checkpoint), self.check_options(options or {}, "options")
        self.device, self.dtype = pick_device(device), DTYPES[dtype]
        self.encoders, self.layers = {}, {}
        loaded = {}
        for modality, ref in self.checkpoint.items():
            try:
                if ref not in loaded:
                    loaded[ref] = AutoModel.from_pretrained(ref, dtype=self.dtype, **PRETRAINED)
                if modality == "text":
                    self.tokenizer = AutoTokenizer.from_pretrained(ref)
                else:
                    self.features = AutoFeatureExtractor.from_pretrained(ref)
            except OSError as exc:
                raise load_error(f"the {modality} encoder", ref, exc) from None
            enc = encoder_of(loaded[ref], modality).to(self.device).eval().requires_grad_(False)
            self.encoders[modality] = enc
            self.layers[modality] = find_layers(enc, self.options[f"{modality}_layers"], f"checkpoint.{modality}")
        del loaded

    @classmethod
    def check_options(cls, raw: dict, prefix: str) -> dict:
        raw = {} if raw is None else raw
        if not isinstance(raw, dict):
            raise ConfigError(f"{prefix}: expected a mapping of hf_encoders options, got {raw!r}")
        for key in raw:
            if key not in OPTIONS:
                raise ConfigError(f"{prefix}.{key}: unknown hf_encoders option; known: {', '.join(OPTIONS)}")
        out = dict(OPTIONS, **raw)
        pairs = out["pairs"]
        if pairs != "relative" and not (isinstance(pairs, list) and pairs and all(
                isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in pairs)):
            raise ConfigError(f"{prefix}.pairs: expected `relative` or a list of [text point, speech point], "
                              f"got {pairs!r}")
        for key in ("text_layers", "speech_layers"):
            if out[key] is not None and not isinstance(out[key], str):
                raise ConfigError(f"{prefix}.{key}: expected a module path such as encoder.layer, got {out[key]!r}")
        return out

    @classmethod
    def resolve(cls, checkpoint, cache: Path) -> dict:
        return _mapping(checkpoint)

    @classmethod
    def structure(cls, ref: str, modality: str, layers_path: str | None) -> tuple[int, int, int, bool]:
        """(layers, width, input width, has a pooler) from the config alone: the model built on the meta device."""
        from transformers import AutoConfig, AutoModel

        try:
            cfg = AutoConfig.from_pretrained(ref)
        except (OSError, ValueError) as exc:
            raise load_error(f"the {modality} encoder config", ref, exc) from None
        with torch.device("meta"):
            enc = encoder_of(AutoModel.from_config(cfg), modality)
        layers = find_layers(enc, layers_path, f"checkpoint.{modality}")
        pooler = getattr(enc, "pooler", None) is not None
        return len(layers), hidden_width(layers), first_width(enc), pooler

    @classmethod
    def spec(cls, checkpoint: dict, options: dict) -> ModelSpec:
        opts = cls.check_options(options or {}, "options")
        paths = _mapping(checkpoint)
        points = {}
        for modality, ref in paths.items():
            n, width, first, pooler = cls.structure(ref, modality, opts[f"{modality}_layers"])
            fed = width if modality == "text" or first == 1 else first
            pts = [Point("in", fed, 0.0, "input")] + [Point(str(i), width, float(i)) for i in range(1, n + 1)]
            if pooler:
                pts.append(Point("pool", width, n + 1.0, "adaptor"))
            points[modality] = tuple(pts)
        if opts["pairs"] == "relative":
            pairs = relative_pairs(list(points["text"]), list(points["speech"]))
        else:
            names = {m: {p.name for p in points[m]} for m in points}
            for t, s in opts["pairs"]:
                if t not in names["text"] or s not in names["speech"]:
                    raise ConfigError(f"options.pairs: [{t}, {s}] names a point neither side offers; text offers "
                                      f"{', '.join(sorted(names['text']))}; speech "
                                      f"{', '.join(sorted(names['speech']))}")
            pairs = [(t if t == s else f"{t}/{s}", t, s) for t, s in opts["pairs"]]
        return ModelSpec(checkpoint=paths, points=points, pairs=tuple(pairs), languages={"text": None, "speech": None})

    @classmethod
    def text_tokenizer(cls, checkpoint: dict, options: dict):
        from transformers import AutoTokenizer

        ref = _mapping(checkpoint)["text"]
        try:
            tokenizer = AutoTokenizer.from_pretrained(ref)
        except OSError as exc:
            raise load_error("the text tokenizer", ref, exc) from None
        return lambda text: list(tokenizer(text, add_special_tokens=False)["input_ids"])

    def featurize(self, modality: str, iso: str, inputs: list) -> dict:
        if modality == "text":
            self._language(iso)
            batch = self.tokenizer(list(inputs), padding=True, truncation=True, return_tensors="pt")
            return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        fixed = hasattr(self.features, "n_samples")  # Whisper: exactly 30 s of mel frames
        feats = self.features(list(inputs), sampling_rate=SAMPLE_RATE, return_attention_mask=True,
                              padding="max_length" if fixed else True, return_tensors="pt")
        name = "input_features" if "input_features" in feats else "input_values"
        return {name: feats[name], "attention_mask": feats.get("attention_mask")}

    @torch.inference_mode()
    def forward(self, modality: str, iso: str, features: dict, points: tuple[str, ...]) -> dict[str, torch.Tensor]:
        enc, layers = self.encoders[modality], self.layers[modality]
        rec = Recorder()
        rec.layers(layers)
        try:
            if modality == "text":
                mask = on(self.device, features["attention_mask"])
                out = enc(input_ids=on(self.device, features["input_ids"]), attention_mask=mask)
                masks = dict.fromkeys(rec.values, mask)
            else:
                name = "input_features" if "input_features" in features else "input_values"
                x = on(self.device, features[name], self.dtype)
                mask = features["attention_mask"]
                kwargs = {} if mask is None else {"attention_mask": on(self.device, mask)}
                out = enc(**{name: x}, **kwargs)
                masks = self._speech_masks(enc, x, name, mask, rec.values)
                if name == "input_features" and x.dim() == 3:  # the features the encoder receives
                    rec.values["in"] = x if x.shape[1] == masks["feature"].shape[1] else x.transpose(1, 2)
                    masks["in"] = masks["feature"]
        finally:
            rec.remove()
        pooled = {}
        for p in points:
            if p == "pool":
                pooled[p] = out.pooler_output
            elif p in rec.values:
                pooled[p] = masked_mean(rec.values[p], masks[p])
            else:
                raise ModelError(f"hf_encoders: {modality} has no point {p!r}")
        return pooled

    def _language(self, iso: str) -> None:
        if not hasattr(self.tokenizer, "src_lang"):
            return
        lang = langs.get(iso)
        vocab = self.tokenizer.get_vocab()
        for code in (f"__{lang.seamless}__", lang.flores):
            if code in vocab:
                self.tokenizer.src_lang = code.strip("_")
                return
        raise ModelError(f"{self.checkpoint['text']}: the tokenizer has no language code for {iso} "
                         f"(neither __{lang.seamless}__ nor {lang.flores})")

    def _speech_masks(self, enc, x, name: str, mask, states: dict) -> dict[str, torch.Tensor]:
        """Per recorded state, the valid positions of each clip, by the rule of the module docstring."""
        if mask is None:
            frames = x.shape[-1] if name == "input_features" else x.shape[1]
            mask = torch.ones(x.shape[0], frames, dtype=torch.long)
        lengths = mask.sum(dim=1)
        out = {"feature": mask}
        rule = getattr(enc, "_get_feat_extract_output_lengths", None)
        for key, state in states.items():
            t = state.shape[1]
            if rule is not None and name == "input_values":
                valid = rule(lengths)
                valid = valid[1] if isinstance(valid, tuple) else valid
            elif t == mask.shape[1]:
                valid = lengths
            else:
                valid = torch.tensor([math.ceil(int(n) * t / mask.shape[1]) for n in lengths])
            out[key] = (torch.arange(t)[None, :] < valid.cpu()[:, None]).long()
        return out


def _mapping(checkpoint) -> dict[str, str]:
    if not isinstance(checkpoint, dict) or set(checkpoint) != {"text", "speech"} or not all(
            isinstance(v, str) and v for v in checkpoint.values()):
        raise ConfigError(f"hf_encoders checkpoint: expected a mapping {{text: ID, speech: ID}} (hub ids or local "
                          f"folders), got {checkpoint!r}")
    return {"text": checkpoint["text"], "speech": checkpoint["speech"]}
