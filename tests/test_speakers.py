"""`data.utterances: all`: every recording of a key extracted as its own row with its speaker, the comparisons on
each key's kept recording (the numbers of `one`), and `similarity.speakers` redraws of the recording per key
whose shared variance joins the findings' tests (the report says which scheme was used)."""

from __future__ import annotations

import contextlib
import csv
import html
import io
import json

import numpy as np
import pytest
import yaml

import crossrep
from crossrep import results, stats
from crossrep.analysis import findings
from crossrep.config import load_job
from crossrep.data.fleurs import read_tsv
from crossrep.errors import ConfigError
from crossrep.launch import launcher
from crossrep.store import ActivationStore, ShardKey

pytestmark = pytest.mark.unit


def _run(tmp_path, demo_root, tiny, name, **changes):
    from conftest import job_dict

    path = tmp_path / f"{name}.yaml"
    settings = {"executor.kind": "debug", "extract.batch_size": 1, "similarity.measures": ["svcca", "cka"],
                **changes}
    path.write_text(yaml.safe_dump(job_dict(tmp_path / name, demo_root, tiny, **settings)))
    job = load_job(path)
    with contextlib.redirect_stderr(io.StringIO()):
        launcher(job).run()
    return job


@pytest.fixture(scope="module")
def runs(tmp_path_factory, demo_root, tiny):
    """The same small job with one recording per key and with every recording and 3 speaker redraws (batches of
    one clip, so a recording's activations cannot depend on what it is batched with)."""
    tmp = tmp_path_factory.mktemp("speakers")
    one = _run(tmp, demo_root, tiny, "one")
    every = _run(tmp, demo_root, tiny, "all", **{"data.utterances": "all", "similarity.speakers": 3})
    return one, every


@pytest.mark.e2e
def test_every_recording_is_a_row_with_its_speaker_and_the_kept_ones_equal_one(runs, demo_root):
    one, every = runs
    a, b = ActivationStore(one.out), ActivationStore(every.out)
    plan = b.model("seamless")
    several = 0
    for lang in plan.languages:
        tsv = read_tsv(demo_root / crossrep.languages.get(lang).fleurs / "test.tsv")
        wanted = set(plan.shard_ids[lang])
        files = sorted(u.file for u in tsv if u.id in wanted)
        key = ShardKey("seamless", "speech", lang)
        ids = b.ids(key)
        assert len(ids) == len(files) > len(wanted)  # the demo reads every 5th sentence twice
        assert np.all(np.diff(ids) >= 0) and set(ids.tolist()) == wanted
        group = b.root[str(key)]
        assert sorted(str(f) for f in group["recording"][:]) == files
        assert len(group["speaker"][:]) == len(ids)
        several += len(ids) - len(wanted)
        for point in b.points(key):
            kept = b.read(key, point, list(plan.shard_ids[lang]))
            assert np.array_equal(kept, a.read(key, point))  # max |diff| 0
            assert b.read(key, point).shape[0] == len(ids)
        for point in b.points(ShardKey("seamless", "text", lang)):
            text = ShardKey("seamless", "text", lang)
            assert np.array_equal(b.read(text, point), a.read(text, point))
    assert several >= 4
    sa, sb = results.open_model(one.out, "seamless"), results.open_model(every.out, "seamless")
    for name in ("crossmodal", "text", "speech", "text_speech"):
        assert np.array_equal(sa[name].values, sb[name].values, equal_nan=True)  # the scores of `one`
        assert results.var(name, results.Part.SPEAKERS) not in sa
    assert sb.attrs["utterances"] == "all" and sb.attrs["speakers"] == 3
    import pandas as pd

    table, means = pd.read_csv(every.out / "similarity.csv"), pd.read_csv(every.out / "means.csv")
    tested = table[table.family.isin(["crossmodal", "text", "speech"])]  # the families the findings test
    assert tested[["speakers_low", "speakers_high"]].notna().all().all()
    assert (tested.speakers_low <= tested.speakers_high).all() and (tested.speakers_high > tested.speakers_low).any()
    assert means[means.family == "crossmodal"][["speakers_low", "speakers_high"]].notna().all().all()
    assert "speakers_low" not in pd.read_csv(one.out / "similarity.csv")


