"""Reference outputs of the OFFICIAL SONAR encoders (fairseq2 0.5.2 + sonar-space 0.5.0), tiny random models.

Writes one ``torch.save`` file (default ``tests/data/sonar_reference.pt``) that a port of SONAR onto
``transformers`` can be tested against without fairseq2.  Regenerate, from the repository root, with::

    bash tests/sonar_reference/setup.sh                 # once: creates .venv-sonar-ref (torch 2.8.0 pinned)
    .venv-sonar-ref/bin/python tests/sonar_reference/make_reference.py tests/data/sonar_reference.pt

Everything is seeded and runs on CPU with one thread; rerunning gives the same file contents.

What is built and recorded (all float tensors float32; load with ``torch.load(path, weights_only=True)``):

* ``text``: ``SonarTextEncoderFactory`` on the registered arch ``basic``, shrunk (model_dim 32, 2 layers, 4 heads,
  FFN 64, vocab 64, ``max_seq_len`` 512 -> 514 by the factory's ``_from_fairseq`` rule).  Tokens are fairseq2 ids
  (pad=0, unk=1, bos=2, eos=3): ``[lang tag (60..63), random ids in 4..59, eos=3]``, right-padded with 0 by
  fairseq2's ``Collater`` as ``TextToEmbeddingModelPipeline.predict`` does.  ``states`` = [frontend output
  (embedding * sqrt(d) + sinusoid; pad rows carry no position), raw output of layer 1..L (encoder layer hook),
  model-level final LayerNorm output (``encoded_seqs``)].  ``pooled`` = ``sentence_embeddings`` (mean over
  non-pad tokens after the final LN); ``pooled_single`` = each sequence run alone.
* ``speech_3`` / ``speech_6``: ``SonarSpeechEncoderFactory`` on the registered archs ``english`` (3 pooler layers)
  and ``non_english`` (6), with their w2v-BERT ``Wav2Vec2EncoderConfig`` shrunk (model_dim 32, 2 conformer
  layers, 4 heads, FFN 64; depthwise kernel 31, 80 mel bins stacked by 2 -> 160 kept).  Three synthetic
  16 kHz waveforms (0.81 s, 1.23 s, 0.5 s -> 79, 121, 48 fbank frames; two odd) go through the pipeline's own
  objects: ``WaveformToFbankConverter(num_mel_bins=80, waveform_scale=2**15, channel_last=True,
  standardize=True)`` then ``Collater(pad_value=0, pad_to_multiple=2)`` (``SpeechToEmbeddingModelPipeline``).
  ``fbank`` [B,T,80] is that collated batch (T padded to a multiple of 2).  ``states`` = [frontend output
  (stack 2 frames -> LayerNorm(160) -> Linear(160->D)), raw output of conformer block 1..L (layer hook),
  model-level final LayerNorm output (``encoded_seqs``)]; ``state_lens`` = lengths after stacking.
  ``pooled`` = ``sentence_embeddings`` of the batch, asserted equal to ``SpeechToEmbeddingModelPipeline.predict``;
  ``pooled_single`` = ``predict(batch_size=1)`` per waveform (the official single path: the one waveform is
  still padded to an even frame count).
* State dicts: ``text.state_dict`` is the fairseq2 dict as ``sonar_text_encoder.pt["model"]`` holds it.
  ``speech_*.state_dict_fairseq2`` is ``model.state_dict()`` (incl. BatchNorm ``num_batches_tracked``);
  ``speech_*.state_dict_fairseq1`` uses the names of the real ``spenc.*.pt`` files.  It is made by inverting the
  key map of sonar-space's own ``_convert_sonar_speech_checkpoint`` (captured at run time, not copied) and is
  proven: the official converter, fed ``{"model": fairseq1 dict}``, returns exactly the fairseq2 dict (same keys,
  equal tensors) and that loads strictly into a fresh model giving the same outputs.  It also carries the keys
  the converter discards, as placeholders with fairseq1-like shapes: ``encoder.w2v_model.mask_emb`` [D],
  ``encoder.w2v_model.encoder.pos_conv.0.{bias,weight_g,weight_v}`` (weight-normed Conv1d(D, D, 128, groups=16)),
  ``decoder.version`` (tensor([3.])) and ``decoder.embed_positions._float_tensor`` (tensor([1.])).  A top-level
  ``version`` key is NOT included: the converter keeps unknown keys, so it would not round-trip.

Every parameter and buffer that is loaded from a checkpoint is perturbed (LayerNorm/BatchNorm weights ~1+0.2N,
biases incl. u/v ~ +0.1N, other weights + 0.05N, running_mean 0.2N, running_var U(0.5,1.5)); eval() mode.

Compare ``states`` on valid positions only (``seq_lens`` / ``state_lens``): pad positions hold whatever the
official code leaves there.  Measured here: batched vs single pooled differ by <=1.2e-6; transformers 4.57.6
``SeamlessM4TFeatureExtractor`` on these waveforms matches the stacked official fbank to <=2.7e-4 (worst in mel
bins 1-2, which hold little energy in these signals), so a port test should feed ``fbank`` to the model rather
than recompute it, or use a loose tolerance for the features.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata as md
import math
import re
import sys

import torch
from fairseq2.data.audio import WaveformToFbankConverter
from fairseq2.data.data_pipeline import Collater, read_sequence
from fairseq2.models.utils.checkpoint import convert_state_dict
from fairseq2.runtime.config_registry import get_config
from fairseq2.runtime.dependency import get_dependency_resolver

import sonar.models.sonar_speech.checkpoint as speech_ckpt
from sonar.inference_pipelines.speech import SpeechToEmbeddingModelPipeline
from sonar.inference_pipelines.utils import extract_sequence_batch
from sonar.models.sonar_speech import SonarSpeechEncoderConfig, SonarSpeechEncoderFactory
from sonar.models.sonar_text import (
    SonarTextEncoderConfig,
    SonarTextEncoderFactory,
    _convert_sonar_text_encoder_checkpoint,
)

SEED = 1234
SR = 16000
DIM, LAYERS, HEADS, FFN = 32, 2, 4, 64
TEXT_VOCAB = 64
PAD_TO_MULTIPLE = 2  # what SpeechToEmbeddingModelPipeline's Collater uses


# ----------------------------------------------------------------------------------------------- helpers
def perturb_(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Move every checkpointed float tensor away from its init value (deterministically)."""
    with torch.no_grad():
        for name, t in model.state_dict(keep_vars=True).items():
            if not t.is_floating_point():
                continue  # BatchNorm num_batches_tracked
            noise = torch.randn(t.shape, generator=gen)
            if name.endswith("running_mean"):
                t.copy_(0.2 * noise)
            elif name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=gen))
            elif ("layer_norm" in name or "batch_norm" in name) and name.endswith(".weight"):
                t.copy_(1.0 + 0.2 * noise)
            elif name.endswith("bias"):  # .bias, sdpa.u_bias, sdpa.v_bias
                t.add_(0.1 * noise)
            else:
                t.add_(0.05 * noise)


