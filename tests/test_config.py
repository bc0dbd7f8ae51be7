"""Job specs: defaults, overrides from the command line, and errors that quote the YAML key."""

import pytest
import yaml

from crossrep import languages as langs
from crossrep.cli import check_job
from crossrep.config import apply_override, load_job
from crossrep.errors import ConfigError

pytestmark = pytest.mark.unit


def test_bundled_jobs_load():
    demo = load_job("demo")
    assert demo.name == "demo" and len(demo.data.languages) == 12 and demo.models[0].checkpoint == "tiny"
    assert demo.models[0].points == {"text": None, "speech": None}
    seamless, sonar, salmonn, qwen2_audio, omni = demo.models
    assert sonar.adapter == "sonar" and salmonn.adapter == "salmonn"
    assert (qwen2_audio.adapter, omni.adapter) == ("qwen2_audio", "qwen2_5_omni")
    # every model runs the demo's 12 languages, 4 per resource level, all in the study's sets of both
    assert all(m.languages == demo.data.languages for m in demo.models)
    assert set(demo.data.languages) <= set(langs.expand("paper", "x")) & set(langs.expand("paper-sonar", "x"))
    assert sorted(langs.get(c).level for c in demo.data.languages) == ["high"] * 4 + ["low"] * 4 + ["medium"] * 4
    assert demo.retrieval.scorings == ("cosine", "margin") and demo.probes.enabled


def test_paper_job_spells_out_the_study(monkeypatch, tmp_path):
    monkeypatch.setenv("FLEURS_ROOT", str(tmp_path / "fleurs"))
    monkeypatch.setenv("CROSSREP_OUT", str(tmp_path / "out"))
    monkeypatch.setenv("SONAR_DIR", "/sonar")
    monkeypatch.setenv("SALMONN_DIR", "/salmonn")
    job = load_job("paper")
    assert job.data.crossmodal_sentences == 251 and job.data.crosslingual_sentences == 194
    assert len(job.data.languages) == 36 and job.data.split == "test" and job.data.root == tmp_path / "fleurs"
    seamless = job.model("seamless")
    assert seamless.checkpoint == "facebook/seamless-m4t-v2-large" and len(seamless.languages) == 30
    assert seamless.points["text"][:4] == ("in", "1", "2", "4") and seamless.points["speech"][-1] == "len"
    assert job.similarity.variance == 0.9 and job.similarity.epsilon == 1e-10
    sonar = job.model("sonar")
    assert sonar.crosslingual_sentences == 192 and set(sonar.checkpoint["speech"]) == set(sonar.languages)
    assert sonar.checkpoint["speech"]["cmn"] == "/sonar/spenc.v5ap.cmn.pt"
    salmonn = job.model("salmonn")
    assert salmonn.checkpoint["salmonn"] == "/salmonn/salmonn_7b_v0.pth" and salmonn.points["speech"][0] == "enc"


def test_paper_job_names_unset_environment_variable(monkeypatch):
    monkeypatch.delenv("CROSSREP_OUT", raising=False)
    with pytest.raises(ConfigError, match=r"out: '\$\{CROSSREP_OUT\}/paper' uses an environment variable"):
        load_job("paper")


def test_overrides_are_yaml_values():
    job = load_job("demo", ["extract.batch_size=1", "data.languages=[eng,deu]", "models.0.checkpoint=/x/y",
                            "models.0.languages=[eng,deu]", "models.1.languages=[eng,deu]",
                            "models.2.languages=[eng,deu]", "models.3.languages=[eng,deu]",
                            "models.4.languages=[eng,deu]", "similarity.epsilon=1e-6"])
    assert job.extract.batch_size == 1 and job.data.languages == ("eng", "deu")
    assert job.models[0].checkpoint == "/x/y" and job.models[0].languages == ("eng", "deu")
    assert job.similarity.epsilon == 1e-6
    with pytest.raises(ConfigError, match=r"models\[0\].languages: amh, arb, .* not in data.languages"):
        load_job("demo", ["data.languages=[eng,deu]", "models.0.languages=paper"])


