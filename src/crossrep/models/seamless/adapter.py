"""SeamlessM4T v2 through transformers: its text encoder and its speech encoder (conformer + length adaptor).

Points. Text: "in" (scaled token embeddings plus positions, the input of layer 1), "1".."L" (each encoder
layer's raw output), "out" (after the encoder's final LayerNorm: what transformers 4.x reported as the last
hidden state). Speech: "in" (the stacked 160-dim filterbank features the encoder receives), "1".."L" (each
conformer layer), "out" (after the conformer's final LayerNorm), "len" (after the length adaptor and the
inner LayerNorm, subsampled 8x: pooled over its own mask). Each point is pooled over its own valid positions.

Batched and one-at-a-time extraction agree: besides the masks transformers applies, the outputs of each adaptor
layer's two LayerNorms are zeroed at padded frames; their strided convolutions would otherwise mix the LayerNorm
bias of padded frames into the last valid frame (found with fully random tiny weights: 2.4e-2 relative).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ...errors import ModelError
from ..base import DTYPES, PRETRAINED, Adapter, ModelSpec, Point, Recorder, load_error, masked_mean, on, pick_device
from ..features import KaldiFbank, pad_waves
from ..points import same_name_pairs, stack
from ..tiny import cached, randomise, write_marker

HUB_ID = "facebook/seamless-m4t-v2-large"
TINY_SEED = 1234


def lang_token(code: str) -> str:
    return f"__{code}__"


class SeamlessM4Tv2Adapter(Adapter):
    device_features = True
    def __init__(self, checkpoint: str, options: dict, device: str = "auto", dtype: str = "float32",
                 features: str = "cpu"):
        from transformers import SeamlessM4TFeatureExtractor, SeamlessM4Tv2Model

        self.device = pick_device(device)
        self.checkpoint = checkpoint
        try:
            model = SeamlessM4Tv2Model.from_pretrained(checkpoint, dtype=DTYPES[dtype], **PRETRAINED)
            self.features = SeamlessM4TFeatureExtractor.from_pretrained(checkpoint)
        except OSError as exc:
            raise load_error("SeamlessM4T v2", checkpoint, exc) from None
        self.tokenizer = load_tokenizer(checkpoint)
        # Only the two encoders are analysed; the decoders, text-to-unit model and vocoder are dropped.
        self.text_encoder = model.text_encoder.to(self.device).eval()
        self.speech_encoder = model.speech_encoder.to(self.device).eval()
        self.dtype = DTYPES[dtype]
        self.lang_ids = _lang_tokens(self.tokenizer)
        self.fbank = KaldiFbank() if features == "device" else None
        del model

    # ------------------------------------------------------------------ spec

    @classmethod
    def resolve(cls, checkpoint: str, cache: Path) -> str:
        if checkpoint != "tiny":
            return checkpoint
        return str(cached(cache / "tiny-seamless_m4t_v2", build_tiny))

    @classmethod
    def spec(cls, checkpoint: str, options: dict) -> ModelSpec:
        from transformers import AutoConfig

        try:
            cfg = AutoConfig.from_pretrained(checkpoint)
        except OSError as exc:
            raise load_error("the SeamlessM4T v2 config", checkpoint, exc) from None
        tokenizer = load_tokenizer(checkpoint)
        if cfg.model_type != "seamless_m4t_v2":
            raise ModelError(f"{checkpoint}: model_type is {cfg.model_type!r}, not seamless_m4t_v2")
        width, n_text, n_speech = cfg.hidden_size, cfg.encoder_layers, cfg.speech_encoder_layers
        text = stack(width, n_text)
        speech = stack(width, n_speech, first_width=cfg.feature_projection_input_dim)
        if cfg.add_adapter:
            speech.append(Point("len", width, n_speech + 1.0, "adaptor"))
        pairs = same_name_pairs(text, speech)
        if cfg.add_adapter:
            pairs.append(("len", "out", "len"))
        return ModelSpec(
            checkpoint=checkpoint,
            points={"text": tuple(text), "speech": tuple(speech)},
            pairs=tuple(pairs),
            languages={"text": frozenset(_lang_tokens(tokenizer)), "speech": None},
        )

    @classmethod
    def text_tokenizer(cls, checkpoint: str, options: dict):
        tokenizer = load_tokenizer(checkpoint)  # the language token is a prefix only: the pieces do not depend on it
        return lambda text: list(tokenizer(text, add_special_tokens=False)["input_ids"])

    # ------------------------------------------------------------------ forward

    def featurize(self, modality: str, iso: str, inputs: list) -> dict:
        if modality == "speech" and self.fbank is not None:  # computed on the device by `forward`
            waves, lengths = pad_waves(inputs)
            return {"waves": waves, "lengths": lengths}
        if modality == "speech":
            feats = self.features(inputs, sampling_rate=16_000, padding=True, return_tensors="pt")
            return {"input_features": feats["input_features"], "attention_mask": feats["attention_mask"]}
        from ... import languages as langs

        code = langs.get(iso).seamless
        if code not in self.lang_ids:
            raise ModelError(f"{self.checkpoint}: the tokenizer has no language token {lang_token(code)} for {iso}")
        self.tokenizer.src_lang = code
        enc = self.tokenizer(inputs, padding=True, return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    @torch.inference_mode()
    def forward(self, modality: str, iso: str, features: dict, points: tuple[str, ...]) -> dict[str, torch.Tensor]:
        if modality == "text":
            return self._text(features, points)
        return self._speech(features, points)

    def _text(self, enc: dict, points: tuple[str, ...]) -> dict[str, torch.Tensor]:
        ids, mask = on(self.device, enc["input_ids"]), on(self.device, enc["attention_mask"])
        rec = Recorder()
        rec.layers(self.text_encoder.layers)
        try:
            out = self.text_encoder(input_ids=ids, attention_mask=mask)
        finally:
            rec.remove()
        rec.values["out"] = out.last_hidden_state
        return {p: masked_mean(rec.values[p], mask) for p in points}

    def _speech(self, feats: dict, points: tuple[str, ...]) -> dict[str, torch.Tensor]:
        if "waves" in feats:
            feats = self.fbank.seamless(on(self.device, feats["waves"]), on(self.device, feats["lengths"]),
                                        stride=self.features.stride)
        x = on(self.device, feats["input_features"], self.dtype)
        mask = on(self.device, feats["attention_mask"])
        enc = self.speech_encoder
        rec = Recorder()
        rec.layers(enc.encoder.layers, first_input=False)
        rec.output(enc.encoder, "out")
        lengths = mask.sum(dim=1)
        masks = {"in": mask}
        handles = []
        if enc.adapter is not None:
            for layer in enc.adapter.layers:
                for norm in (layer.residual_layer_norm, layer.self_attn_layer_norm):  # what the strided convs see
                    handles.append(norm.register_forward_hook(_zero_padding(lengths)))
                lengths = _subsampled(layer, lengths)
        try:
            out = enc(input_features=x, attention_mask=mask)
        finally:
            rec.remove()
            for h in handles:
                h.remove()
        values = dict(rec.values, **{"in": x, "len": out.last_hidden_state})
        if enc.adapter is not None:
            t = out.last_hidden_state.shape[1]
            masks["len"] = (torch.arange(t, device=self.device)[None, :] < lengths[:, None]).long()
        return {p: masked_mean(values[p], masks.get(p, mask)) for p in points}


def _subsampled(layer, lengths: torch.Tensor) -> torch.Tensor:
    """Valid frames after one adaptor layer, as transformers computes them."""
    pad = layer.kernel_size // 2
    return torch.div(lengths + 2 * pad - layer.kernel_size, layer.stride, rounding_mode="floor") + 1


def _zero_padding(lengths: torch.Tensor):
    """A LayerNorm hook that zeroes its output at padded frames: the adaptor's strided convolutions then see
    what a lone clip's zero padding gives them (a LayerNorm maps zeros to its bias, not to zeros)."""
    def hook(_mod, _args, out):
        valid = torch.arange(out.shape[1], device=out.device)[None, :] < lengths[:, None]
        return out.masked_fill(~valid[..., None], 0.0)

    return hook