def layer_recorder(store: list):
    def hook(layer_idx, layer_output, layer_output_layout, num_layers) -> bool:
        store.append(layer_output.detach().clone())
        return True

    return hook


def frontend_recorder(store: list):
    def hook(module, args, output):
        store.append(output[0].detach().clone())

    return hook


def run_with_states(model, seqs, layout):
    """Official forward; returns (output, [frontend out, layer 1..L raw, final LN])."""
    front, layers = [], []
    h1 = model.encoder_frontend.register_forward_hook(frontend_recorder(front))
    h2 = model.encoder.register_layer_hook(layer_recorder(layers))
    try:
        with torch.inference_mode():
            out = model(seqs, layout)
    finally:
        h1.remove()
        h2.remove()
    assert len(front) == 1 and len(layers) == len(model.encoder.layers)
    # cloned outside inference mode -> ordinary tensors
    return out, [t.clone() for t in front + layers + [out.encoded_seqs]]


def clone_sd(sd) -> dict:
    return {k: v.detach().clone().contiguous() for k, v in sd.items()}


def assert_same_sd(a: dict, b: dict, what: str) -> None:
    assert set(a) == set(b), f"{what}: keys differ: {sorted(set(a) ^ set(b))}"
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and torch.equal(a[k], b[k]), f"{what}: {k}"


