"""The SONAR port against the official implementation (fairseq2 0.5.2 + sonar-space 0.5.0), through the
reference file that tests/sonar_reference/make_reference.py wrote in its own venv; the loader; the adapter."""

from pathlib import Path

import numpy as np
import pytest
import torch

from crossrep.errors import ModelError
from crossrep.models.sonar import SonarAdapter, SonarSpeechEncoder, SonarTextEncoder, fbank

pytestmark = pytest.mark.model

REFERENCE = Path(__file__).parent / "data" / "sonar_reference.pt"
LAYER_TOL, POOL_TOL = 1e-4, 1e-5  # largest |port - official| relative to the largest |official| value
FS2_TO_HF_SPECIALS = torch.tensor([1, 3, 0, 2])  # fairseq2 <pad> <unk> <s> </s> -> NllbTokenizer ids


@pytest.fixture(scope="module")
def ref():
    return torch.load(REFERENCE, weights_only=True)


def hf_ids(tokens: torch.Tensor) -> torch.Tensor:
    out = tokens.clone()
    special = out < 4
    out[special] = FS2_TO_HF_SPECIALS[out[special]]
    return out


def worst(out, expected_states, expected_pooled) -> tuple[float, float]:
    """Largest relative difference over every state (valid positions only) and over the embeddings."""
    mask = out.mask()
    layers = max(float((a - b)[mask].abs().max() / b[mask].abs().max())
                 for a, b in zip(out.states, expected_states, strict=True))
    pooled = float((out.pooled - expected_pooled).abs().max() / expected_pooled.abs().max())
    return layers, pooled


def test_text_encoder_equals_official(ref):
    r = ref["text"]
    model = SonarTextEncoder.from_state_dict(r["state_dict"], num_heads=r["config"]["num_heads"])
    out = model.states(hf_ids(r["tokens"]), r["seq_lens"])
    assert len(out.states) == r["config"]["num_layers"] + 2  # in, every layer, final LayerNorm
    layers, pooled = worst(out, r["states"], r["pooled"])
    assert layers < LAYER_TOL and pooled < POOL_TOL, (layers, pooled)  # measured 2.1e-7, 7.4e-8
    for i, n in enumerate(r["seq_lens"].tolist()):
        alone = model.states(hf_ids(r["tokens"][i:i + 1, :n]), r["seq_lens"][i:i + 1]).pooled[0]
        assert float((alone - r["pooled_single"][i]).abs().max() / r["pooled_single"][i].abs().max()) < POOL_TOL


@pytest.mark.parametrize("arch", ["speech_3", "speech_6"])
@pytest.mark.parametrize("names", ["state_dict_fairseq1", "state_dict_fairseq2"])
def test_speech_encoder_equals_official(ref, arch, names):
    r = ref[arch]
    model = SonarSpeechEncoder.from_state_dict(r[names], num_heads=r["config"]["num_heads"])
    assert len(model.pooler.layers) == r["config"]["pooler_layers"]
    assert len(model.encoder.layers) == r["config"]["num_layers"]
    out = model.states(r["fbank"], r["fbank_lens"])
    assert out.lengths.tolist() == r["state_lens"].tolist()  # odd frame counts lose their last frame
    layers, pooled = worst(out, r["states"], r["pooled"])
    assert layers < LAYER_TOL and pooled < POOL_TOL, (layers, pooled)  # measured 4.0e-7, 7.8e-7
    for i, n in enumerate(r["fbank_lens"].tolist()):
        alone = model.states(r["fbank"][i:i + 1, :n], r["fbank_lens"][i:i + 1]).pooled[0]
        assert float((alone - r["pooled_single"][i]).abs().max() / r["pooled_single"][i].abs().max()) < POOL_TOL


def test_a_wrong_weight_fails_the_comparison(ref):
    r = ref["text"]
    state = dict(r["state_dict"])
    state["encoder.layers.1.self_attn.q_proj.bias"] = state["encoder.layers.1.self_attn.q_proj.bias"] + 0.01
    out = SonarTextEncoder.from_state_dict(state, num_heads=4).states(hf_ids(r["tokens"]), r["seq_lens"])
    assert worst(out, r["states"], r["pooled"])[0] > LAYER_TOL
    s = ref["speech_6"]
    state = dict(s["state_dict_fairseq1"])
    key = "encoder.w2v_model.encoder.layers.0.conv_module.batch_norm.running_var"
    state[key] = state[key] * 1.01
    out = SonarSpeechEncoder.from_state_dict(state, num_heads=4).states(s["fbank"], s["fbank_lens"])
    assert worst(out, s["states"], s["pooled"])[0] > LAYER_TOL


def test_fbank_close_to_official(ref):
    r = ref["speech_3"]
    for i, wave in enumerate(r["waveforms"]):
        ours = fbank(wave.numpy())
        assert len(ours) == int(r["fbank_lens"][i])
        # transformers' numpy Kaldi fbank against fairseq2n's: measured 2.7e-4 on values up to 4.6
        assert np.abs(ours - r["fbank"][i, :len(ours)].numpy()).max() < 1e-3


