"""The generic audio-LLM family `hf_audio_llm`: recipes by model_type, decoder found by structure. Voxtral on a
tiny random model in the hub layout (config, safetensors, a Tekken `tekken.json`) against the model's own forward
pass (`output_hidden_states=True`) on the ids mistral_common's Tekkenizer builds, text alone, batching and the
logit lens; the Qwen3-Omni thinker likewise; a Qwen2-Audio checkpoint read through the generic family equals its
own family's adapter."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crossrep.errors import ConfigError, ModelError
from crossrep.models.hf_audio_llm import HFAudioLLMAdapter, VoxtralRecipe
from crossrep.models.lens import FIELDS, LensRequest
from crossrep.models.qwen2_audio import Qwen2AudioAdapter

pytestmark = pytest.mark.model

SR = 16_000
TEXTS = ["the dog ran home today", "wir sind letztes wochenende mit dem zug gefahren", "ព្រះអាទិត្យរះឆាប់"]
POINTS = {"text": ("in", "1", "2", "out"), "speech": ("enc", "in", "1", "2", "out")}


def rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    return HFAudioLLMAdapter.resolve("tiny:voxtral", tmp_path_factory.mktemp("voxtral"))


def load(checkpoint, **options):
    spec = HFAudioLLMAdapter.spec(checkpoint, HFAudioLLMAdapter.check_options(options, "options"))
    return HFAudioLLMAdapter(checkpoint, spec.options, device="cpu")


@pytest.fixture(scope="module")
def adapter(checkpoint):
    return load(checkpoint)


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    rng = np.random.default_rng(11)
    return [(0.1 * rng.standard_normal(int(s * SR))).astype(np.float32) for s in (2.5, 7.0, 4.3)]


def mistral_ids(checkpoint: str, text: str, audio: int) -> tuple[list[int], list[bool]]:
    """(ids, transcript mask) as mistral_common's Tekkenizer (the official reader of tekken.json) builds an
    instruct request: BOS, [INST], [BEGIN_AUDIO] and `audio` x [AUDIO] (none: no audio block), the text's
    own encoding, [/INST]."""
    tekken = pytest.importorskip("mistral_common.tokens.tokenizers.tekken",
                                 reason="mistral_common (crossrep[voxtral]) reads tekken.json as the reference")
    from pathlib import Path

    mc = tekken.Tekkenizer.from_file(Path(checkpoint) / "tekken.json")
    head = [mc.bos_id, mc.get_special_token("[INST]")]
    if audio:
        head += [mc.get_special_token("[BEGIN_AUDIO]")] + [mc.get_special_token("[AUDIO]")] * audio
    body = mc.encode(text, bos=False, eos=False)
    return head + body + [mc.get_special_token("[/INST]")], [False] * len(head) + [True] * len(body) + [False]


def reference(checkpoint: str, wave: np.ndarray, text: str) -> dict:
    """One clip through VoxtralForConditionalGeneration on the ids mistral_common builds (one 30 s window: 375
    audio tokens), Whisper features padded to 30 s."""
    import transformers

    model = transformers.VoxtralForConditionalGeneration.from_pretrained(checkpoint).eval()
    feats = transformers.WhisperFeatureExtractor.from_pretrained(checkpoint)(
        [wave], sampling_rate=SR, padding="max_length", return_tensors="pt")["input_features"]
    ids, mask = mistral_ids(checkpoint, text, 375)
    enc = {"input_ids": torch.tensor([ids])}
    transcript = torch.tensor(mask)
    kept = {}
    hooks = [model.model.audio_tower.register_forward_hook(lambda m, a, o: kept.update(enc=o.last_hidden_state[0])),
             model.model.language_model.layers[-1].register_forward_hook(
                 lambda m, a, o: kept.update(last=o[0] if isinstance(o, tuple) else o))]
    with torch.no_grad():
        out = model(input_ids=enc["input_ids"], input_features=feats, output_hidden_states=True)
    for h in hooks:
        h.remove()
    ids = enc["input_ids"][0]
    audio = ids == model.config.audio_token_id
    hs = out.hidden_states
    states = {"in": hs[0][0], "1": hs[1][0], "2": kept["last"][0], "out": hs[-1][0]}
    frames = (len(wave) // 160 - 1) // 2 + 1  # mel frames of the clip -> encoder frames (stride 2)
    return {"ids": ids, "audio": audio, "transcript": transcript, "states": states, "model": model,
            "speech": {p: v[audio].double().mean(0).numpy() for p, v in states.items()}
            | {"enc": kept["enc"].double().mean(0).numpy(),
               "enc_clip": kept["enc"][:frames].double().mean(0).numpy()},
            "text": {p: v[transcript].double().mean(0).numpy() for p, v in states.items()}}


@pytest.mark.parametrize("i", range(3))
def test_voxtral_equals_the_models_own_forward(checkpoint, adapter, clips, i):
    ref = reference(checkpoint, clips[i], TEXTS[i])
    st = adapter.states([clips[i]], [TEXTS[i]])
    n = int(st.valid[0].sum())
    assert st.input_ids[0, :n].tolist() == ref["ids"].tolist()
    assert st.audio[0, :n].tolist() == ref["audio"].tolist() and int(st.audio.sum()) == 375
    assert st.transcript[0, :n].tolist() == ref["transcript"].tolist()
    assert adapter.tokenizer.decode(st.input_ids[0][st.transcript[0]]) == TEXTS[i]
    out = adapter.embed_joint("eng", [(clips[i], TEXTS[i])], POINTS)
    for modality, points in POINTS.items():
        for p in points:
            assert rel(out[modality][p][0], ref[modality][p]) < 1e-5, (modality, p)
    clip = load(checkpoint, audio_positions="speech").embed_joint("eng", [(clips[i], TEXTS[i])],
                                                                  {"speech": ("enc",)})["speech"]["enc"][0]
    assert rel(clip, ref["speech"]["enc_clip"]) < 1e-5 and rel(clip, ref["speech"]["enc"]) > 1e-3
    # the audio tokens covering the clip: one per 4 encoder frames (80 ms)
    assert int(st.speech.sum()) == -(-((len(clips[i]) // 160 - 1) // 2 + 1) // 4)


def test_voxtral_batched_equals_one_at_a_time_and_text_alone_is_the_text_only_forward(checkpoint, adapter, clips):
    import transformers

    inputs = list(zip(clips, TEXTS))
    batch = adapter.embed_joint("eng", inputs, POINTS)
    for k, item in enumerate(inputs):
        one = adapter.embed_joint("eng", [item], POINTS)
        for modality, points in POINTS.items():
            for p in points:
                assert rel(batch[modality][p][k], one[modality][p][0]) < 1e-5, (modality, p, k)
    alone = load(checkpoint, text_input="alone").embed_joint("eng", inputs, {"text": POINTS["text"]})
    model = transformers.VoxtralForConditionalGeneration.from_pretrained(checkpoint).eval()
    for k, text in enumerate(TEXTS):
        ids, mask = mistral_ids(checkpoint, text, 0)
        mask = torch.tensor(mask)
        with torch.no_grad():
            hs = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
        for p, h in (("in", hs[0]), ("1", hs[1]), ("out", hs[-1])):
            assert rel(alone["text"][p][k], h[0][mask].double().mean(0).numpy()) < 1e-5, (p, k)
        assert rel(alone["text"]["out"][k], batch["text"]["out"][k]) > 1e-3


def test_voxtral_lens_reads_the_structural_norm_and_head(checkpoint, adapter, clips):
    ref = reference(checkpoint, clips[0], TEXTS[0])
    own = ref["ids"][ref["transcript"]].tolist()
    got = adapter.embed_joint("eng", [(clips[0], TEXTS[0])], {"speech": ("in",)},
                              LensRequest(("1", "out"), 5, (tuple(own),)))
    model = ref["model"]
    norm, head = model.model.language_model.norm, model.lm_head
    for p in ("1", "out"):
        h = ref["states"][p][ref["audio"]]
        with torch.no_grad():
            logp = head(h if p == "out" else norm(h)).double().log_softmax(-1).numpy()
        ids = sorted(set(own))
        best = np.mean([logp[:, t].max() for t in ids])
        r10 = np.mean([any((row > row[t]).sum() < 10 for row in logp) for t in ids])
        scores = dict(zip(FIELDS, got["speech"][f"lens_{p}"][0]))
        assert abs(scores["logprob"] - best) < 1e-5 * abs(best) and scores["recall_10"] == r10
        assert scores["logprob"] == scores["chance_logprob"]  # the same transcript as partner: the same numbers


def test_a_qwen2_audio_checkpoint_through_the_generic_family_equals_its_own_adapter(tmp_path, clips):
    checkpoint = Qwen2AudioAdapter.resolve("tiny", tmp_path)
    generic = load(checkpoint)
    assert type(generic) is Qwen2AudioAdapter
    own = Qwen2AudioAdapter(checkpoint, {}, device="cpu").embed_joint("eng", [(clips[1], TEXTS[1])], POINTS)
    got = generic.embed_joint("eng", [(clips[1], TEXTS[1])], POINTS)
    assert all(np.array_equal(got[m][p], own[m][p]) for m, ps in POINTS.items() for p in ps)
    assert generic.options["template"] == Qwen2AudioAdapter.TEMPLATE


def test_unknown_model_types_and_bare_tiny_are_refused(tmp_path):
    from transformers import AutoConfig

    AutoConfig.for_model("bert").save_pretrained(tmp_path / "bert")
    with pytest.raises(ModelError, match=r"model_type 'bert' has no hf_audio_llm recipe \(known: .*voxtral"):
        HFAudioLLMAdapter.spec(str(tmp_path / "bert"), {})
    with pytest.raises(ConfigError, match=r"needs a model_type, e\.g\. `tiny:voxtral`"):
        HFAudioLLMAdapter.resolve("tiny", tmp_path)
    with pytest.raises(ConfigError, match=r"no recipe for model_type 'nope'"):
        HFAudioLLMAdapter.resolve("tiny:nope", tmp_path)
    with pytest.raises(ConfigError, match=r"options\.colour: unknown Voxtral option"):
        HFAudioLLMAdapter.check_options({"colour": 1}, "options")
    assert VoxtralRecipe.sizes(AutoConfig.from_pretrained(HFAudioLLMAdapter.resolve("tiny:voxtral", tmp_path))) \
        == (64, 2, 32)


@pytest.fixture(scope="module")
def qwen3(tmp_path_factory) -> str:
    return HFAudioLLMAdapter.resolve("tiny:qwen3_omni_moe_thinker", tmp_path_factory.mktemp("qwen3"))


def qwen3_reference(checkpoint: str, wave: np.ndarray, text: str, template: str) -> dict:
    """One clip through Qwen3OmniMoeThinkerForConditionalGeneration: the placeholder repeated by the model's own
    length rule (chunks of 100 mel frames -> 13 tokens), the whole text tokenised at once (its processor needs
    torchvision for its video part, which has no CPU build for this torch here)."""
    import transformers
    from transformers.models.qwen3_omni_moe.modeling_qwen3_omni_moe import _get_feat_extract_output_lengths

    model = transformers.Qwen3OmniMoeThinkerForConditionalGeneration.from_pretrained(checkpoint).eval()
    tok = transformers.AutoTokenizer.from_pretrained(checkpoint)
    feats = transformers.WhisperFeatureExtractor.from_pretrained(checkpoint)(
        [wave], sampling_rate=SR, return_attention_mask=True, padding="max_length", return_tensors="pt")
    n = int(_get_feat_extract_output_lengths(feats["attention_mask"].sum(-1), 50))
    whole = template.replace("<|audio_pad|>", "<|audio_pad|>" * n).replace("{prompt}", text)
    enc = tok(whole, add_special_tokens=False, return_offsets_mapping=True, return_tensors="pt")
    at = whole.index(text)
    transcript = torch.tensor([b > a and a < at + len(text) and b > at for a, b in enc["offset_mapping"][0].tolist()])
    kept = {}
    hooks = [model.model.audio_tower.ln_post.register_forward_hook(lambda m, a, o: kept.update(enc=a[0])),
             model.model.language_model.layers[-1].register_forward_hook(
                 lambda m, a, o: kept.update(last=o[0] if isinstance(o, tuple) else o))]
    with torch.no_grad():
        out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                    input_features=feats["input_features"], feature_attention_mask=feats["attention_mask"],
                    output_hidden_states=True)
    for h in hooks:
        h.remove()
    ids = enc["input_ids"][0]
    audio = ids == model.config.audio_token_id
    hs = out.hidden_states
    states = {"in": hs[0][0], "1": hs[1][0], "2": kept["last"][0], "out": hs[-1][0]}
    return {"ids": ids, "audio": audio, "transcript": transcript, "n": n,
            "speech": {p: v[audio].double().mean(0).numpy() for p, v in states.items()}
            | {"enc": kept["enc"].double().mean(0).numpy()},
            "text": {p: v[transcript].double().mean(0).numpy() for p, v in states.items()}}


def test_qwen3_omni_thinker_equals_its_own_forward_batched_and_alone(qwen3, clips):
    adapter = load(qwen3)
    assert type(adapter).FAMILY == "Qwen3-Omni"
    inputs = list(zip(clips, TEXTS))
    batch = adapter.embed_joint("eng", inputs, POINTS)
    for i, (clip, text) in enumerate(inputs):
        ref = qwen3_reference(qwen3, clip, text, adapter.options["template"])
        st = adapter.states([clip], [text])
        n = int(st.valid[0].sum())
        assert st.input_ids[0, :n].tolist() == ref["ids"].tolist() and int(st.audio.sum()) == ref["n"]
        assert st.transcript[0, :n].tolist() == ref["transcript"].tolist()
        for modality, points in POINTS.items():
            for p in points:
                assert rel(batch[modality][p][i], ref[modality][p]) < 1e-5, (modality, p, i)
    assert [int(adapter.states([c], ["x"]).audio.sum()) for c in clips] == [33, 91, 56]  # 2.5 s, 7 s, 4.3 s
    alone = load(qwen3, text_input="alone").embed_joint("eng", inputs[:1], {"text": ("out",)})["text"]["out"][0]
    import transformers

    model = transformers.Qwen3OmniMoeThinkerForConditionalGeneration.from_pretrained(qwen3).eval()
    whole = adapter.options["template"].replace(type(adapter).AUDIO_BLOCK, "").replace("{prompt}", TEXTS[0])
    enc = adapter.tokenizer(whole, add_special_tokens=False, return_offsets_mapping=True, return_tensors="pt")
    at = whole.index(TEXTS[0])
    mask = torch.tensor([b > a and a < at + len(TEXTS[0]) and b > at for a, b in enc["offset_mapping"][0].tolist()])
    with torch.no_grad():
        hs = model(input_ids=enc["input_ids"], output_hidden_states=True).hidden_states
    assert rel(alone, hs[-1][0][mask].double().mean(0).numpy()) < 1e-5