# ----------------------------------------------------------------------------------------------- text
def make_text(resolver, gen) -> dict:
    cfg = get_config(resolver, SonarTextEncoderConfig, "basic")
    cfg = dataclasses.replace(
        cfg,
        model_dim=DIM,
        num_encoder_layers=LAYERS,
        num_decoder_layers=LAYERS,
        num_encoder_attn_heads=HEADS,
        num_decoder_attn_heads=HEADS,
        ffn_inner_dim=FFN,
        vocab_info=dataclasses.replace(cfg.vocab_info, size=TEXT_VOCAB),
    )
    factory = SonarTextEncoderFactory(cfg)  # applies max_seq_len += pad_idx + 1 (512 -> 514)
    model = factory.create_model().eval()
    perturb_(model, gen)
    model.eval()

    # fairseq2 ids: [lang tag] + pieces + [</s>]; pad 0 (tokenizer vocab_info.pad_idx used by the pipeline Collater)
    lens = [9, 14, 5, 11]
    tags = [60, 61, 62, 63]
    seq_list = []
    for n, tag in zip(lens, tags):
        body = torch.randint(4, 60, (n - 2,), generator=gen)
        seq_list.append(torch.cat([torch.tensor([tag]), body, torch.tensor([3])]).long())
    batch = Collater(pad_value=0)(seq_list)
    seqs, layout = extract_sequence_batch(batch, torch.device("cpu"))
    out, states = run_with_states(model, seqs, layout)

    singles = []
    for s in seq_list:
        b1 = Collater(pad_value=0)([s])
        with torch.inference_mode():
            singles.append(model(*extract_sequence_batch(b1, torch.device("cpu"))).sentence_embeddings[0].clone())

    sd = clone_sd(model.state_dict())
    # The official loader returns a fairseq2-format dict unchanged; prove it loads strictly and reproduces outputs.
    conv = _convert_sonar_text_encoder_checkpoint({"model": dict(sd)}, cfg)
    assert_same_sd(clone_sd(conv), sd, "text converter")
    fresh = SonarTextEncoderFactory(dataclasses.replace(cfg, max_seq_len=512)).create_model().eval()
    fresh.load_state_dict(sd, strict=True)
    with torch.inference_mode():
        assert torch.equal(fresh(seqs, layout).sentence_embeddings, out.sentence_embeddings)

    # Check of the notes' sinusoid claim: [sin | cos] halves, freq exp(-i ln(1e4)/(half-1)), token i at step i+2.
    half = DIM // 2
    freq = torch.exp(torch.arange(half, dtype=torch.float32) * -math.log(10000.0) / (half - 1))
    steps = torch.arange(seqs.shape[1], dtype=torch.float32) + 2
    ang = torch.outer(steps, freq)
    sinus = torch.cat([ang.sin(), ang.cos()], dim=-1)
    emb = model.encoder_frontend.embed.weight.detach()[seqs] * math.sqrt(DIM)
    valid = torch.arange(seqs.shape[1])[None, :] < torch.tensor(lens)[:, None]
    sin_err = (states[0] - emb - sinus)[valid].abs().max().item()
    print(f"text: frontend == emb*sqrt(d) + [sin|cos](step i+2): max|diff| {sin_err:.2e}")
    assert sin_err < 1e-5

    return {
        "config": {
            "model_dim": DIM,
            "num_layers": LAYERS,
            "num_heads": HEADS,
            "ffn_dim": FFN,
            "vocab_size": TEXT_VOCAB,
            "max_seq_len": factory.config.max_seq_len,  # 514: size of the sinusoid table (positions 2..515)
            "pad_idx_model": cfg.vocab_info.pad_idx,  # 1: SinusoidalPositionEncoder(_legacy_pad_idx=1)
            "pad_idx_tokens": 0,  # fairseq2 tokenizer pad id used in `tokens`
            "unk_idx": 1,
            "bos_idx": 2,
            "eos_idx": 3,
            "layer_norm_eps": 1e-5,  # (float)
        },
        "state_dict": sd,
        "tokens": seqs.clone(),
        "seq_lens": torch.tensor(lens, dtype=torch.long),
        "states": states,
        "pooled": out.sentence_embeddings.clone(),
        "pooled_single": torch.stack(singles),
    }