@pytest.mark.parametrize("override, message", [
    ("extract.batch_size=0", r"extract.batch_size: expected an integer >= 1, got 0"),
    ("extract.batchsize=4", r"extract.batchsize: unknown key \(did you mean 'batch_size'\?\)"),
    ("data.languages=[eng,xx]", r"data.languages: unknown language 'xx'"),
    ("models.0.adapter=sonarr", r"models\[0\].adapter: unknown model family 'sonarr' \(known: audioflamingo3, .*sonar\)"),
    ("models.0.languages=[eng,amh,xx]", r"models\[0\].languages: unknown language 'xx'"),
    ("models.0.points.text=layer3", r"models\[0\].points.text: expected 'all' or a list"),
    ("similarity.variance=1.5", r"similarity.variance: expected a number in \[1e-06, 1.0\], got 1.5"),
    ("similarity.variance_mode=cubic", r"similarity.variance_mode: expected one of singular, squared"),
    ("executor.kind=cloud", r"executor.kind: expected one of local, debug, slurm, got 'cloud'"),
    ("data.crossmodal_sentences=many", r"data.crossmodal_sentences: expected an integer >= 2"),
])
def test_errors_quote_the_key(override, message):
    with pytest.raises(ConfigError, match=message) as info:
        check_job(load_job("demo", [override]))
    assert str(info.value).startswith("demo (bundled jobs/demo.yaml): ")


def test_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nout: o\ndata: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml, line 4, column 1: not valid YAML: expected .,. or .\]., but got .<stream end>."):
        load_job(bad)
    bad.write_text(yaml.safe_dump({"name": "x", "out": "o", "models": []}))
    with pytest.raises(ConfigError, match=r"bad.yaml: data: missing \(required\)"):
        load_job(bad)
    with pytest.raises(ConfigError, match=r"job 'nope.yaml': no such file, and not a bundled job"):
        load_job("nope.yaml")


def test_duplicate_model_names_and_bad_override_syntax():
    raw = yaml.safe_load(open(__file__.replace("tests/test_config.py", "jobs/demo.yaml")))
    raw["models"].append(dict(raw["models"][0]))
    from crossrep.config import parse_job

    with pytest.raises(ConfigError, match=r"models: names must be unique, 'seamless' appears twice"):
        parse_job(raw)
    with pytest.raises(ConfigError, match=r"expected KEY=VALUE"):
        apply_override(raw, "extract.batch_size")
    with pytest.raises(ConfigError, match=r"'7' is not an index of a list of 6"):
        apply_override(raw, "models.7.name=x")


def test_checkpoint_mappings_and_options(tmp_path, monkeypatch):
    monkeypatch.setenv("CKPT_DIR", "/ckpt")
    job = load_job("demo", ["models.0.checkpoint={text: $CKPT_DIR/t.pt, speech: {eng: hf://o/r/spenc.eng.pt}}",
                            "models.0.options={a: 1}"])
    m = job.models[0]
    assert m.checkpoint == {"text": "/ckpt/t.pt", "speech": {"eng": "hf://o/r/spenc.eng.pt"}}
    assert m.options == {"a": 1} and m.key == "models[0]"
    with pytest.raises(ConfigError, match=r"models\[0\].checkpoint.speech.eng: '\$NOPE/x' uses an environment"):
        load_job("demo", ["models.0.checkpoint={speech: {eng: $NOPE/x}}"])
    with pytest.raises(ConfigError, match=r"models\[0\].checkpoint.speech: expected a hub id"):
        load_job("demo", ["models.0.checkpoint={speech: []}"])
    with pytest.raises(ConfigError, match=r"models\[0\].options: expected a mapping"):
        load_job("demo", ["models.0.options=[1]"])


def test_adapter_without_options_refuses_them(tmp_path):
    from crossrep.plan import create_store

    job = load_job("demo", ["models.0.options={prompt: hi}", f"out={tmp_path}/o", f"data.root={tmp_path}/d",
                            "data.languages=[eng,deu]", "models.0.languages=[eng,deu]", "models.1.languages=[eng,deu]",
                            "models.2.languages=[eng,deu]", "models.3.languages=[eng,deu]",
                            "models.4.languages=[eng,deu]"])
    with pytest.raises(ConfigError, match=r"models\[0\].options.prompt: the SeamlessM4Tv2Adapter takes no options"):
        create_store(job, progress=False)


