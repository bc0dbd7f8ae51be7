"""The logit lens at audio positions (crossrep.models.lens) on a tiny Qwen2-Audio: against a direct computation
from the model's own `output_hidden_states`, norm and LM head, and on an LM head built so that known audio
positions map to known tokens."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crossrep.models.lens import FIELDS, LensRequest
from crossrep.models.qwen2_audio import Qwen2AudioAdapter

pytestmark = pytest.mark.model

SR = 16_000
TEXTS = ["the dog ran home today", "wir sind letztes wochenende mit dem zug gefahren"]


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    return Qwen2AudioAdapter(Qwen2AudioAdapter.resolve("tiny", tmp_path_factory.mktemp("q")), {}, device="cpu")


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [(0.1 * rng.standard_normal(int(s * SR))).astype(np.float32) for s in (2.5, 2.4)]


def transcript_ids(adapter, clip, text) -> list[int]:
    st = adapter.states([clip], [text])
    return st.input_ids[0][st.transcript[0]].tolist()


def direct(logp: np.ndarray, own: list[int], k: int) -> tuple[float, float]:
    """(recall@k, mean best log-probability) by the definitions: a token is in a position's top-k when fewer than k
    tokens have a strictly larger log-probability there."""
    ids = sorted(set(own))
    found = [any((row > row[t]).sum() < k for row in logp) for t in ids]
    return float(np.mean(found)), float(np.mean([logp[:, t].max() for t in ids]))


def test_lens_equals_the_models_own_norm_and_head_on_its_hidden_states(adapter, clips):
    import transformers

    points = ("in", "1", "2", "out")
    own = [transcript_ids(adapter, c, t) for c, t in zip(clips, TEXTS)]
    partner = (tuple(own[1]), tuple(own[0]))  # sentence i scored with sentence i + 1's transcript
    got = adapter.embed_joint("eng", list(zip(clips, TEXTS)), {"speech": ("in",)}, LensRequest(points, 5, partner))
    model = transformers.Qwen2AudioForConditionalGeneration.from_pretrained(adapter.checkpoint).eval()
    proc = transformers.AutoProcessor.from_pretrained(adapter.checkpoint)
    norm, head = model.model.language_model.norm, model.lm_head
    for i, (clip, text) in enumerate(zip(clips, TEXTS)):
        inputs = proc(text=[adapter.options["template"].replace("{prompt}", text)], audio=[clip], sampling_rate=SR,
                      return_tensors="pt")
        kept = {}
        hook = model.model.language_model.layers[-1].register_forward_hook(lambda m, a, o: kept.update(last=o))
        with torch.no_grad():
            hs = model(**inputs, output_hidden_states=True).hidden_states
        hook.remove()
        audio = inputs["input_ids"][0] == model.config.audio_token_id
        states = {"in": hs[0], "1": hs[1], "2": kept["last"][0] if isinstance(kept["last"], tuple) else kept["last"],
                  "out": hs[-1]}
        for p in points:
            h = states[p][0][audio]
            with torch.no_grad():
                logits = head(h if p == "out" else norm(h)).double()
                mean_logits = head(h.mean(0) if p == "out" else norm(h.mean(0))).double()
            logp = logits.log_softmax(-1).numpy()
            want = []
            for target in (own[i], own[1 - i]):
                r1, lp = direct(logp, target, 1)
                r10, _ = direct(logp, target, 10)
                r5, _ = direct(logp, target, 5)
                want += [r1, r10, r5, lp]
            scores = got["speech"][f"lens_{p}"][i]
            assert scores.shape == (len(FIELDS),)
            for f, a, b in zip(FIELDS, scores, want):
                tol = 1e-5 * max(1.0, abs(b)) if "logprob" in f else 0.0
                assert abs(a - b) <= tol, (p, i, f, a, b)
            assert got["speech"][f"lenstop_{p}"][i].tolist() == mean_logits.topk(5).indices.tolist()


def test_planted_head_gives_the_constructed_recall(adapter, clips):
    """An LM head built on the "out" states of sentence 0's audio positions: planted transcript tokens score 2 at
    one chosen audio position each and -1 elsewhere, the other transcript tokens -1 everywhere, ten decoys 0
    everywhere, every other token -2. Recall@1 = recall@10 = planted / distinct; the logprob is what these logits
    give; the partner's recall counts the planted tokens it shares."""
    clip, text = clips[0], TEXTS[0]
    st = adapter.states([clip], [text])
    h = st.out[0][st.audio[0]].double()  # (62, 64): fewer positions than the width, so any logits are reachable
    n_audio = h.shape[0]
    own = sorted(set(st.input_ids[0][st.transcript[0]].tolist()))
    partner = sorted(set(transcript_ids(adapter, clips[1], TEXTS[1])))
    vocab = adapter.model.lm_head.weight.shape[0]
    planted = {own[0]: 5, own[2]: 40}  # token -> audio position where it is the top token
    decoys = [t for t in range(vocab) if t not in own and t not in partner][:10]

    def solve(target: np.ndarray) -> np.ndarray:  # w with h @ w = target
        return np.linalg.lstsq(h.numpy(), target, rcond=None)[0]

    ones = solve(np.ones(n_audio))
    logits = np.full((vocab, n_audio), -2.0)
    rows = np.tile(-2 * ones, (vocab, 1))
    for t in own:
        rows[t], logits[t] = -ones, -1.0
    for t, j in planted.items():
        rows[t] = -ones + 3 * solve(np.eye(n_audio)[j])
        logits[t, j] = 2.0
    rows[decoys], logits[decoys] = 0.0, 0.0
    saved = adapter.model.lm_head.weight
    try:
        adapter.model.lm_head.weight = torch.nn.Parameter(torch.tensor(rows, dtype=torch.float32))
        got = adapter.embed_joint("eng", [(clip, text)], {"speech": ("out",)},
                                  LensRequest(("out",), 5, (tuple(partner),)))
    finally:
        adapter.model.lm_head.weight = saved
    scores = dict(zip(FIELDS, got["speech"]["lens_out"][0]))
    assert scores["recall_1"] == scores["recall_10"] == scores["recall_k"] == 2 / len(own)
    logp = logits.T - np.log(np.exp(logits.T).sum(1, keepdims=True))  # (positions, vocabulary)
    assert abs(scores["logprob"] - np.mean([logp[:, t].max() for t in own])) < 1e-4
    shared = len(set(planted) & set(partner)) / len(partner)
    assert scores["chance_recall_1"] == scores["chance_recall_10"] == shared
    assert abs(scores["chance_logprob"] - np.mean([logp[:, t].max() for t in partner])) < 1e-4