# ----------------------------------------------------------------------------------------------- speech
def synth_waveforms(gen) -> list[torch.Tensor]:
    """Deterministic, non-silent 16 kHz signals: chirp + harmonics + AM + seeded noise, peak about 0.3."""
    waves = []
    for i, dur in enumerate([0.81, 1.23, 0.5]):
        n = int(round(dur * SR))
        t = torch.arange(n, dtype=torch.float64) / SR
        f0, f1 = 150.0 + 60 * i, 900.0 + 300 * i
        phase = 2 * math.pi * (f0 * t + 0.5 * (f1 - f0) / dur * t**2)  # linear chirp
        x = torch.sin(phase) + 0.5 * torch.sin(2 * phase + 0.3) + 0.25 * torch.sin(3 * phase + 1.1)
        x = x * (0.6 + 0.4 * torch.sin(2 * math.pi * (3 + i) * t))
        x = x + 0.3 * torch.sin(2 * math.pi * (2500 + 400 * i) * t) * torch.exp(-3 * t)
        x = x + 0.05 * torch.randn(n, generator=gen, dtype=torch.float64)
        waves.append((0.3 * x / x.abs().max()).float())
    return waves


def capture_speech_key_map(config) -> dict[str, str]:
    """The key map of sonar-space's own fairseq1 -> fairseq2 converter, captured by running it once."""
    captured = {}
    real = speech_ckpt.convert_fairseq_state_dict

    def spy(state_dict, key_map):
        captured.update(key_map)
        return real(state_dict, key_map)

    speech_ckpt.convert_fairseq_state_dict = spy
    try:
        speech_ckpt._convert_sonar_speech_checkpoint({"model": {"dummy": torch.zeros(1)}}, config)
    finally:
        speech_ckpt.convert_fairseq_state_dict = real
    return captured


def invert_key_map(fs2_keys, key_map: dict[str, str]) -> dict[str, str]:
    """fairseq2 key -> fairseq1 key, such that the forward map (first matching pattern wins) gives it back."""
    rules = []
    for pattern, repl in key_map.items():
        groups = re.findall(r"\((?!\?)[^)]*\)", pattern)  # capture groups, in order
        # reverse regex: the replacement with \N turned into the N-th group of the pattern
        rev = "^" + re.escape(repl)
        for n, g in enumerate(groups, 1):
            rev = rev.replace(re.escape(f"\\{n}"), g)
        # reverse replacement: the pattern with its groups turned into \N, regex escapes removed
        fwd = pattern.lstrip("^")
        for n, g in enumerate(groups, 1):
            fwd = fwd.replace(g, f"\\{n}", 1)
        fwd = fwd.replace("\\.", ".")
        rules.append((rev, fwd))

    out = {}
    for k in fs2_keys:
        found = None
        for rev, fwd in rules:
            if re.match(rev, k):
                cand = re.sub(rev, fwd, k, count=1)
                if convert_state_dict({cand: 0}, key_map) == {k: 0}:
                    found = cand
                    break
        assert found is not None, f"no fairseq1 name for {k}"
        out[k] = found
    return out