def test_statistics_and_analysis_keys(make_job):
    job = load_job(make_job(), ["similarity.families=[crossmodal, text, speech, text_speech, crosslayer]",
                                "similarity.permutations=9", "analysis.tsne.points={seamless: '2'}"])
    assert job.similarity.families[-1] == "crosslayer" and job.similarity.permutations == 9
    assert job.analysis.tsne.points == {"seamless": "2"} and job.analysis.alpha == 0.05
    for override, message in (("similarity.families=[text]", r"similarity.families: the study's families"),
                              ("similarity.families=[crossmodal, text, speech, text_speech, layers]",
                               r"similarity.families: expected a list of distinct families from .*crosslayer"),
                              ("similarity.permutations=1", r"similarity.permutations: expected an integer >= 2"),
                              ("similarity.bootstrap=1", r"similarity.bootstrap: 1 replicate gives no interval"),
                              ("similarity.jackknife=1", r"similarity.jackknife: 1 group gives no variance"),
                              ("similarity.jackknife=7", r"similarity.jackknife: 7 sentence groups need at least 2 "
                                                         r"sentences each, and the job compares as few as 12"),
                              ("analysis.tsne.points={sonar: '2'}", r"analysis.tsne.points.sonar: no model"),
                              ("analysis.alhpa=0.1", r"analysis.alhpa: unknown key \(did you mean 'alpha'\?\)")):
        with pytest.raises(ConfigError, match=message):
            check_job(load_job(make_job(), [override]))


def test_measures_in_the_job_are_objects_with_their_parameters(make_job):
    from crossrep import measures

    job = load_job(make_job(), ["similarity.measures=[svcca, {name: mknn, knn: 3}, cka]", "similarity.knn=7",
                                "similarity.variance=0.8"])
    assert [m.to_yaml() for m in job.similarity.measures] == ["svcca", {"name": "mknn", "knn": 3}, "cka"]
    got = measures.resolve(job.similarity)
    assert [m.settings() for m in got] == [
        {"name": "svcca", "variance": 0.8, "epsilon": 1e-10, "variance_mode": "singular"},  # the job-wide key
        {"name": "mknn", "knn": 3},  # the entry's own parameter wins over similarity.knn
        {"name": "cka"}]
    assert load_job(make_job(), ["similarity.measures=[{name: mknn}]", "similarity.knn=7"]).similarity.measures[0] \
        .params == {}
    for override, message in (
            ("similarity.measures=[svcca, {name: mknn, k: 3}]",
             r"similarity.measures\[1\].k: not a parameter of mknn \(its parameters: knn\)"),
            ("similarity.measures=[svcca, {name: mknn, knn: 0}]",
             r"similarity.measures\[1\]: knn: expected a whole number of neighbours >= 1, got 0"),
            ("similarity.measures=[svcca, cca]", r"similarity.measures\[1\]: unknown measure 'cca' \(known: svcca"),
            ("similarity.measures=[svcca, {knn: 3}]", r"similarity.measures\[1\]: expected a measure name or a "
                                                      r"mapping with `name`"),
            ("similarity.measures=[svcca, svcca]", r"similarity.measures: 'svcca' is listed twice")):
        with pytest.raises(ConfigError, match=message):
            check_job(load_job(make_job(), [override]))


def test_bundled_model_jobs_name_real_hub_ids(monkeypatch, tmp_path):
    monkeypatch.setenv("CROSSREP_OUT", str(tmp_path / "out"))
    monkeypatch.setenv("FLEURS_ROOT", str(tmp_path / "fleurs"))
    encoders = {m.name: (m.adapter, m.checkpoint) for m in load_job("encoders").models}
    assert encoders["labse_w2vbert"] == ("hf_encoders", {"text": "sentence-transformers/LaBSE",
                                                         "speech": "facebook/w2v-bert-2.0"})
    assert encoders["seamless_encoders"][1] == {"text": "facebook/seamless-m4t-v2-large",
                                                "speech": "facebook/seamless-m4t-v2-large"}
    llms = {m.name: (m.adapter, m.checkpoint) for m in load_job("audio-llms").models}
    assert llms == {"qwen2_audio": ("qwen2_audio", "Qwen/Qwen2-Audio-7B"),
                    "qwen2_5_omni": ("qwen2_5_omni", "Qwen/Qwen2.5-Omni-7B"),
                    "audioflamingo3": ("audioflamingo3", "nvidia/audio-flamingo-3-hf")}