def test_lens_settings_are_checked_naming_the_key(make_job):
    from crossrep.config import load_job
    from crossrep.errors import ConfigError
    from crossrep.plan import store_plan

    with pytest.raises(ConfigError, match=r"analysis\.lens\.models: no model named 'nope'"):
        load_job(make_job(**{"analysis.lens": {"models": ["nope"]}}))
    with pytest.raises(ConfigError, match=r"analysis\.lens\.k: .*"):
        load_job(make_job(**{"analysis.lens": {"models": ["seamless"], "k": 0}}))
    with pytest.raises(ConfigError, match=r"analysis\.lens\.colour"):
        load_job(make_job(**{"analysis.lens": {"colour": 1}}))
    job = load_job(make_job(**{"analysis.lens": {"models": ["seamless"]}}))
    with pytest.raises(ConfigError, match=r"analysis\.lens\.models: seamless \(seamless_m4t_v2\) has no LM head"):
        store_plan(job, progress=False)
    job = load_job(make_job(**{"models.0.adapter": "qwen2_audio", "models.0.checkpoint": "tiny",
                               "analysis.lens": {"models": ["seamless"], "points": ["enc"]}}))
    with pytest.raises(ConfigError, match=r"analysis\.lens\.points: seamless has no decoder point 'enc'; it "
                                          r"offers in, 1, 2, out"):
        store_plan(job, progress=False)