@pytest.mark.e2e
def test_a_speaker_redraw_is_the_measure_on_the_redrawn_recordings(runs):
    """Recompute one redraw's cross-modal SVCCA directly: the redrawn rows from their definition, the measure from
    crossrep.compare."""
    _, every = runs
    store = ActivationStore(every.out)
    plan = store.model("seamless")
    ds = results.open_model(every.out, "seamless")
    redraws = ds[results.var("crossmodal", results.Part.SPEAKERS)].sel(measure="svcca")
    assert redraws.sizes["draw"] == 3
    label, text_point, speech_point = plan.pairs[-1]
    moved = 0
    for lang in plan.languages:
        ids = np.array(plan.crossmodal_ids[lang])
        key = ShardKey("seamless", "speech", lang)
        stored = store.ids(key)
        text = store.read(ShardKey("seamless", "text", lang), text_point, ids).astype(np.float64)
        for s in range(3):
            keys, first, counts = np.unique(stored, return_index=True, return_counts=True)
            u = stats.rng(every.similarity.seed, "speakers", lang, s).random(len(keys))
            rows = [first[list(keys).index(i)] + int(np.floor(u[list(keys).index(i)] * counts[list(keys).index(i)]))
                    for i in ids]
            speech = store.read(key, speech_point)[rows].astype(np.float64)
            expected = crossrep.compare(text, speech, "svcca", permutations=2, jackknife=2).score
            got = float(redraws.sel(pair=label, lang=lang, draw=s))
            assert got == pytest.approx(expected, abs=1e-10)
            moved += not np.isclose(got, float(ds["crossmodal"].sel(measure="svcca", pair=label, lang=lang)))
    assert moved > 0  # some redraw picked another recording somewhere


@pytest.mark.e2e
def test_findings_and_report_name_the_speaker_scheme(runs, monkeypatch):
    """The report says which scheme each run used; the findings' tests of the run with redraws have a speaker
    part (with 3 of the 4 languages enough to test, for this small job)."""
    monkeypatch.setattr(findings, "MIN_LANGUAGES", 3)
    said = {}
    for job in runs:
        data = json.loads((job.out / "findings.json").read_text())
        said[job.data.utterances] = data["speakers"]
        assert data["speakers"] in html.unescape((job.out / "report" / "index.html").read_text())
        ds = results.open_model(job.out, "seamless")
        tested = findings.test_model(ds, "seamless", "seamless_m4t_v2")
        cases = [c for *_, c in tested if isinstance(c, findings.Case)]
        rows = [r for r in findings.decide(tested, 0.05, {}) if r.p_value is not None]
        assert cases and rows
        if job.data.utterances == "all":
            assert all(len(c.redraws) == 3 for c in cases)
            assert any(not np.array_equal(r[k], c.main[k], equal_nan=True)
                       for c in cases for r in c.redraws for k in c.main)
            assert all(r.se_speakers is not None and r.se_speakers >= 0 for r in rows)
        else:
            assert all(not c.redraws for c in cases) and all(r.se_speakers is None for r in rows)
    assert "one recording per key" in said["one"] and "3 redraws" in said["all"]


def test_speaker_redraws_need_every_recording(tmp_path, demo_root, tiny):
    from conftest import job_dict

    def load(**changes):
        path = tmp_path / "job.yaml"
        path.write_text(yaml.safe_dump(job_dict(tmp_path / "out", demo_root, tiny, **changes)))
        return load_job(path)

    with pytest.raises(ConfigError, match=r"similarity.speakers: 3 .* data.utterances: all \(it is one\)"):
        load(**{"similarity.speakers": 3})
    with pytest.raises(ConfigError, match="similarity.speakers: 1 redraw"):
        load(**{"data.utterances": "all", "similarity.speakers": 1})
    with pytest.raises(ConfigError, match="data.utterances"):
        load(**{"data.utterances": "some"})
    job = load(**{"data.utterances": "all"})
    assert job.data.utterances == "all" and job.similarity.speakers == 0


def test_recording_rows_draw_each_keys_recordings_uniformly_and_alike_across_families():
    stored = np.array([3, 3, 5, 8, 8, 8, 9])
    counts = {3: [0, 0], 8: [0, 0, 0]}
    for s in range(3000):
        rows = stats.recording_rows(stored, np.array([3, 5, 8, 9]), 0, "eng", s)
        assert rows[1] == 2 and rows[3] == 6 and 0 <= rows[0] <= 1 and 3 <= rows[2] <= 5
        counts[3][rows[0]] += 1
        counts[8][rows[2] - 3] += 1
        # another family's ids (a subset) get the same recordings in the same redraw
        assert np.array_equal(stats.recording_rows(stored, np.array([8]), 0, "eng", s), rows[2:3])
    assert np.allclose(np.array(counts[3]) / 3000, 1 / 2, atol=0.03)
    assert np.allclose(np.array(counts[8]) / 3000, 1 / 3, atol=0.03)
    other = [stats.recording_rows(stored, np.array([8]), 0, "deu", s)[0] for s in range(200)]
    mine = [stats.recording_rows(stored, np.array([8]), 0, "eng", s)[0] for s in range(200)]
    assert other != mine  # languages draw independently


