"""Audio-LLM adapters native to transformers (Qwen2-Audio, the Qwen2.5-Omni thinker, Audio Flamingo 3: one shared
implementation) on tiny random models in the hub's layout, against each model's own transformers forward pass
(`output_hidden_states=True`) on ids expanded by the family's own processor (for Omni, whose processor needs
torchvision, by the processors' documented rule)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from crossrep.errors import ConfigError, ModelError
from crossrep.models.audioflamingo3 import AudioFlamingo3Adapter
from crossrep.models.qwen2_5_omni import Qwen25OmniAdapter
from crossrep.models.qwen2_audio import Qwen2AudioAdapter

pytestmark = pytest.mark.model

SR = 16_000
TEXTS = ["the dog ran home today", "wir sind letztes wochenende mit dem zug gefahren", "ព្រះអាទិត្យរះឆាប់"]
POINTS = {"text": ("in", "1", "2", "out"), "speech": ("enc", "in", "1", "2", "out")}


def rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


@dataclass(frozen=True)
class Family:
    adapter: type
    model: str  # the model's own transformers class
    before: list[str]  # tokens of the default template before the audio (the tiny BPE splits "user")
    processor: bool  # the family's processor expands the ids (else: by hand, the processor needs torchvision)
    padded: bool  # the tower computes Whisper's 30 s padding (750 frames)


FAMILIES = {
    "qwen2_audio": Family(Qwen2AudioAdapter, "Qwen2AudioForConditionalGeneration", ["<|audio_bos|>"], True, True),
    "audioflamingo3": Family(AudioFlamingo3Adapter, "AudioFlamingo3ForConditionalGeneration",
                             ["<|im_start|>", "us", "er", "Ċ"], True, True),
    "qwen2_5_omni": Family(Qwen25OmniAdapter, "Qwen2_5OmniThinkerForConditionalGeneration",
                           ["<|im_start|>", "us", "er", "Ċ", "<|audio_bos|>"], False, False),
}


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, family) -> str:
    return FAMILIES[family].adapter.resolve("tiny", tmp_path_factory.mktemp(family))


@pytest.fixture(scope="module")
def adapter(checkpoint, family):
    return FAMILIES[family].adapter(checkpoint, {}, device="cpu")


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [(0.1 * rng.standard_normal(int(s * SR))).astype(np.float32) for s in (2.5, 7.0, 4.3)]


def expanded_inputs(family: str, checkpoint: str, wave: np.ndarray, prompt: str):
    """The model's inputs for one clip: from the family's processor, or, where that needs torchvision, the
    placeholder repeated by the processors' documented rule, n = ((frames - 1) // 2 + 1 - 2) // 2 + 1 for the
    clip's mel frames, and the whole expanded text tokenised at once."""
    import transformers

    if FAMILIES[family].processor:
        proc = transformers.AutoProcessor.from_pretrained(checkpoint)
        return proc(text=[prompt], audio=[wave], sampling_rate=SR, return_tensors="pt"), proc.tokenizer
    tokenizer = transformers.AutoTokenizer.from_pretrained(checkpoint)
    feats = transformers.AutoFeatureExtractor.from_pretrained(checkpoint)(
        [wave], sampling_rate=SR, return_attention_mask=True, padding="max_length", return_tensors="pt")
    frames = int(feats["attention_mask"].sum())
    n = ((frames - 1) // 2 + 1 - 2) // 2 + 1
    placeholder = FAMILIES[family].adapter.PLACEHOLDER
    enc = tokenizer(prompt.replace(placeholder, placeholder * n), add_special_tokens=False, return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
            "input_features": feats["input_features"], "feature_attention_mask": feats["attention_mask"]}, tokenizer


def reference(family: str, checkpoint: str, wave: np.ndarray, text: str, template: str) -> dict:
    """One clip through the model's own forward pass; positions found on the expanded text."""
    import transformers

    model = getattr(transformers, FAMILIES[family].model).from_pretrained(checkpoint).eval()
    inputs, tokenizer = expanded_inputs(family, checkpoint, wave, template.replace("{prompt}", text))
    kept = {}
    tower = model.model.audio_tower
    if FAMILIES[family].padded:
        hook = tower.register_forward_hook(lambda m, a, o: kept.update(enc=o.last_hidden_state[0]))
    else:  # the tower's state before its final norm and projection, packed (frames, D)
        hook = tower.ln_post.register_forward_hook(lambda m, a, o: kept.update(enc=a[0]))
    handles = [hook, model.model.language_model.layers[-1].register_forward_hook(
        lambda m, a, o: kept.update(last=o[0] if isinstance(o, tuple) else o))]
    with torch.no_grad():
        out = model(**inputs, output_hidden_states=True)
    for h in handles:
        h.remove()
    ids = inputs["input_ids"][0]
    audio = (ids == model.config.audio_token_id).numpy()
    expanded = tokenizer.decode(ids)
    at = expanded.rindex(text)
    enc = tokenizer(expanded, add_special_tokens=False, return_offsets_mapping=True)
    assert enc["input_ids"] == ids.tolist()  # the expanded text tokenises back to the model's ids
    transcript = np.array([b > a and a < at + len(text) and b > at for a, b in enc["offset_mapping"]])
    hs = out.hidden_states
    states = {"in": hs[0], "1": hs[1], "2": kept["last"], "out": hs[-1]}
    n = int(audio.sum())
    return {"audio": audio, "transcript": transcript, "ids": ids,
            "speech": {p: v[0][torch.from_numpy(audio)].double().mean(0).numpy() for p, v in states.items()}
            | {"enc": kept["enc"].double().mean(0).numpy(), "enc_clip": kept["enc"][:n].double().mean(0).numpy()},
            "text": {p: v[0][torch.from_numpy(transcript)].double().mean(0).numpy() for p, v in states.items()}}


def test_positions_on_a_hand_checked_example(adapter, family, clips):
    """2.5 s -> 40000 / 160 = 250 mel frames -> 125 -> 62 audio tokens. Qwen2-Audio's template
    <|audio_bos|> AUDIO x 62 <|audio_eos|> transcript: audio at 1..62, the transcript from 64 to the end;
    Audio Flamingo 3's <|im_start|> us er \n <sound> x 62 transcript <|im_end|> ...: audio at 4..65, then the
    transcript; Qwen2.5-Omni's <|im_start|> us er \n <|audio_bos|> AUDIO x 62 <|audio_eos|> transcript ...: audio
    at 5..66, the transcript from 68."""
    st = adapter.states([clips[0]], ["the dog"])
    before = FAMILIES[family].before
    first = len(before)
    assert adapter.tokenizer.convert_ids_to_tokens(st.input_ids[0, :first].tolist()) == before
    audio = torch.nonzero(st.audio[0]).flatten().tolist()
    assert audio == list(range(first, first + 62))
    transcript = torch.nonzero(st.transcript[0]).flatten().tolist()
    start = first + 62 + (family != "audioflamingo3")  # the Qwen families close the audio with <|audio_eos|>
    assert transcript[0] == start and transcript == list(range(start, transcript[-1] + 1))
    assert adapter.tokenizer.decode(st.input_ids[0, transcript]) == "the dog"
    assert not st.transcript[0, transcript[-1] + 1:].any() and int(st.valid[0].sum()) >= transcript[-1] + 1
    assert int(st.enc_speech[0].sum()) == 62 and st.enc.shape[1] == (750 if FAMILIES[family].padded else 62)


@pytest.mark.parametrize("i", range(3))
def test_pooled_states_equal_the_models_own_forward(family, checkpoint, adapter, clips, i):
    ref = reference(family, checkpoint, clips[i], TEXTS[i], adapter.options["template"])
    st = adapter.states([clips[i]], [TEXTS[i]])
    n = int(st.valid[0].sum())
    assert st.input_ids[0, :n].tolist() == ref["ids"].tolist()
    assert st.audio[0, :n].numpy().tolist() == ref["audio"].tolist()
    assert st.transcript[0, :n].numpy().tolist() == ref["transcript"].tolist()
    out = adapter.embed_joint("eng", [(clips[i], TEXTS[i])], POINTS)
    for modality, points in POINTS.items():
        for p in points:
            assert rel(out[modality][p][0], ref[modality][p]) < 1e-5, (modality, p)
    clip_only = type(adapter).__new__(type(adapter))
    clip_only.__dict__.update(adapter.__dict__, options=dict(adapter.options, audio_positions="speech"))
    enc = clip_only.embed_joint("eng", [(clips[i], TEXTS[i])], {"speech": ("enc",)})["speech"]["enc"][0]
    assert rel(enc, ref["speech"]["enc_clip"]) < 1e-5
    if FAMILIES[family].padded:
        assert rel(enc, ref["speech"]["enc"]) > 1e-3  # the padding frames change the "all" pooling
    else:
        assert rel(enc, ref["speech"]["enc"]) < 1e-5  # a tower that never sees padding


def test_batched_equals_one_at_a_time(adapter, clips):
    inputs = list(zip(clips, TEXTS))
    batch = adapter.embed_joint("eng", inputs, POINTS)
    for k, item in enumerate(inputs):
        one = adapter.embed_joint("eng", [item], POINTS)
        for modality, points in POINTS.items():
            for p in points:
                assert rel(batch[modality][p][k], one[modality][p][0]) < 1e-5, (modality, p, k)


def test_instruct_chat_template_finds_the_transcript(tmp_path, clips):
    """Qwen2-Audio-Instruct's chat form (Audio Flamingo 3's default template is one already)."""
    checkpoint = Qwen2AudioAdapter.resolve("tiny", tmp_path)
    template = ("<|im_start|>user\nAudio 1: <|audio_bos|><|AUDIO|><|audio_eos|>\n{prompt}<|im_end|>\n"
                "<|im_start|>assistant\n")
    chat = Qwen2AudioAdapter(checkpoint, {"template": template, "prompt": "Repeat: {text}"}, device="cpu")
    ref = reference("qwen2_audio", checkpoint, clips[1], "Repeat: " + TEXTS[1], template)
    st = chat.states([clips[1]], [TEXTS[1]])
    marked = chat.tokenizer.decode(st.input_ids[0][st.transcript[0]])
    assert marked.strip() == TEXTS[1]
    assert st.audio[0, :len(ref["audio"])].numpy().tolist() == ref["audio"].tolist()


def test_bad_input_is_refused_with_its_cause(adapter):
    cls = type(adapter)
    with pytest.raises(ModelError, match=rf"31.0 s is longer than the 30 s {cls.FAMILY}"):
        adapter.states([np.zeros(31 * SR, np.float32)], ["x"])
    with pytest.raises(ModelError, match="at least 2"):
        adapter.states([np.zeros(400, np.float32)], ["x"])
    with pytest.raises(ConfigError, match=r"models\.q\.options\.template.*" + re.escape(cls.PLACEHOLDER)):
        cls.check_options({"template": "{prompt}"}, "models.q.options")
    with pytest.raises(ConfigError, match=r"options\.prompt.*special token <\|endoftext\|>"):
        cls.check_options({"prompt": "{text}<|endoftext|>"}, "options")
    with pytest.raises(ConfigError, match=rf"options\.colour: unknown {cls.FAMILY} option"):
        cls.check_options({"colour": 1}, "options")


def test_spec_and_token_ids_from_the_config(checkpoint, adapter):
    spec = type(adapter).spec(checkpoint, {})
    assert [(p.name, p.width, p.kind) for p in spec.points["speech"][:2]] == [("enc", 32, "encoder"),
                                                                             ("in", 64, "adaptor")]
    assert [p.name for p in spec.points["text"]] == ["in", "1", "2", "out"]
    assert spec.pairs[0] == ("enc", "in", "enc")
    ids = type(adapter).text_tokenizer(checkpoint, {})(TEXTS[0])
    assert adapter.tokenizer.decode(ids) == TEXTS[0]


def test_omni_reads_its_sizes_from_a_whole_omni_config(tmp_path):
    """The hub's Qwen2.5-Omni checkpoints hold the whole model (thinker, talker, vocoder): its thinker's sizes."""
    from transformers import AutoConfig, Qwen2_5OmniConfig

    thinker = Qwen25OmniAdapter.resolve("tiny", tmp_path / "cache")
    Qwen2_5OmniConfig(thinker_config=AutoConfig.from_pretrained(thinker).to_dict()).save_pretrained(tmp_path / "whole")
    whole = Qwen25OmniAdapter.spec(str(tmp_path / "whole"), {})
    assert whole.points == Qwen25OmniAdapter.spec(thinker, {}).points
    assert [p.width for p in whole.points["speech"][:2]] == [32, 64]
    (tmp_path / "other").mkdir()
    AutoConfig.for_model("bert").save_pretrained(tmp_path / "other")
    with pytest.raises(ModelError, match=r"model_type is 'bert', not qwen2_5_omni_thinker or qwen2_5_omni"):
        Qwen25OmniAdapter.spec(str(tmp_path / "other"), {})


def with_options(adapter, **options):
    """The loaded adapter with other options (no reload)."""
    other = type(adapter).__new__(type(adapter))
    other.__dict__.update(adapter.__dict__, options=dict(adapter.options, **options))
    return other


def test_text_alone_equals_the_models_forward_on_the_text_only_sequence(family, checkpoint, adapter, clips):
    """`text_input: alone`: the text side is the model's own forward pass over the template without its audio
    block, tokenised as one string; the speech side stays the joint pass's; batching changes nothing."""
    import transformers

    alone = with_options(adapter, text_input="alone")
    model = getattr(transformers, FAMILIES[family].model).from_pretrained(checkpoint).eval()
    block = type(adapter).AUDIO_BLOCK
    inputs = list(zip(clips, TEXTS))
    batch = alone.embed_joint("eng", inputs, POINTS)
    joint = adapter.embed_joint("eng", inputs, {"speech": POINTS["speech"]})
    for i, text in enumerate(TEXTS):
        whole = adapter.options["template"].replace(block, "").replace("{prompt}", text)
        enc = adapter.tokenizer(whole, add_special_tokens=False, return_offsets_mapping=True, return_tensors="pt")
        at = whole.index(text)
        mask = torch.tensor([b > a and a < at + len(text) and b > at for a, b in enc["offset_mapping"][0].tolist()])
        kept = {}
        hook = model.model.language_model.layers[-1].register_forward_hook(
            lambda m, a, o: kept.update(last=o[0] if isinstance(o, tuple) else o))
        with torch.no_grad():
            hs = model(input_ids=enc["input_ids"], output_hidden_states=True).hidden_states
        hook.remove()
        ref = {"in": hs[0], "1": hs[1], "2": kept["last"], "out": hs[-1]}
        assert adapter.tokenizer.decode(enc["input_ids"][0][mask]) == text
        for p in POINTS["text"]:
            want = ref[p][0][mask].double().mean(0).numpy()
            assert rel(batch["text"][p][i], want) < 1e-5, (p, i)
        for p in POINTS["speech"]:
            assert rel(batch["speech"][p][i], joint["speech"][p][i]) < 1e-9, (p, i)
    one = alone.embed_joint("eng", inputs[1:2], {"text": POINTS["text"]})
    assert all(rel(one["text"][p][0], batch["text"][p][1]) < 1e-5 for p in POINTS["text"])
    differs = adapter.embed_joint("eng", inputs[:1], {"text": ("out",)})["text"]["out"][0]
    assert rel(differs, batch["text"]["out"][0]) > 1e-3  # the joint pass's transcript attends to the audio


def test_weights_load_without_hub_kernels(adapter, tiny):
    """transformers 5 loads with `use_kernels` on by default (layers swapped for Hub kernels on a GPU, which an
    offline compute node cannot fetch): every model crossrep loads has it off."""
    from crossrep.models import adapter_class

    loaded = [adapter, adapter_class("seamless_m4t_v2")(str(tiny), {}, device="cpu")]
    models = [m for a in loaded for m in vars(a).values() if hasattr(m, "use_kernels")]
    assert len(models) >= 3 and not any(m.use_kernels for m in models)
