"""Demo data: FLEURS layout, parallel sentences, espeak-ng speech or labelled synthetic audio."""

import pytest
import json
import shutil

import numpy as np

from crossrep import languages as langs
from crossrep.data.demo import ESPEAK_VOICES, corpus, normalize
from crossrep.data.fleurs import FleursLanguage

pytestmark = pytest.mark.model


def test_corpus_is_parallel_and_covers_the_study_s_languages():
    text = corpus()
    assert set(text) == set(langs.STUDY) and len(langs.STUDY) == 36
    assert {len(v) for v in text.values()} == {48}
    assert all(line.strip() and "\t" not in line for v in text.values() for line in v)
    assert len(ESPEAK_VOICES) == 33 and not {"khm", "lao", "sna"} & set(ESPEAK_VOICES)


def test_demo_layout_gaps_duplicates_and_labels(demo_root):
    meta = json.loads((demo_root / "demo.json").read_text())
    assert meta["speech"]["khm"].startswith("synthetic")
    if shutil.which("espeak-ng"):
        assert meta["speech"]["eng"] == "espeak-ng voice en-us"
    for iso in ("eng", "deu", "fra", "khm"):
        lang = FleursLanguage(demo_root, iso, "test", 0)
        ids = list(lang.sentences)
        assert len(ids) == 23 and ids == sorted(ids)  # one sentence missing per language
        rows = (demo_root / langs.get(iso).fleurs / "test.tsv").read_text().splitlines()
        assert len(rows) > len(ids)  # some sentences have two utterances
        waves = lang.audio(ids[:3])
        assert all(w.dtype == np.float32 and len(w) > 8000 for w in waves)
    eng = FleursLanguage(demo_root, "eng", "test", 0)
    assert eng.texts([1660])[0] == normalize(corpus()["eng"][0])
    assert normalize("Hello, World!  Ça va?") == "hello world ça va"