def test_the_lens_pairs_a_recording_with_another_sentence_never_its_own():
    from crossrep.extract import Lens

    class Plan:
        lens, lens_k, checkpoint, options = ("p",), 4, None, {}

    class Words:
        @staticmethod
        def text_tokenizer(checkpoint, options):
            return lambda text: [len(w) for w in text.split()]

    keys = [1, 1, 2, 3, 3, 3]
    texts = ["a", "a", "bb", "ccc", "ccc", "ccc"]
    lens = Lens.of(Plan, Words, list(range(6)), keys, texts, "x")
    assert [lens.partner[r] for r in range(6)] == [(2,), (2,), (3,), (1,), (1,), (1,)]


# ---------------------------------------------------------------- the speaker component's statistics


def _case(values: np.ndarray, redraws: list[np.ndarray]) -> findings.Case:
    """Per-language values and their redraws; the statistic: their mean."""
    return findings.Case({"d": values}, [], lambda a, idx: float(np.mean(a["d"][idx])), len(values), "",
                         redraws=[{"d": r} for r in redraws])


def test_speaker_component_is_the_shared_redraw_variance():
    """Redraws = a shared term (the same for every language) + each language's own term, both drawn afresh per
    redraw as the main value's were: the component estimates the shared term's variance of the mean (1), not
    the own terms' (9 / n), and is about 0 without a shared term."""
    n, s = 12, 400
    g = np.random.default_rng(3)
    shared, own = g.normal(0, 1, s + 1), g.normal(0, 3, (s + 1, n))
    values = [shared[k] + own[k] for k in range(s + 1)]
    case = _case(values[0], values[1:])
    comp = findings.shared_component(case, case.redraws, "speakers", findings.REDRAW)
    assert comp.source == "speakers" and comp.df == s
    assert comp.variance == pytest.approx(1.0, rel=0.25)
    alone = [own[k] for k in range(s + 1)]
    case = _case(alone[0], alone[1:])
    none = findings.shared_component(case, case.redraws, "speakers", findings.REDRAW)
    assert none.variance < 0.15 * 9 / n


@pytest.mark.parametrize("shared_sd", [0.0, 0.6])
def test_speaker_tests_are_calibrated_with_the_language_jackknife(shared_sd):
    """No effect; each language's value = its language effect + its speakers' effect (drawn per redraw), and
    with shared_sd > 0 a speaker effect that moves every language alike. With 8 redraws the test's false
    verdicts stay within alpha + 2 standard errors over 600 simulations; without the speaker component, the
    shared case exceeds it (so this test fails when the component is left out)."""
    n, s, seeds, alpha = 12, 8, 600, 0.05
    full = languages_only = 0
    for seed in range(seeds):
        g = np.random.default_rng(seed)
        lang = g.normal(0, 1, n)
        draws = [lang + g.normal(0, 0.5, n) + shared_sd * g.normal() for _ in range(s + 1)]
        case = _case(draws[0], draws[1:])
        t = findings.evaluate(case)
        full += t.p < alpha
        languages_only += stats.t_test(t.estimate, [c for c in t.components if c.source == "languages"]).p < alpha
    limit = alpha + 2 * np.sqrt(alpha * (1 - alpha) / seeds)
    assert full / seeds <= limit
    if shared_sd:
        assert languages_only / seeds > limit