def make_speech(resolver, gen, arch: str, waves: list[torch.Tensor]) -> dict:
    cfg = get_config(resolver, SonarSpeechEncoderConfig, arch)
    enc = dataclasses.replace(
        cfg.w2v2_encoder_config, model_dim=DIM, num_encoder_layers=LAYERS, num_encoder_attn_heads=HEADS,
        ffn_inner_dim=FFN,
    )
    cfg = dataclasses.replace(cfg, w2v2_encoder_config=enc, model_dim=DIM, num_decoder_attn_heads=HEADS,
                              ffn_inner_dim=FFN)
    model = SonarSpeechEncoderFactory(cfg).create_model().eval()
    perturb_(model, gen)
    model.eval()

    pipe = SpeechToEmbeddingModelPipeline(encoder=model)
    # Same stages as SpeechToEmbeddingModelPipeline.build_predict_pipeline, stopping before the model.
    fbank_pipe = (
        read_sequence([w.unsqueeze(0) for w in waves])
        .map(pipe._decode_audio)
        .map(pipe.convert_to_fbank)
        .bucket(bucket_size=len(waves))
        .map(Collater(pad_value=0, pad_to_multiple=PAD_TO_MULTIPLE))
        .and_return()
    )
    data = list(iter(fbank_pipe))
    assert len(data) == 1
    fb = data[0]["fbank"]
    seqs, layout = extract_sequence_batch(fb, torch.device("cpu"))
    fbank_lens = torch.as_tensor(fb["seq_lens"]).long()

    out, states = run_with_states(model, seqs, layout)
    pooled = out.sentence_embeddings.clone()
    pooled_pred = pipe.predict([w.unsqueeze(0) for w in waves], batch_size=len(waves))
    assert torch.equal(pooled_pred, pooled), "manual pipeline != SpeechToEmbeddingModelPipeline.predict"
    pooled_single = pipe.predict([w.unsqueeze(0) for w in waves], batch_size=1)
    print(f"{arch}: fbank lens {fbank_lens.tolist()} -> state lens {list(out.encoded_seqs_layout.seq_lens)}; "
          f"batched vs single pooled max|diff| {(pooled - pooled_single).abs().max().item():.2e}")

    # ---- state dicts: fairseq2 native, and fairseq1 via the inverted official converter
    sd2 = clone_sd(model.state_dict())
    key_map = capture_speech_key_map(cfg)
    names = invert_key_map(sd2.keys(), key_map)
    sd1 = {names[k]: v.clone() for k, v in sd2.items()}
    g = torch.Generator().manual_seed(SEED + 7)
    dropped = {  # present in the real fairseq1 files, discarded by the converter (placeholder values)
        "encoder.w2v_model.mask_emb": torch.rand(DIM, generator=g),
        "encoder.w2v_model.encoder.pos_conv.0.bias": 0.1 * torch.randn(DIM, generator=g),
        "encoder.w2v_model.encoder.pos_conv.0.weight_g": torch.rand(1, 1, 128, generator=g),
        "encoder.w2v_model.encoder.pos_conv.0.weight_v": 0.1 * torch.randn(DIM, DIM // 16, 128, generator=g),
        "decoder.version": torch.tensor([3.0]),
        "decoder.embed_positions._float_tensor": torch.tensor([1.0]),
    }
    sd1.update(dropped)

    # PROOF: official converter(fairseq1) == fairseq2, and it loads strictly into a fresh official model.
    conv = speech_ckpt._convert_sonar_speech_checkpoint({"model": clone_sd(sd1)}, cfg)
    assert_same_sd(clone_sd(conv), sd2, f"{arch} fairseq1 -> fairseq2")
    fresh = SonarSpeechEncoderFactory(cfg).create_model().eval()
    fresh.load_state_dict(conv, strict=True)
    with torch.inference_mode():
        assert torch.equal(fresh(seqs, layout).sentence_embeddings, pooled)
    print(f"{arch}: official converter reproduces all {len(sd2)} fairseq2 tensors from {len(sd1)} fairseq1 keys "
          f"(dropped: {sorted(dropped)})")

    return {
        "config": {
            "model_dim": DIM,
            "num_layers": LAYERS,
            "num_heads": HEADS,
            "ffn_dim": FFN,
            "pooler_layers": cfg.num_decoder_layers,
            "pooler_heads": cfg.num_decoder_attn_heads,
            "pooler_ffn_dim": cfg.ffn_inner_dim,
            "pooler_bos_idx": cfg.bos_idx,  # embedding row used as the pooling query
            "pooler_num_embeddings": enc.model_dim,  # = w2v model_dim (1024 in the real models)
            "pooler_max_seq_len": cfg.max_seq_len,
            "kernel_size": enc.depthwise_conv_kernel_size,
            "num_mel_bins": enc.num_fbank_channels,
            "fbank_stride": enc.fbank_stride,
            "feature_dim": enc.feature_dim,
            "max_seq_len": enc.max_seq_len,
            "sample_rate": SR,
        },
        "state_dict_fairseq2": sd2,
        "state_dict_fairseq1": sd1,
        "waveforms": [w.clone() for w in waves],
        "fbank": seqs.clone(),
        "fbank_lens": fbank_lens,
        "pad_to_multiple": PAD_TO_MULTIPLE,
        "states": states,
        "state_lens": torch.as_tensor(list(out.encoded_seqs_layout.seq_lens)).long(),
        "pooled": pooled,
        "pooled_single": pooled_single.clone(),
    }


def check_plain(obj, path="ref") -> None:
    """Only dict/list/str/int/float and (float32 or int64) tensors, so weights_only=True loading works anywhere."""
    if isinstance(obj, dict):
        assert type(obj) is dict, path
        for k, v in obj.items():
            assert type(k) is str, path
            check_plain(v, f"{path}[{k!r}]")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            check_plain(v, f"{path}[{i}]")
    elif isinstance(obj, torch.Tensor):
        assert type(obj) is torch.Tensor and not obj.is_inference(), path
        assert obj.dtype in (torch.float32, torch.int64), f"{path}: {obj.dtype}"
    else:
        assert type(obj) in (str, int, float), f"{path}: {type(obj)}"


# ----------------------------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", default="tests/data/sonar_reference.pt")
    args = ap.parse_args()

    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    resolver = get_dependency_resolver()

    ref = {
        "versions": {
            "torch": str(torch.__version__),
            "fairseq2": md.version("fairseq2"),
            "fairseq2n": md.version("fairseq2n"),
            "sonar": md.version("sonar-space"),
        },
        "text": make_text(resolver, torch.Generator().manual_seed(SEED)),
    }
    waves = synth_waveforms(torch.Generator().manual_seed(SEED + 1))
    ref["speech_3"] = make_speech(resolver, torch.Generator().manual_seed(SEED + 3), "english", waves)
    ref["speech_6"] = make_speech(resolver, torch.Generator().manual_seed(SEED + 6), "non_english", waves)
    assert torch.equal(ref["speech_3"]["fbank"], ref["speech_6"]["fbank"])
    # fbank is deterministic (no dither applied): recompute once and compare
    again = WaveformToFbankConverter(num_mel_bins=80, waveform_scale=2**15, channel_last=True, standardize=True)(
        {"waveform": waves[0].unsqueeze(1), "sample_rate": float(SR)})["fbank"]
    n0 = int(ref["speech_3"]["fbank_lens"][0])
    assert torch.equal(again, ref["speech_3"]["fbank"][0, :n0])

    check_plain(ref)
    torch.save(ref, args.out)
    back = torch.load(args.out, weights_only=True)
    assert set(back) == set(ref)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
