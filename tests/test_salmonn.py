"""SALMONN port: a tiny random SALMONN in the official file formats, real sequence lengths (3000 mel frames, 1500
Whisper frames, 88 windows of 17 frames), and every step re-computed directly from the notes
(the researched notes on SALMONN) out of the official tensors, not through the port's modules."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from crossrep.errors import ConfigError, ModelError
from crossrep.models.salmonn import Salmonn, SalmonnAdapter, build_tiny
from crossrep.models.salmonn.beats import kaldi_fbank, load_beats

pytestmark = pytest.mark.model

SR = 16_000
LORA = "llama_model.base_model.model.model.layers.{}.self_attn.{}.lora_{}.default.weight"
TEXTS = ["the dog ran home today", "wir sind letztes wochenende mit dem zug gefahren", "ព្រះអាទិត្យរះឆាប់"]


def rel(a, b) -> float:
    a, b = (np.asarray(t.detach() if torch.is_tensor(t) else t, dtype=np.float64) for t in (a, b))
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


@pytest.fixture(scope="module")
def paths(tmp_path_factory) -> dict:
    return SalmonnAdapter.resolve("tiny", tmp_path_factory.mktemp("salmonn"))


@pytest.fixture(scope="module")
def model(paths) -> Salmonn:
    torch.manual_seed(0)
    return Salmonn.from_checkpoints(**paths)


@pytest.fixture(scope="module")
def official(paths) -> dict:
    return torch.load(paths["salmonn"], weights_only=True)["model"]


@pytest.fixture(scope="module")
def llm_weights(paths) -> dict:
    from safetensors.torch import load_file

    return load_file(str(Path(paths["llm"]) / "model.safetensors"))


@pytest.fixture(scope="module")
def sp(paths):
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_file=str(Path(paths["llm"]) / "tokenizer.model"))


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    """30 s, 7.3 s and 0.6 s of tones in noise (int16-like amplitudes)."""
    rng = np.random.default_rng(0)
    out = []
    for seconds in (30.0, 7.3, 0.6):
        t = np.arange(int(seconds * SR)) / SR
        wave = 0.3 * np.sin(2 * np.pi * 220 * t * (1 + 0.3 * np.sin(t))) + 0.05 * rng.standard_normal(t.size)
        out.append(np.round(wave * 2 ** 15) / 2 ** 15)
    return [w.astype(np.float32) for w in out]


@pytest.fixture(scope="module")
def states(model, clips):
    return model.states(clips, TEXTS)


# ---------------------------------------------------------------------- direct computations from the notes


def layer_norm(x, sd, name, eps=1e-5):
    return F.layer_norm(x, x.shape[-1:], sd[name + ".weight"], sd[name + ".bias"], eps=eps)


def linear(x, sd, name):
    return x @ sd[name + ".weight"].T + sd[name + ".bias"]


def qformer_direct(sd: dict, windows: torch.Tensor) -> torch.Tensor:
    """BERT Q-Former with one query, cross-attention every layer, query FFN; official tensor names."""
    p = "speech_Qformer.bert."
    h = sd["speech_query_tokens"].expand(windows.shape[0], 1, -1)
    width = h.shape[-1]
    heads = width // 64
    h = layer_norm(h, sd, p + "embeddings.LayerNorm", eps=1e-12)

    def attention(x, kv, name):
        def split(t):
            return t.view(t.shape[0], t.shape[1], heads, -1).transpose(1, 2)

        q, k, v = (split(linear(src, sd, f"{name}.self.{w}")) for src, w in ((x, "query"), (kv, "key"), (kv, "value")))
        ctx = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(width // heads), dim=-1) @ v
        ctx = ctx.transpose(1, 2).reshape(x.shape)
        return layer_norm(linear(ctx, sd, f"{name}.output.dense") + x, sd, f"{name}.output.LayerNorm", eps=1e-12)

    for i in range(2):
        layer = f"{p}encoder.layer.{i}."
        h = attention(h, h, layer + "attention")
        h = attention(h, windows, layer + "crossattention")
        ffn = linear(F.gelu(linear(h, sd, layer + "intermediate_query.dense")), sd, layer + "output_query.dense")
        h = layer_norm(ffn + h, sd, layer + "output_query.LayerNorm", eps=1e-12)
    return h[:, 0]


def fbank_numpy(samples: np.ndarray) -> np.ndarray:
    """Kaldi log-mel filterbank (128 bins, 25/10 ms, Povey window, pre-emphasis 0.97), frame by frame."""
    size, shift, nfft = 400, 160, 512
    frames = 1 + (len(samples) - size) // shift
    n = np.arange(size)
    window = (0.5 - 0.5 * np.cos(2 * np.pi * n / (size - 1))) ** 0.85

    def mel(f):
        return 1127.0 * np.log(1 + f / 700.0)

    low, high = mel(20.0), mel(8000.0)
    delta = (high - low) / 129
    bins_mel = mel(np.arange(256) * SR / nfft)
    banks = np.zeros((128, 257))
    for b in range(128):
        left, center, right = low + b * delta, low + (b + 1) * delta, low + (b + 2) * delta
        banks[b, :256] = np.maximum(0, np.minimum((bins_mel - left) / (center - left),
                                                  (right - bins_mel) / (right - center)))
    out = np.empty((frames, 128))
    for i in range(frames):
        frame = samples[i * shift: i * shift + size].astype(np.float64)
        frame = frame - frame.mean()
        frame = frame - 0.97 * np.concatenate([frame[:1], frame[:-1]])
        power = np.abs(np.fft.rfft(frame * window, nfft)) ** 2
        out[i] = np.log(np.maximum(banks @ power, np.finfo(np.float32).eps))
    return out


def beats_direct(pt: dict, wave: np.ndarray) -> torch.Tensor:
    """BEATs written out from its description: fbank, 16x16 patches time-major, post-LN deep-norm layers with
    q scaled by head_dim^-0.5 / 32, scores shifted by their max and scaled by 32, a gated bucketed bias."""
    cfg, sd = pt["cfg"], pt["model"]
    fbank = (fbank_numpy(wave.astype(np.float64) * 2 ** 15) - 15.41663) / (2 * 6.55582)
    patch = cfg["input_patch_size"]
    grid = F.conv2d(torch.from_numpy(fbank).float()[None, None], sd["patch_embedding.weight"], stride=patch)[0]
    tokens = torch.stack([grid[:, t, f] for t in range(grid.shape[1]) for f in range(grid.shape[2])])
    x = linear(layer_norm(tokens, sd, "layer_norm"), sd, "post_extract_proj")
    n, width = x.shape
    v, g = sd["encoder.pos_conv.0.weight_v"], sd["encoder.pos_conv.0.weight_g"]
    kernel = cfg["conv_pos"]
    conv = F.conv1d(x.T[None], g * v / v.norm(dim=(0, 1), keepdim=True), sd["encoder.pos_conv.0.bias"],
                    padding=kernel // 2, groups=cfg["conv_pos_groups"])[0, :, :n]
    x = layer_norm(x + F.gelu(conv.T), sd, "encoder.layer_norm")
    half = cfg["num_buckets"] // 2
    exact = half // 2
    offset = np.arange(n)[None, :] - np.arange(n)[:, None]
    distance = np.abs(offset)
    with np.errstate(divide="ignore", invalid="ignore"):  # distance 0 takes the exact branch
        large = exact + np.floor(np.log(distance / exact) / math.log(cfg["max_distance"] / exact)
                                 * (half - exact)).astype(np.int64)
    bucket = (offset > 0) * half + np.where(distance < exact, distance, np.minimum(large, half - 1))
    heads, layers = cfg["encoder_attention_heads"], cfg["encoder_layers"]
    head = width // heads
    bias = sd["encoder.layers.0.self_attn.relative_attention_bias.weight"][torch.from_numpy(bucket)].permute(2, 0, 1)
    alpha = (2 * layers) ** 0.25
    for i in range(layers):
        p = f"encoder.layers.{i}."
        q, k, val = (linear(x, sd, p + f"self_attn.{w}_proj") for w in "qkv")
        qh, kh, vh = (t.view(n, heads, head).transpose(0, 1) for t in (q * head ** -0.5 / 32, k, val))
        scores = qh @ kh.transpose(1, 2)
        scores = (scores - scores.max(dim=-1, keepdim=True).values) * 32
        gates = torch.sigmoid(linear(q.view(n, heads, head).transpose(0, 1), sd, p + "self_attn.grep_linear")
                              .view(heads, n, 2, 4).sum(-1))
        gate = gates[..., :1] * (gates[..., 1:] * sd[p + "self_attn.grep_a"][0] - 1.0) + 2.0
        ctx = torch.softmax(scores + gate * bias, dim=-1) @ vh
        attn = linear(ctx.transpose(0, 1).reshape(n, width), sd, p + "self_attn.out_proj")
        x = layer_norm(x * alpha + attn, sd, p + "self_attn_layer_norm")
        x = layer_norm(x * alpha + linear(F.gelu(linear(x, sd, p + "fc1")), sd, p + "fc2"), sd,
                       p + "final_layer_norm")
    return x


# ---------------------------------------------------------------------- tests


def test_tiny_is_deterministic_in_the_official_formats(paths, tmp_path):
    root = Path(paths["salmonn"]).parent
    stamp = (root / "salmonn.pth").stat().st_mtime_ns
    assert SalmonnAdapter.resolve("tiny", root.parent) == paths  # reused, not rebuilt
    assert (root / "salmonn.pth").stat().st_mtime_ns == stamp
    size = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    assert size < 8e6, f"tiny SALMONN is {size / 1e6:.1f} MB"
    pth = torch.load(paths["salmonn"], weights_only=True)
    assert set(pth) == {"model"}
    sd = pth["model"]
    assert sum(".lora_" in k for k in sd) == 2 * 2 * 2  # 2 layers x (q, v) x (A, B)
    assert LORA.format(1, "v_proj", "B") in sd and "speech_query_tokens" in sd
    pt = torch.load(paths["beats"], weights_only=True)
    assert set(pt) == {"cfg", "model"} and pt["cfg"]["input_patch_size"] == 16
    assert (Path(paths["llm"]) / "tokenizer.model").is_file() and (Path(paths["whisper"]) / "config.json").is_file()
    again = build_tiny(tmp_path / "again")
    assert (again / "llm" / "tokenizer.model").read_bytes() == (root / "llm" / "tokenizer.model").read_bytes()
    sd2 = torch.load(again / "salmonn.pth", weights_only=True)["model"]
    assert sd2.keys() == sd.keys() and all(torch.equal(sd[k], sd2[k]) for k in sd)
    for name in ("ln_audio.weight", LORA.format(0, "q_proj", "B"), "speech_Qformer.bert.embeddings.LayerNorm.weight"):
        assert not torch.all(sd[name] == sd[name].flatten()[0]), f"{name} is not randomised"


def test_states_have_the_real_lengths(model, states, clips):
    feats = model.features(clips, sampling_rate=SR, return_tensors="pt")["input_features"]
    assert feats.shape == (3, 80, 3000)
    assert model.whisper(feats).last_hidden_state.shape == (3, 1500, 32)
    assert [model.beats(torch.from_numpy(w)).shape[0] for w in clips] == [1496, 360, 24]  # 8 x floor(frames / 16)
    assert states.enc.shape == (3, 1500, 32 + 48)
    assert len(states.hidden) == 3 and states.out.shape == states.hidden[0].shape
    assert states.hidden[0].shape[-1] == 64
    assert states.audio.sum(1).tolist() == [88, 88, 88]
    # windows covering the clip: ceil(ceil(samples / 320) / 17); frames: ceil(samples / 320)
    frames = [math.ceil(len(w) / 320) for w in clips]
    assert states.enc_speech.sum(1).tolist() == [1500, 365, 30] == frames
    assert states.speech.sum(1).tolist() == [88, 22, 2] == [min(88, math.ceil(f / 17)) for f in frames]
    assert bool((states.speech <= states.audio).all())


def test_audio_glue_and_windows_against_direct_computation(model, states, clips, official):
    feats = model.features(clips, sampling_rate=SR, return_tensors="pt")["input_features"]
    whisper = model.whisper(feats).last_hidden_state
    beats = [model.beats(torch.from_numpy(w)) for w in clips]
    speech = layer_norm(whisper, official, "ln_speech")
    audio = torch.zeros(3, 1500, 48)
    for i, b in enumerate(beats):
        audio[i, : b.shape[0]] = layer_norm(b, official, "ln_audio")
    enc = torch.cat([speech, audio], dim=-1)
    glue = rel(states.enc, enc)
    assert glue < 1e-6
    assert bool((states.enc[1, 360:, 32:] == 0).all())  # exact zeros after BEATs' 360 tokens
    windows = torch.stack([enc[:, 17 * w: 17 * w + 17] for w in range(88)], dim=1)  # frames 1496..1499 unused
    tokens = linear(qformer_direct(official, windows.reshape(-1, 17, 80)), official, "speech_llama_proj")
    tokens = tokens.view(3, 88, 64)
    start = states.audio.int().argmax(dim=1)
    for b in range(3):
        got = states.hidden[0][b, start[b]: start[b] + 88]
        assert rel(got, tokens[b]) < 1e-5, b
    flat = windows.reshape(-1, 17, 80)
    qformer = rel(model.audio.speech_Qformer(flat), qformer_direct(official, flat))
    assert qformer < 1e-5, qformer


@pytest.mark.parametrize("prompt,prefix", [("{text}", "</Speech>"),
                                           ("Transcribe it. Reference: {text}", "</Speech> Transcribe it. Reference:")])
def test_prompt_assembly_and_position_split(model, clips, sp, llm_weights, prompt, prefix):
    st = model.states(clips, TEXTS, prompt=prompt)
    left = sp.encode("USER: <Speech>")
    assert left == model.tokenizer.encode("USER: <Speech>")[0]
    table = llm_weights["model.embed_tokens.weight"]
    for b, text in enumerate(TEXTS):
        right = sp.encode(prompt.replace("{text}", text).join(["</Speech> ", "\nASSISTANT:"]))
        full = [1] + left + [-1] * 88 + right
        n = len(full)
        assert st.input_ids[b, :n].tolist() == full and bool(st.valid[b, :n].all()) and not st.valid[b, n:].any()
        assert sp.encode("USER: <Speech>" + "</Speech>") != left + sp.encode("</Speech>")  # halves differ from whole
        audio = torch.zeros(st.valid.shape[1], dtype=torch.bool)
        audio[1 + len(left): 1 + len(left) + 88] = True
        assert torch.equal(st.audio[b], audio)
        pre, words = sp.encode(prefix), sp.encode(text)
        assert right[: len(pre)] == pre and right[len(pre): len(pre) + len(words)] == words  # clean boundaries
        # the transcript's tokens, less a lone "▁" (the space before it) where SentencePiece splits one off
        lone = int(sp.id_to_piece(words[0]) == "\u2581")
        transcript = torch.zeros_like(audio)
        first = 1 + len(left) + 88 + len(pre)
        transcript[first + lone: first + len(words)] = True
        assert torch.equal(st.transcript[b], transcript)
        assert torch.equal(st.prompt[b], st.valid[b] & ~audio) and int(st.prompt[b].sum()) == 1 + len(left) + len(right)
        text_ids = torch.tensor([i for i in full if i >= 0])
        assert torch.equal(st.hidden[0][b][st.prompt[b]], table[text_ids])  # "in" for text: token embeddings
        assert bool((st.hidden[0][b, n:] == 0).all())


def test_hidden_states_match_transformers_and_raw_last_layer(model, states, llm_weights):
    n = int(states.valid[1].sum())
    with torch.inference_mode():
        ref = model.body(inputs_embeds=states.hidden[0][1:2, :n], output_hidden_states=True).hidden_states
    assert len(ref) == 3
    assert rel(states.hidden[1][1, :n], ref[1][0]) < 1e-5
    assert rel(states.out[1, :n], ref[2][0]) < 1e-5  # transformers' last entry is normed
    raw = states.hidden[2][1, :n]
    normed = raw * torch.rsqrt(raw.pow(2).mean(-1, keepdim=True) + 1e-6) * llm_weights["model.norm.weight"]
    assert rel(normed, states.out[1, :n]) < 1e-5 and rel(raw, states.out[1, :n]) > 0.1


def test_lora_is_active_with_scaling_four(model, clips, official, llm_weights):
    layers = model.body.layers
    assert type(layers[0].self_attn.k_proj).__name__ == "Linear" and not hasattr(layers[0].self_attn.o_proj, "lora_A")
    x = torch.randn(5, 64, generator=torch.Generator().manual_seed(1))
    for i in range(2):
        for target in ("q_proj", "v_proj"):
            proj = getattr(layers[i].self_attn, target)
            assert proj.scaling["default"] == 4.0  # alpha 32 / rank 8
            a, b = official[LORA.format(i, target, "A")], official[LORA.format(i, target, "B")]
            w = llm_weights[f"model.layers.{i}.self_attn.{target}.weight"]
            with torch.inference_mode():
                assert rel(proj(x), x @ w.T + 4.0 * (x @ a.T) @ b.T) < 1e-5
    before = model.states(clips[1], TEXTS[1])
    weights = [getattr(layer.self_attn, t).lora_B["default"].weight for layer in layers for t in ("q_proj", "v_proj")]
    saved = [w.clone() for w in weights]
    try:
        with torch.no_grad():
            for w in weights:
                w.zero_()
        without = model.states(clips[1], TEXTS[1])
    finally:
        with torch.no_grad():
            for w, value in zip(weights, saved):
                w.copy_(value)
    assert torch.equal(before.hidden[0], without.hidden[0])
    assert rel(without.hidden[1], before.hidden[1]) > 1e-2
    assert torch.equal(model.states(clips[1], TEXTS[1]).hidden[1], before.hidden[1])


def test_fbank_matches_direct_computation(clips):
    wave = clips[1][: 3 * SR].astype(np.float64) * 2 ** 15
    ours = kaldi_fbank(torch.from_numpy(wave)).numpy()
    direct = fbank_numpy(wave)
    assert ours.shape == direct.shape == (298, 128)
    # the port builds the mel filters in float32 like torchaudio's Kaldi fbank; narrow low filters feel that
    assert np.abs(ours - direct).max() < 5e-4 and np.median(np.abs(ours - direct)) < 1e-5


def test_fbank_matches_kaldi_native_fbank(clips):
    knf = pytest.importorskip("kaldi_native_fbank")
    wave = clips[1][: 3 * SR].astype(np.float64) * 2 ** 15
    ours = kaldi_fbank(torch.from_numpy(wave)).numpy()
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.mel_opts.num_bins = 128
    online = knf.OnlineFbank(opts)
    online.accept_waveform(SR, wave.tolist())
    online.input_finished()
    reference = np.stack([online.get_frame(i) for i in range(online.num_frames_ready)])
    assert reference.shape == ours.shape
    assert np.abs(ours - reference).max() < 2e-3  # kaldi-native-fbank works in float32


def test_beats_matches_direct_computation(model, paths, clips):
    pt = torch.load(paths["beats"], weights_only=True)
    for wave in (clips[1][: int(2.5 * SR)], clips[2]):
        with torch.inference_mode():
            ours = model.beats(torch.from_numpy(wave))
        direct = beats_direct(pt, wave)
        assert ours.shape == direct.shape
        assert rel(ours, direct) < 1e-5
    loaded = load_beats(paths["beats"])
    tables = [layer.self_attn.relative_attention_bias for layer in loaded.encoder.layers]
    assert tables[1] is tables[0]  # one shared table, as in the original


def _save_variant(paths, tmp_path, change) -> dict:
    sd = dict(torch.load(paths["salmonn"], weights_only=True)["model"])
    change(sd)
    torch.save({"model": sd}, tmp_path / "bad.pth")
    return dict(paths, salmonn=str(tmp_path / "bad.pth"))


def test_loader_rejects_missing_and_misshaped_tensors(paths, tmp_path):
    def change(sd):
        del sd["ln_audio.bias"]
        sd["speech_llama_proj.weight"] = torch.zeros(64, 100)

    with pytest.raises(ModelError) as err:
        Salmonn.from_checkpoints(**_save_variant(paths, tmp_path, change))
    message = str(err.value)
    assert "ln_audio.bias" in message and "speech_llama_proj.weight [64, 100] (expected [64, 128])" in message
    assert "bad.pth" in message

    def extra(sd):
        del sd[LORA.format(1, "v_proj", "B")]
        sd["speech_Qformer.bert.encoder.layer.0.crossattention.self.extra"] = torch.zeros(1)

    with pytest.raises(ModelError) as err:
        Salmonn.from_checkpoints(**_save_variant(paths, tmp_path, extra))
    assert LORA.format(1, "v_proj", "B") in str(err.value) and "crossattention.self.extra" in str(err.value)


def test_beats_loader_rejects_missing_and_misshaped_tensors(paths, tmp_path):
    pt = torch.load(paths["beats"], weights_only=True)
    sd = dict(pt["model"])
    assert "predictor.weight" in sd  # the classifier head is present and ignored
    del sd["encoder.layers.1.fc1.bias"]
    sd["patch_embedding.weight"] = torch.zeros(32, 1, 8, 8)
    sd["encoder.layers.0.self_attn.extra"] = torch.zeros(1)
    torch.save({"cfg": pt["cfg"], "model": sd}, tmp_path / "bad.pt")
    with pytest.raises(ModelError) as err:
        load_beats(tmp_path / "bad.pt")
    for name in ("encoder.layers.1.fc1.bias", "patch_embedding.weight [32, 1, 8, 8]",
                 "encoder.layers.0.self_attn.extra"):
        assert name in str(err.value)
    sd = dict(pt["model"])
    sd["encoder.layers.1.self_attn.relative_attention_bias.weight"] = torch.zeros_like(
        sd["encoder.layers.1.self_attn.relative_attention_bias.weight"])
    torch.save({"cfg": pt["cfg"], "model": sd}, tmp_path / "alias.pt")
    with pytest.raises(ModelError, match="differs from the shared table"):
        load_beats(tmp_path / "alias.pt")


@pytest.fixture(scope="module")
def adapter(paths):
    return SalmonnAdapter(paths, {}, device="cpu")


def test_batched_equals_unbatched(adapter, clips):
    inputs = list(zip(clips, TEXTS))
    spec = SalmonnAdapter.spec(adapter.checkpoint, adapter.options)
    worst = 0.0
    for modality in ("text", "speech"):
        points = tuple(p.name for p in spec.points[modality])
        batch = adapter.embed(modality, "eng", inputs, points)
        for i, pair in enumerate(inputs):
            one = adapter.embed(modality, "eng", [pair], points)
            for p in points:
                assert batch[p].shape == (3, next(q.width for q in spec.points[modality] if q.name == p))
                worst = max(worst, rel(batch[p][i], one[p][0]))
    assert worst <= 1e-5, worst


def test_pooling_follows_the_options(paths, adapter, model, clips):
    inputs = list(zip(clips, TEXTS))
    st = model.states(clips, TEXTS)
    default = adapter.embed("speech", "eng", inputs, ("enc", "in", "2"))
    short = SalmonnAdapter(paths, {"audio_positions": "speech", "text_positions": "prompt"}, device="cpu")
    trimmed = short.embed("speech", "eng", inputs, ("enc", "in", "2"))
    text = adapter.embed("text", "eng", inputs, ("1",))
    wide = short.embed("text", "eng", inputs, ("1",))
    for b, wave in enumerate(clips):
        start = int(st.audio[b].int().argmax())
        windows = min(88, math.ceil(math.ceil(len(wave) / 320) / 17))
        frames = math.ceil(len(wave) / 320)
        assert rel(default["enc"][b], st.enc[b].double().mean(0)) < 1e-6
        assert rel(trimmed["enc"][b], st.enc[b, :frames].double().mean(0)) < 1e-6
        assert rel(default["in"][b], st.hidden[0][b, start: start + 88].double().mean(0)) < 1e-6
        assert rel(trimmed["2"][b], st.hidden[2][b, start: start + windows].double().mean(0)) < 1e-6
        assert rel(text["1"][b], st.hidden[1][b][st.transcript[b]].double().mean(0)) < 1e-6
        assert rel(wide["1"][b], st.hidden[1][b][st.valid[b] & ~st.audio[b]].double().mean(0)) < 1e-6
    assert rel(trimmed["enc"][2], default["enc"][2]) > 1e-3  # the 0.6 s clip: padding changes the mean
    with pytest.raises(ModelError, match="enc"):
        adapter.embed("text", "eng", inputs, ("enc",))


def test_options_are_validated_with_the_key_at_fault(tmp_path):
    prefix = "models.1.options"
    full = SalmonnAdapter.check_options({}, prefix)
    assert full == {"prompt": "{text}", "template": "USER: <Speech><SpeechHere></Speech> {prompt}\nASSISTANT:",
                    "text_positions": "transcript", "audio_positions": "all", "text_input": "joint"}
    assert SalmonnAdapter.check_options({"audio_positions": "speech"}, prefix)["audio_positions"] == "speech"
    cases = [({"prompts": "x"}, f"{prefix}.prompts"),
             ({"text_positions": "all"}, f"{prefix}.text_positions: 'all' is not one of transcript, prompt"),
             ({"text_input": "both"}, f"{prefix}.text_input: 'both' is not one of joint, alone"),
             ({"audio_positions": "real"}, f"{prefix}.audio_positions: 'real' is not one of all, speech"),
             ({"prompt": "Repeat after me"}, f"{prefix}.prompt"),
             ({"template": "USER: {prompt}"}, f"{prefix}.template")]
    for raw, message in cases:
        with pytest.raises(ConfigError) as err:
            SalmonnAdapter.check_options(raw, prefix)
        assert message in str(err.value)
    with pytest.raises(ConfigError, match="checkpoint.llm"):
        SalmonnAdapter.resolve({"salmonn": "a", "whisper": "b", "beats": "c"}, tmp_path)
    with pytest.raises(ConfigError, match="checkpoint.salmonn"):
        SalmonnAdapter.resolve({"salmonn": str(tmp_path / "no.pth"), "whisper": "b", "beats": "c", "llm": "d"},
                               tmp_path)
    hub = {"salmonn": "hf://tsinghua-ee/SALMONN-7B/salmonn_7b_v0.pth", "whisper": "openai/whisper-large-v2",
           "beats": "hf://owner/repo/beats.pt", "llm": "lmsys/vicuna-7b-v1.5"}
    assert SalmonnAdapter.resolve(hub, tmp_path) == hub  # hub references are left for prefetch


def test_spec_points_from_configs(paths):
    spec = SalmonnAdapter.spec(paths, SalmonnAdapter.check_options({}, "models[2].options"))
    assert [(p.name, p.width) for p in spec.points["speech"]] == [("enc", 80), ("in", 64), ("1", 64), ("2", 64),
                                                                   ("out", 64)]
    assert [p.name for p in spec.points["text"]] == ["in", "1", "2", "out"]
    assert spec.pairs == (("enc", "in", "enc"), ("in", "in", "in"), ("1", "1", "1"), ("2", "2", "2"),
                          ("out", "out", "out"))
    assert spec.languages == {"text": None, "speech": None}
    assert spec.checkpoint == paths  # the mapping, as recorded with the results
    assert SalmonnAdapter.spec(json.loads(json.dumps(spec.checkpoint)), {}) == spec  # as the store returns it


def test_half_precision_runs_close_to_float32(paths, model, clips):
    half = Salmonn.from_checkpoints(**paths, dtype="bfloat16")
    st, ref = half.states(clips[1:], TEXTS[1:]), model.states(clips[1:], TEXTS[1:])
    assert st.out.dtype == torch.bfloat16 and st.enc.dtype == torch.bfloat16
    assert half.body.layers[0].self_attn.q_proj.lora_A["default"].weight.dtype == torch.float32  # as peft 0.3 did
    for a, b in zip(st.hidden + (st.out, st.enc), ref.hidden + (ref.out, ref.enc)):
        assert bool(torch.isfinite(a).all()) and rel(a.float(), b) < 0.15


def test_text_alone_is_the_llm_on_the_template_without_audio(paths, adapter, model, clips, sp):
    """`text_input: alone`: BOS + the template minus `<Speech><SpeechHere></Speech>`, encoded as one string, through
    the LLM with its LoRA (SALMONN never switches it off); batched equals one at a time; the speech side stays
    the joint pass's."""
    alone = SalmonnAdapter(paths, {"text_input": "alone"}, device="cpu")
    inputs = list(zip(clips, TEXTS))
    batch = alone.embed_joint("eng", inputs, {"text": ("in", "1", "out"), "speech": ("enc", "2")})
    joint = adapter.embed_joint("eng", inputs, {"text": ("out",), "speech": ("enc", "2")})
    for i, text in enumerate(TEXTS):
        whole = f"USER:  {text.strip()}\nASSISTANT:"
        ids = [sp.bos_id()] + sp.encode(whole)
        with torch.inference_mode():
            hs = model.body(inputs_embeds=model.body.embed_tokens(torch.tensor([ids])),
                            output_hidden_states=True).hidden_states
        ref_ids = alone.prepare_text([text])
        mask = ref_ids["transcript"][0]
        assert ref_ids["ids"][0].tolist() == ids
        assert sp.decode([t for t, m in zip(ids, mask.tolist()) if m]) == text.strip()
        assert not mask[:3].any() and not mask[-3:].any()  # BOS, 'USER:' and '\nASSISTANT:' are not
        for p, h in (("in", hs[0]), ("1", hs[1]), ("out", hs[-1])):
            assert rel(batch["text"][p][i], h[0][mask].double().mean(0)) < 1e-5, (p, i)
        for p in ("enc", "2"):
            assert rel(batch["speech"][p][i], joint["speech"][p][i]) < 1e-9
        assert rel(batch["text"]["out"][i], joint["text"]["out"][i]) > 1e-3
    one = alone.embed_joint("eng", inputs[2:], {"text": ("out",)})["text"]["out"][0]
    assert rel(one, batch["text"]["out"][2]) < 1e-5
