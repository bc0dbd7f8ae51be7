"""hf_encoders: any transformers text encoder with any transformers speech encoder, checked against the
SeamlessM4T v2 adapter on the same tiny model, and on tiny BERT + wav2vec 2.0 / Whisper built from configs
against direct computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crossrep.errors import ConfigError
from crossrep.models.hf_encoders import HFEncodersAdapter
from crossrep.models.seamless import SeamlessM4Tv2Adapter

pytestmark = pytest.mark.model

SR = 16_000
TEXTS = ["the dog ran home today", "wir sind letztes wochenende mit dem zug gefahren", "le chat dort"]


def rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


@pytest.fixture(scope="module")
def clips():
    rng = np.random.default_rng(3)
    return [(0.1 * rng.standard_normal(int(s * SR))).astype(np.float32) for s in (1.2, 2.7, 0.8)]


@pytest.fixture(scope="module")
def bert_wav2vec2(tmp_path_factory) -> dict:
    """A tiny BERT (with its pooler) and a tiny wav2vec 2.0 (fed raw samples), random, in hub folders."""
    from transformers import (BertConfig, BertModel, BertTokenizerFast, Wav2Vec2Config, Wav2Vec2FeatureExtractor,
                              Wav2Vec2Model)

    root = tmp_path_factory.mktemp("encoders")
    torch.manual_seed(0)
    chars = sorted({c for t in TEXTS for c in t if c != " "})
    vocab = root / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars) + "\n")
    BertTokenizerFast(vocab_file=str(vocab)).save_pretrained(root / "bert")
    BertModel(BertConfig(vocab_size=5 + len(chars), hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                         intermediate_size=64)).save_pretrained(root / "bert")
    cfg = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                         conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 4), num_conv_pos_embeddings=16,
                         num_conv_pos_embedding_groups=4, feat_extract_norm="layer", do_stable_layer_norm=True)
    Wav2Vec2Model(cfg).eval().save_pretrained(root / "w2v")
    Wav2Vec2FeatureExtractor(return_attention_mask=True, do_normalize=True).save_pretrained(root / "w2v")
    return {"text": str(root / "bert"), "speech": str(root / "w2v")}


def test_seamless_encoders_equal_the_seamless_adapter(tiny, clips):
    ours = HFEncodersAdapter({"text": str(tiny), "speech": str(tiny)}, {}, device="cpu")
    theirs = SeamlessM4Tv2Adapter(str(tiny), {}, device="cpu")
    spec = HFEncodersAdapter.spec({"text": str(tiny), "speech": str(tiny)}, {})
    reference = SeamlessM4Tv2Adapter.spec(str(tiny), {})
    for modality, inputs in (("text", TEXTS), ("speech", clips)):
        names = [p.name for p in spec.points[modality]]
        assert names == [p.name for p in reference.points[modality] if p.kind in ("input", "layer")]
        assert [p.width for p in spec.points[modality]] == [
            p.width for p in reference.points[modality] if p.kind in ("input", "layer")]
        a = ours.embed(modality, "deu", inputs, tuple(names))
        b = theirs.embed(modality, "deu", inputs, tuple(names))
        for p in names:
            assert rel(a[p], b[p]) < 1e-6, (modality, p)
    assert spec.pairs == tuple((p, p, p) for p in ["in", "1", "2", "3", "4"])


def test_bert_and_wav2vec2_against_direct_computation(bert_wav2vec2, clips):
    from transformers import AutoFeatureExtractor, AutoTokenizer, BertModel, Wav2Vec2Model

    spec = HFEncodersAdapter.spec(bert_wav2vec2, {})
    assert [p.name for p in spec.points["text"]] == ["in", "1", "2", "3", "4", "pool"]
    assert [(p.name, p.width) for p in spec.points["speech"]] == [("in", 32), ("1", 32), ("2", 32)]
    ours = HFEncodersAdapter(bert_wav2vec2, {}, device="cpu")
    text = ours.embed("text", "eng", TEXTS, ("1", "4", "pool"))
    bert = BertModel.from_pretrained(bert_wav2vec2["text"]).eval()
    tok = AutoTokenizer.from_pretrained(bert_wav2vec2["text"])
    for k, t in enumerate(TEXTS):  # one at a time: no padding at all
        enc = tok(t, return_tensors="pt")
        with torch.no_grad():
            out = bert(**enc, output_hidden_states=True)
        assert rel(text["1"][k], out.hidden_states[1][0].double().mean(0)) < 1e-5
        assert rel(text["4"][k], out.hidden_states[4][0].double().mean(0)) < 1e-5
        assert rel(text["pool"][k], out.pooler_output[0].double()) < 1e-5
    speech = ours.embed("speech", "eng", clips, ("in", "1", "2"))
    w2v = Wav2Vec2Model.from_pretrained(bert_wav2vec2["speech"]).eval()
    fe = AutoFeatureExtractor.from_pretrained(bert_wav2vec2["speech"])
    kept = {}
    w2v.encoder.layers[-1].register_forward_hook(  # before the final LayerNorm
        lambda m, a, o: kept.update(last=o[0] if isinstance(o, tuple) else o))
    for k, w in enumerate(clips):  # one clip at a time: the clip's own frames, no padding
        x = fe(w, sampling_rate=SR, return_tensors="pt")
        with torch.no_grad():
            out = w2v(x["input_values"], output_hidden_states=True)
        assert out.last_hidden_state.shape[1] == int(w2v._get_feat_extract_output_lengths(torch.tensor(len(w))))
        assert rel(speech["in"][k], out.hidden_states[0][0].double().mean(0)) < 1e-4
        assert rel(speech["1"][k], out.hidden_states[1][0].double().mean(0)) < 1e-4
        assert rel(speech["2"][k], kept["last"][0].double().mean(0)) < 1e-4


def test_relative_pairs_and_options(bert_wav2vec2):
    spec = HFEncodersAdapter.spec(bert_wav2vec2, {})
    # 4 text layers on 2 speech layers: nearest of 0.5, 1, 1.5, 2 (halves up), at least 1
    assert spec.pairs == (("in", "in", "in"), ("1", "1", "1"), ("2/1", "2", "1"), ("3/2", "3", "2"),
                          ("4/2", "4", "2"))
    listed = HFEncodersAdapter.spec(bert_wav2vec2, {"pairs": [["4", "2"], ["pool", "2"]]})
    assert listed.pairs == (("4/2", "4", "2"), ("pool/2", "pool", "2"))
    with pytest.raises(ConfigError, match=r"options\.pairs: \[9, 2\] names a point"):
        HFEncodersAdapter.spec(bert_wav2vec2, {"pairs": [["9", "2"]]})
    with pytest.raises(ConfigError, match=r"m\.options\.pairs: expected `relative`"):
        HFEncodersAdapter.check_options({"pairs": "diagonal"}, "m.options")
    with pytest.raises(ConfigError, match=r"expected a mapping \{text: ID, speech: ID\}"):
        HFEncodersAdapter.resolve({"text": "x"}, None)


def test_whisper_encoder_pools_the_clips_states_only(bert_wav2vec2, tmp_path, clips):
    """Whisper (encoder-decoder: its encoder is taken) always sees 3000 mel frames; a clip of F valid frames
    covers the first ceil(F / 2) of the 1500 states."""
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    torch.manual_seed(1)
    cfg = WhisperConfig(vocab_size=64, num_mel_bins=80, d_model=32, encoder_layers=2, encoder_attention_heads=4,
                        encoder_ffn_dim=64, decoder_layers=1, decoder_attention_heads=4, decoder_ffn_dim=64,
                        max_source_positions=1500, max_target_positions=32, pad_token_id=0, bos_token_id=1,
                        eos_token_id=2, decoder_start_token_id=3)
    WhisperModel(cfg).save_pretrained(tmp_path / "whisper")
    WhisperFeatureExtractor(feature_size=80).save_pretrained(tmp_path / "whisper")
    checkpoint = {"text": bert_wav2vec2["text"], "speech": str(tmp_path / "whisper")}
    spec = HFEncodersAdapter.spec(checkpoint, {})
    assert [(p.name, p.width) for p in spec.points["speech"]] == [("in", 80), ("1", 32), ("2", 32)]
    ours = HFEncodersAdapter(checkpoint, {}, device="cpu").embed("speech", "eng", clips, ("in", "1"))
    model = WhisperModel.from_pretrained(tmp_path / "whisper").eval()
    fe = WhisperFeatureExtractor.from_pretrained(tmp_path / "whisper")
    for k, w in enumerate(clips):
        x = fe(w, sampling_rate=SR, return_attention_mask=True, return_tensors="pt")
        frames = int(x["attention_mask"].sum())
        with torch.no_grad():
            out = model.encoder(x["input_features"], output_hidden_states=True)
        n = -(-frames // 2)
        assert out.hidden_states[1].shape[1] == 1500 and n < 1500
        assert rel(ours["1"][k], out.hidden_states[1][0, :n].double().mean(0)) < 1e-5
        assert rel(ours["in"][k], x["input_features"][0, :, :frames].double().mean(1)) < 1e-5
