"""Qwen2-Audio adapter on a tiny random model in the hub's layout, against the model's own transformers forward
pass with the family's own processor (ids expanded by the processor, `output_hidden_states=True`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crossrep.errors import ConfigError, ModelError
from crossrep.models.qwen2_audio import Qwen2AudioAdapter

SR = 16_000
TEXTS = ["the dog ran home today", "wir sind letztes wochenende mit dem zug gefahren", "ព្រះអាទិត្យរះឆាប់"]
POINTS = {"text": ("in", "1", "2", "out"), "speech": ("enc", "in", "1", "2", "out")}


def rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    return Qwen2AudioAdapter.resolve("tiny", tmp_path_factory.mktemp("qwen2_audio"))


@pytest.fixture(scope="module")
def adapter(checkpoint) -> Qwen2AudioAdapter:
    return Qwen2AudioAdapter(checkpoint, {}, device="cpu")


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [(0.1 * rng.standard_normal(int(s * SR))).astype(np.float32) for s in (2.5, 7.0, 4.3)]


def reference(checkpoint: str, wave: np.ndarray, text: str, template: str) -> dict:
    """One clip through the processor and the full model; positions found on the processor's expanded text."""
    from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

    proc = AutoProcessor.from_pretrained(checkpoint)
    model = Qwen2AudioForConditionalGeneration.from_pretrained(checkpoint).eval()
    prompt = template.replace("{prompt}", text)
    inputs = proc(text=[prompt], audio=[wave], sampling_rate=SR, return_tensors="pt")
    kept = {}
    handles = [model.model.audio_tower.register_forward_hook(lambda m, a, o: kept.update(enc=o.last_hidden_state)),
               model.model.language_model.layers[-1].register_forward_hook(
                   lambda m, a, o: kept.update(last=o[0] if isinstance(o, tuple) else o))]
    with torch.no_grad():
        out = model(**inputs, output_hidden_states=True)
    for h in handles:
        h.remove()
    ids = inputs["input_ids"][0]
    audio = (ids == model.config.audio_token_id).numpy()
    expanded = proc.tokenizer.decode(ids)
    at = expanded.rindex(text)
    enc = proc.tokenizer(expanded, add_special_tokens=False, return_offsets_mapping=True)
    assert enc["input_ids"] == ids.tolist()  # the expanded text tokenises back to the processor's ids
    transcript = np.array([b > a and a < at + len(text) and b > at for a, b in enc["offset_mapping"]])
    hs = out.hidden_states
    states = {"in": hs[0], "1": hs[1], "2": kept["last"], "out": hs[-1]}
    n = int(audio.sum())
    return {"audio": audio, "transcript": transcript, "ids": ids,
            "speech": {p: v[0][torch.from_numpy(audio)].double().mean(0).numpy() for p, v in states.items()}
            | {"enc": kept["enc"][0].double().mean(0).numpy(), "enc_clip": kept["enc"][0, :n].double().mean(0).numpy()},
            "text": {p: v[0][torch.from_numpy(transcript)].double().mean(0).numpy() for p, v in states.items()}}


def test_positions_on_a_hand_checked_example(adapter, clips):
    """2.5 s -> ceil(40000 / 160) = 250 mel frames -> 125 -> 62 audio tokens; template
    <|audio_bos|> AUDIO x 62 <|audio_eos|> transcript: audio at 1..62, the transcript from 64 to the end."""
    st = adapter.states([clips[0]], ["the dog"])
    audio = torch.nonzero(st.audio[0]).flatten().tolist()
    assert audio == list(range(1, 63))
    transcript = torch.nonzero(st.transcript[0]).flatten().tolist()
    n = int(st.valid[0].sum())
    assert transcript == list(range(64, n))
    assert adapter.tokenizer.decode(st.input_ids[0, 64:n]) == "the dog"
    assert adapter.tokenizer.convert_ids_to_tokens(int(st.input_ids[0, 63])) == "<|audio_eos|>"
    assert int(st.enc_speech[0].sum()) == 62 and st.enc.shape[1] == 750