def test_loader_names_missing_misshaped_and_unexpected_tensors(ref, tmp_path):
    state = dict(ref["speech_3"]["state_dict_fairseq1"])
    del state["decoder.layers.2.fc2.bias"]
    state["encoder.w2v_model.encoder.layers.1.self_attn.pos_bias_u"] = torch.zeros(3, 8)
    state["decoder.output_projection.weight"] = torch.zeros(1)
    path = tmp_path / "spenc.bad.pt"
    torch.save({"model": state}, path)
    with pytest.raises(ModelError) as err:
        SonarSpeechEncoder.from_checkpoint(path, num_heads=4)
    text = str(err.value)
    assert str(path) in text and "missing (1): decoder.layers.2.fc2.bias" in text
    assert "mis-shaped (1): encoder.w2v_model.encoder.layers.1.self_attn.pos_bias_u [3, 8] (expected [4, 8])" in text
    assert "unexpected (1): decoder.output_projection.weight" in text
    torch.save({"model": {"foo.weight": torch.zeros(2)}}, path)
    with pytest.raises(ModelError, match="neither fairseq1"):
        SonarSpeechEncoder.from_checkpoint(path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match=f"cannot read SONAR checkpoint {path}"):
        SonarTextEncoder.from_checkpoint(path)


def test_tiny_checkpoints_are_in_the_official_formats(tiny_sonar):
    text = torch.load(tiny_sonar["text"], weights_only=True)["model"]
    assert "encoder_frontend.embed.weight" in text and "layer_norm.weight" in text
    eng = torch.load(tiny_sonar["speech"]["eng"], weights_only=True)["model"]
    assert "encoder.w2v_model.post_extract_proj.weight" in eng and "decoder.embed_out" in eng
    assert SonarSpeechEncoder.from_checkpoint(tiny_sonar["speech"]["eng"]).pooler.layers.__len__() == 3
    assert SonarSpeechEncoder.from_checkpoint(tiny_sonar["speech"]["fra"]).pooler.layers.__len__() == 6
    assert "amh" not in tiny_sonar["speech"] and "khm" not in tiny_sonar["speech"]


def test_batched_equals_unbatched(tiny_sonar, demo_root):
    from crossrep.data.fleurs import FleursLanguage

    adapter = SonarAdapter(tiny_sonar, {}, device="cpu")
    points = ("in", "1", "3", "pool")
    lang = FleursLanguage(demo_root, "deu", "test", 0)
    ids = list(lang.sentences)[:5]
    for modality, inputs in (("text", lang.texts(ids)), ("speech", lang.audio(ids))):
        batch = adapter.embed(modality, "deu", inputs, points)
        for i, item in enumerate(inputs):
            alone = adapter.embed(modality, "deu", [item], points)
            for p in points:
                rel = np.abs(alone[p][0] - batch[p][i]).max() / np.abs(batch[p][i]).max()
                assert rel < 1e-5, (modality, p, rel)  # measured: up to 3.8e-7


def test_languages_without_a_speech_encoder_are_refused_naming_the_set(tiny_sonar, make_job):
    from crossrep.config import load_job
    from crossrep.plan import create_store

    path = make_job("sonar", **{"models.0.adapter": "sonar", "models.0.checkpoint": "tiny"})
    with pytest.raises(ModelError, match=r"no speech support for khm.*`languages: paper-sonar`"):
        create_store(load_job(path), progress=False)


def test_a_tokenizer_smaller_than_the_embedding_table_is_refused(tiny_sonar):
    """An uncached NLLB hub id offline loads as a stub tokenizer; extraction must not run on it."""
    from crossrep.errors import ModelError
    from crossrep.models.sonar import check_vocabulary, load_tokenizer

    tokenizer = load_tokenizer(tiny_sonar)
    check_vocabulary(tokenizer, len(tokenizer), tiny_sonar)  # the tiny model's own table: accepted
    with pytest.raises(ModelError, match=r"has \d+ tokens but the SONAR text encoder .* embeds 256206"):
        check_vocabulary(tokenizer, 256206, tiny_sonar)


def test_speech_heads_come_from_the_weights_and_text_heads_from_the_options(tmp_path):
    """A speech checkpoint with 4 heads of 16 and no head hint loads as 4 heads (width / 64 would say 1) and
    computes what the model that wrote it computes; a head count that contradicts the weights is refused."""
    from crossrep.errors import ConfigError
    from crossrep.models.tiny import randomise

    torch.manual_seed(0)
    model = randomise(SonarSpeechEncoder(64, 2, 4, 128, 31, 2, 2, 128, 64), torch.Generator().manual_seed(0)).eval()
    path = tmp_path / "spenc.test.pt"
    torch.save({"model": model.fairseq1_state()}, path)  # no crossrep_config: nothing but the tensors
    loaded = SonarSpeechEncoder.from_checkpoint(path, pooler_heads=2)
    assert loaded.encoder.layers[0].self_attn.num_heads == 4 and loaded.pooler.layers[0].self_attn.heads == 2
    fbank, lengths = torch.randn(2, 40, 80), torch.tensor([40, 31])
    a, b = model.states(fbank, lengths), loaded.states(fbank, lengths)
    assert torch.allclose(a.pooled, b.pooled, atol=1e-6) and torch.allclose(a.states[-1], b.states[-1], atol=1e-6)
    with pytest.raises(ModelError, match=r"8 attention heads asked for, but .* are \[4, 16\] .*: 4 heads"):
        SonarSpeechEncoder.from_checkpoint(path, num_heads=8)
    assert SonarAdapter.check_options({"text_heads": 16}, "models[1].options") == {"text_heads": 16,
                                                                                   "pooler_heads": None}
    for raw, message in (({"heads": 4}, r"models\[1\].options.heads: unknown SONAR option; known: text_heads"),
                         ({"pooler_heads": 0}, r"models\[1\].options.pooler_heads: expected a positive number")):
        with pytest.raises(ConfigError, match=message):
            SonarAdapter.check_options(raw, "models[1].options")