def load_tokenizer(checkpoint: str):
    """The checkpoint's text tokenizer (NLLB's SentencePiece model with the language tokens)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(checkpoint)
    except OSError as exc:
        raise load_error("the SeamlessM4T v2 tokenizer", checkpoint, exc) from None


def _lang_tokens(tokenizer) -> set[str]:
    vocab = tokenizer.get_vocab()
    return {tok[2:-2] for tok in vocab if tok.startswith("__") and tok.endswith("__") and len(tok) > 4}


# ---------------------------------------------------------------------- tiny random model


def build_tiny(path: Path, languages: tuple[str, ...] | None = None, seed: int = TINY_SEED,
               hidden: int = 64, layers: int = 4, heads: int = 4, ffn: int | None = None,
               text_ffn: int | None = None) -> Path:
    """Write a small random SeamlessM4T v2 checkpoint (config, weights, tokenizer, feature extractor) to `path`.

    It loads through the same `from_pretrained` code as the real model. The tokenizer is character-level over
    the demo corpus, with a language token for each of `languages` (default: all 36). `ffn` (speech encoder)
    and `text_ffn` default to twice `hidden`; the real encoders are hidden 1024, 24 layers, 16 heads, ffn 4096
    and text_ffn 8192 (bench/extract_speed.py --gpu times that size).
    """
    from transformers import (SeamlessM4TFeatureExtractor, SeamlessM4TTokenizer, SeamlessM4Tv2Config,
                              SeamlessM4Tv2Model)

    from ... import languages as langs
    from ...data.demo import corpus

    codes = [langs.get(iso).seamless for iso in (languages or langs.STUDY)]
    chars = sorted({ch for lines in corpus().values() for line in lines for ch in line if not ch.isspace()})
    vocab = {"<pad>": 0, "<unk>": 1, "<s>": 2, "</s>": 3}
    for token in ["▁"] + chars + [lang_token(c) for c in codes]:
        vocab.setdefault(token, len(vocab))
    tokenizer = SeamlessM4TTokenizer(vocab=vocab, merges=[], src_lang=codes[0], tgt_lang=codes[0],
                                     additional_special_tokens=[lang_token(c) for c in codes])
    ffn = ffn or 2 * hidden
    text_ffn = text_ffn or 2 * hidden
    cfg = SeamlessM4Tv2Config(
        vocab_size=len(vocab), t2u_vocab_size=32, char_vocab_size=32, hidden_size=hidden,
        encoder_layers=layers, decoder_layers=1, encoder_ffn_dim=text_ffn, decoder_ffn_dim=2 * hidden,
        encoder_attention_heads=heads, decoder_attention_heads=heads,
        speech_encoder_layers=layers, speech_encoder_attention_heads=heads, speech_encoder_intermediate_size=ffn,
        t2u_encoder_layers=1, t2u_decoder_layers=1, t2u_encoder_ffn_dim=32, t2u_decoder_ffn_dim=32,
        t2u_encoder_attention_heads=2, t2u_decoder_attention_heads=2, unit_embed_dim=16,
        upsample_initial_channel=16, upsample_rates=[2, 2], upsample_kernel_sizes=[4, 4],
        resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]], variance_predictor_kernel_size=3,
        lang_embed_dim=4, spkr_embed_dim=4, vocoder_num_langs=2, vocoder_num_spkrs=2,
        unit_hifi_gan_vocab_size=20, max_position_embeddings=1024, t2u_max_position_embeddings=64,
        conv_depthwise_kernel_size=7, pad_token_id=0, bos_token_id=2, eos_token_id=3,
    )
    model = randomise(SeamlessM4Tv2Model(cfg), torch.Generator().manual_seed(seed))
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    SeamlessM4TFeatureExtractor().save_pretrained(path)
    write_marker(path, "SeamlessM4T v2", seed=seed, hidden=hidden, layers=layers, languages=codes)
    return path