@pytest.mark.parametrize("i", range(3))
def test_pooled_states_equal_the_models_own_forward(checkpoint, adapter, clips, i):
    ref = reference(checkpoint, clips[i], TEXTS[i], adapter.options["template"])
    st = adapter.states([clips[i]], [TEXTS[i]])
    n = int(st.valid[0].sum())
    assert st.input_ids[0, :n].tolist() == ref["ids"].tolist()
    assert st.audio[0, :n].numpy().tolist() == ref["audio"].tolist()
    assert st.transcript[0, :n].numpy().tolist() == ref["transcript"].tolist()
    out = adapter.embed_joint("eng", [(clips[i], TEXTS[i])], POINTS)
    for modality, points in POINTS.items():
        for p in points:
            assert rel(out[modality][p][0], ref[modality][p]) < 1e-5, (modality, p)
    clip_only = Qwen2AudioAdapter.__new__(Qwen2AudioAdapter)
    clip_only.__dict__.update(adapter.__dict__, options=dict(adapter.options, audio_positions="speech"))
    enc = clip_only.embed_joint("eng", [(clips[i], TEXTS[i])], {"speech": ("enc",)})["speech"]["enc"][0]
    assert rel(enc, ref["speech"]["enc_clip"]) < 1e-5
    assert rel(enc, ref["speech"]["enc"]) > 1e-3  # the padding frames change the "all" pooling


def test_batched_equals_one_at_a_time(adapter, clips):
    inputs = list(zip(clips, TEXTS))
    batch = adapter.embed_joint("eng", inputs, POINTS)
    for k, item in enumerate(inputs):
        one = adapter.embed_joint("eng", [item], POINTS)
        for modality, points in POINTS.items():
            for p in points:
                assert rel(batch[modality][p][k], one[modality][p][0]) < 1e-5, (modality, p, k)


def test_instruct_chat_template_finds_the_transcript(checkpoint, clips):
    template = ("<|im_start|>user\nAudio 1: <|audio_bos|><|AUDIO|><|audio_eos|>\n{prompt}<|im_end|>\n"
                "<|im_start|>assistant\n")
    chat = Qwen2AudioAdapter(checkpoint, {"template": template, "prompt": "Repeat: {text}"}, device="cpu")
    ref = reference(checkpoint, clips[1], "Repeat: " + TEXTS[1], template)
    st = chat.states([clips[1]], [TEXTS[1]])
    marked = chat.tokenizer.decode(st.input_ids[0][st.transcript[0]])
    assert marked.strip() == TEXTS[1]
    assert st.audio[0, :len(ref["audio"])].numpy().tolist() == ref["audio"].tolist()


def test_bad_input_is_refused_with_its_cause(checkpoint, adapter):
    with pytest.raises(ModelError, match=r"31.0 s is longer than the 30 s Qwen2-Audio"):
        adapter.states([np.zeros(31 * SR, np.float32)], ["x"])
    with pytest.raises(ModelError, match="at least 2"):
        adapter.states([np.zeros(400, np.float32)], ["x"])
    with pytest.raises(ConfigError, match=r"models\.q\.options\.template.*<\|AUDIO\|>"):
        Qwen2AudioAdapter.check_options({"template": "{prompt}"}, "models.q.options")
    with pytest.raises(ConfigError, match=r"options\.prompt.*special token <\|endoftext\|>"):
        Qwen2AudioAdapter.check_options({"prompt": "{text}<|endoftext|>"}, "options")
    with pytest.raises(ConfigError, match=r"options\.colour: unknown Qwen2-Audio option"):
        Qwen2AudioAdapter.check_options({"colour": 1}, "options")


def test_spec_and_token_ids_from_the_config(checkpoint, adapter):
    spec = Qwen2AudioAdapter.spec(checkpoint, {})
    assert [(p.name, p.width, p.kind) for p in spec.points["speech"][:2]] == [("enc", 32, "encoder"),
                                                                             ("in", 64, "adaptor")]
    assert [p.name for p in spec.points["text"]] == ["in", "1", "2", "out"]
    assert spec.pairs[0] == ("enc", "in", "enc")
    ids = Qwen2AudioAdapter.text_tokenizer(checkpoint, {})(TEXTS[0])
    assert adapter.tokenizer.decode(ids) == TEXTS[0]