@pytest.mark.e2e
def test_a_joint_audio_llm_with_the_lens_extracts_every_recording(tmp_path, demo_root):
    """Qwen2-Audio (a joint adapter: one forward per (clip, transcript)) with the logit lens: with every recording,
    text and speech are extracted as separate shards, the kept recordings' activations and lens records equal
    those of one recording per key (batches of one), lens records included."""
    from crossrep.extract import run_all
    from crossrep.lensdata import dataset as lens_dataset
    from crossrep.plan import create_store, units

    stores = {}
    for mode in ("one", "all"):
        job = {"name": mode, "out": str(tmp_path / mode),
               "data": {"root": str(demo_root), "languages": ["eng", "deu"], "crossmodal_sentences": 8,
                        "crosslingual_sentences": 6, "utterances": mode},
               "models": [{"name": "qwen", "adapter": "qwen2_audio", "checkpoint": "tiny"}],
               "extract": {"batch_size": 1, "chunk_size": 4, "device": "cpu", "threads": 1, "feature_workers": 0},
               "similarity": {"measures": ["svcca"], "jackknife": 2},
               "analysis": {"lens": {"models": ["qwen"], "points": ["out"], "k": 3}},
               "executor": {"kind": "debug"}}
        path = tmp_path / f"{mode}.yaml"
        path.write_text(yaml.safe_dump(job))
        job = load_job(path)
        assert len(units(job, list(range(4)))) == (2 if mode == "one" else 4)
        with contextlib.redirect_stderr(io.StringIO()):
            create_store(job, progress=False)
            run_all(job, progress=False)
        stores[mode] = ActivationStore(job.out)
    one, every = stores["one"], stores["all"]
    plan = every.model("qwen")
    for lang in ("eng", "deu"):
        key = ShardKey("qwen", "speech", lang)
        assert len(every.ids(key)) > len(plan.shard_ids[lang])
        for point in (*every.points(key), "lens_out", "lenstop_out"):
            assert np.array_equal(every.read(key, point, list(plan.shard_ids[lang])), one.read(key, point)), point
        text = ShardKey("qwen", "text", lang)
        for point in every.points(text):
            assert np.array_equal(every.read(text, point), one.read(text, point))
    a, b = lens_dataset(one, "qwen"), lens_dataset(every, "qwen")
    assert a.equals(b)


def test_a_manifest_s_speakers_are_planned_and_summarised(tmp_path, demo_root, make_job):
    """A manifest with a speaker column (two readers; every 5th key read by both): with every recording the plan
    records each row's key, file and speaker, the kept one first, and `crossrep plan`'s summary counts them."""
    import corpora
    from crossrep.plan import corpus_summary, store_plan

    manifest = corpora.to_manifest(demo_root, tmp_path / "m" / "corpus.csv", ["eng", "deu", "fra", "khm"])
    with manifest.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    seen: dict = {}
    for cells in rows[1:]:
        seen[cells[0], cells[1]] = seen.get((cells[0], cells[1]), 0) + 1
        cells[4] = f"{cells[1]}-reader{seen[cells[0], cells[1]]}"
    with manifest.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    job = load_job(make_job("plan", **{"data.root": str(manifest), "data.format": "manifest",
                                       "data.utterances": "all"}))
    with contextlib.redirect_stderr(io.StringIO()):
        plan = store_plan(job, progress=False).model("seamless")
    rows = plan.recordings["eng"]
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)
    assert {r[0] for r in rows} == set(plan.shard_ids["eng"]) and len(rows) > len(plan.shard_ids["eng"])
    assert {r[2] for r in rows} == {"eng-reader1", "eng-reader2"}
    kept = crossrep.data.corpus.open_language(job.data, "eng").sentences
    firsts = {}
    for sid, f, _ in rows:
        firsts.setdefault(sid, f)
    assert all(kept[sid].file == f for sid, f in firsts.items())  # the kept recording leads its key's rows
    summary = "\n".join(corpus_summary(job))
    assert "recordings, 2 speakers" in summary


@pytest.mark.model
def test_finding4_with_speaker_redraws_is_calibrated_through_the_reduction():
    """Finding 4's null (text and speech equally aligned across languages, shared sentence components) with two
    readers per language whose voices move every recording they read, every recording stored and 4 speaker
    redraws, through the real reduction graph: the false verdicts stay within alpha + 2 standard errors over 100
    simulations, the speaker part is measured in every test, and the redraws move the cells."""
    import synthetic

    shared, plan = synthetic.shared_sentences, synthetic.finding4_plan()
    alpha, seeds = 0.05, 100
    false = 0
    spread = []
    for seed in range(seeds):
        store = synthetic.SpeakerStore(plan, shared, 2000 + seed, voice=0.5)
        with contextlib.redirect_stderr(io.StringIO()):
            ds = results.model_dataset(synthetic.cal_job(("cka_debiased",), 4, 10, 2000 + seed, speakers=4), store,
                                       "sim")
        case = next(c for _, _, f, _, c in findings.test_model(ds, "sim", "seamless_m4t_v2") if f.id == 4)
        assert len(case.redraws) == 4
        t = findings.evaluate(case)
        assert [c.source for c in t.components][-1] == "speakers"
        false += t.p < alpha
        spread.append(float(ds["speech_speakers"].std("draw").mean()))
    limit = alpha + 2 * np.sqrt(alpha * (1 - alpha) / seeds)
    print("finding 4 with speaker redraws: false verdicts", false / seeds, "limit", limit,
          "mean redraw sd of speech cells", np.mean(spread))
    assert false / seeds <= limit
    assert np.mean(spread) > 1e-3
