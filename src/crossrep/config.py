"""Job specs: YAML validated once into typed, frozen dataclasses.

Every error quotes the YAML key at fault (`models[0].points.text: ...`). Any key can be overridden from the
command line with `--set key.path=value`, the value read as YAML (`--set data.languages=[eng,deu]`).
"""

from __future__ import annotations

import difflib
import importlib.resources
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import languages as langs
from .errors import ConfigError

MODALITIES = ("text", "speech")
BUNDLED_JOBS = ("demo", "paper", "encoders", "audio-llms")


@dataclass(frozen=True)
class DataConfig:
    root: Path  # the corpus: a FLEURS copy or export folder, or a manifest file (crossrep.data.corpus)
    format: str  # fleurs, parquet, hf_disk, manifest or auto
    resample: bool  # resample other rates to 16 kHz and mix several channels down, instead of refusing them
    split: str  # train, dev or test
    languages: tuple[str, ...]
    crossmodal_sentences: int  # N: the first N sentence ids of each language (cross-modal)
    crosslingual_sentences: int  # M: the first M ids shared by all languages of a model (cross-lingual)
    seed: int  # picks one utterance per sentence id (the one every comparison uses)
    utterances: str  # "one": speech shards hold that utterance; "all": every recording of a key, with its speaker
    demo: bool  # write demo data at `root` when it is missing
    levels: dict[str, str] = field(default_factory=dict)  # resource levels set or overridden per language


@dataclass(frozen=True)
class ModelConfig:
    name: str  # group name in the stores
    adapter: str
    checkpoint: Any  # "tiny", a hub id or local path, or a mapping of them for models with several files
    languages: tuple[str, ...]
    crosslingual_sentences: int
    points: dict[str, tuple[str, ...] | None]  # modality -> point names; None means every point
    options: dict[str, Any] = field(default_factory=dict)  # adapter-specific, checked by the adapter
    key: str = field(default="", compare=False)  # where the model is in the YAML, e.g. models[1]


@dataclass(frozen=True)
class ExtractConfig:
    batch_size: int
    chunk_size: int  # sentences per resumable unit (one Zarr shard)
    dtype: str
    device: str
    threads: int  # CPU threads per task; float results are reproducible only for the same count
    batch_seconds: float  # > 0: a speech batch holds at most this many seconds of padded audio (0: off)
    feature_workers: int  # DataLoader processes featurizing batches ahead of the forward pass (0: in the task)
    shards_per_task: int  # units of shards one array task extracts with one loaded model
    features: str  # "cpu" (the transformers feature extractors) or "device" (torch, on the model's device)


@dataclass(frozen=True)
class MeasureSpec:
    """One entry of `similarity.measures`: a measure's name and the parameters the entry sets (the rest come
    from the section's keys of the same name, then the measure's defaults; see crossrep.measures.resolve)."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    key: str = field(default="", compare=False)  # where it is in the YAML, e.g. similarity.measures[1]

    def to_yaml(self) -> Any:
        return {"name": self.name, **self.params} if self.params else self.name


@dataclass(frozen=True)
class SimilarityConfig:
    measures: tuple[MeasureSpec, ...]  # svcca, pwcca, cka, cka_debiased, mknn, ... (crossrep.measures)
    knn: int  # neighbours for mknn
    variance: float  # share of variance kept by the SVD step of SVCCA
    variance_mode: str  # "singular": sum of singular values (google/svcca's sum_threshold); "squared": of their squares
    epsilon: float
    baseline_repeats: int  # random-vector baselines per comparison
    seed: int
    backend: str  # numpy (default), cupy, or auto (cupy where a GPU is visible); docs/performance.md, GPU
    scheduler: str  # threads, local (distributed.LocalCluster), slurm (dask_jobqueue), cuda (dask_cuda)
    workers: int  # Dask threads, local processes, Slurm worker jobs
    families: tuple[str, ...]  # comparison families (see crossrep.families)
    permutations: int  # K: permutation-null replicates per comparison (at least 2: the null's spread)
    bootstrap: int  # B: sentence-bootstrap replicates (0: none, else at least 2)
    jackknife: int  # G: sentence groups of the delete-a-group jackknife the findings' tests use (0: none, else >= 2)
    speakers: int  # S: redraws of the recording per key (data.utterances all; 0: none, else >= 2)

    @property
    def measure_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.measures)


@dataclass(frozen=True)
class TsneConfig:
    points: dict[str, str]  # model -> point name; a model not named gets the study's middle layer or its middle
    seed: int
    perplexity: float


@dataclass(frozen=True)
class LensConfig:
    """The logit lens at audio positions (crossrep.models.lens), computed during extraction of these audio LLMs."""

    models: tuple[str, ...]  # model names; empty: no lens
    points: tuple[str, ...] | None  # decoder points to read (None: every one, "in" to "out")
    k: int  # the job's k of recall@k, besides 1 and 10


@dataclass(frozen=True)
class AnalysisConfig:
    alpha: float  # significance level of the findings' verdicts
    language_bootstrap: int  # resamples (and permutations) of languages for the findings' intervals and tests
    seed: int
    tsne: TsneConfig
    lens: LensConfig = LensConfig((), None, 5)


@dataclass(frozen=True)
class RetrievalConfig:
    """Top-1 retrieval per point (crossrep.readout): which scorings, the margin's neighbours, centring."""

    scorings: tuple[str, ...]  # cosine and/or margin; empty: no retrieval
    k: int  # neighbours of the ratio margin, in both directions
    center: bool  # remove each representation's mean vector (per language, modality and point) first
    bootstrap: int  # sentence-bootstrap replicates of each cell's per-query hits (0: none)


@dataclass(frozen=True)
class ProbesConfig:
    """Linear probes per point (crossrep.readout): language identity per modality and pooled, modality."""

    enabled: bool
    folds: int  # cross-validation folds, grouped by sentence id
    permutations: int  # held-out label permutations (within each sentence id): chance level and p-value
    bootstrap: int  # sentence-id bootstrap replicates of the per-row hits, for the interval
    c: float  # inverse L2 regularisation of the logistic regression (scikit-learn's C)


@dataclass(frozen=True)
class ExecutorConfig:
    kind: str  # local (subprocesses through submitit), debug (in process) or slurm
    workers: int  # local: extraction tasks running at once
    timeout_min: int  # local: time limit of a task
    cluster: str | None  # slurm: a cluster profile, a YAML path or the name of one in slurm/ (horeka, dev)


@dataclass(frozen=True)
class Job:
    name: str
    out: Path
    data: DataConfig
    models: tuple[ModelConfig, ...]
    extract: ExtractConfig
    similarity: SimilarityConfig
    executor: ExecutorConfig
    analysis: AnalysisConfig
    retrieval: RetrievalConfig
    probes: ProbesConfig
    source: str = field(default="", compare=False)

    def model(self, name: str) -> ModelConfig:
        for m in self.models:
            if m.name == name:
                return m
        raise ConfigError(f"models: no model named {name!r} (have {', '.join(m.name for m in self.models)})")

    def to_dict(self) -> dict[str, Any]:
        """The resolved job as plain YAML-able data (absolute paths), as workers read it back."""
        return {
            "name": self.name,
            "out": str(self.out),
            "data": {
                "root": str(self.data.root), "format": self.data.format, "resample": self.data.resample,
                "split": self.data.split, "languages": list(self.data.languages),
                "crossmodal_sentences": self.data.crossmodal_sentences,
                "crosslingual_sentences": self.data.crosslingual_sentences,
                "seed": self.data.seed, "utterances": self.data.utterances, "demo": self.data.demo,
                "levels": dict(self.data.levels),
            },
            "models": [
                {
                    "name": m.name, "adapter": m.adapter, "checkpoint": m.checkpoint,
                    "languages": list(m.languages), "crosslingual_sentences": m.crosslingual_sentences,
                    "points": {k: ("all" if v is None else list(v)) for k, v in m.points.items()},
                    "options": m.options,
                }
                for m in self.models
            ],
            "extract": vars(self.extract).copy(),
            "similarity": {k: ([m.to_yaml() for m in v] if k == "measures" else list(v) if isinstance(v, tuple)
                               else v) for k, v in vars(self.similarity).items()},
            "executor": vars(self.executor).copy(),
            "analysis": {"alpha": self.analysis.alpha, "language_bootstrap": self.analysis.language_bootstrap,
                         "seed": self.analysis.seed, "tsne": {**vars(self.analysis.tsne),
                                                              "points": dict(self.analysis.tsne.points)},
                         "lens": {"models": list(self.analysis.lens.models), "k": self.analysis.lens.k,
                                  "points": ("all" if self.analysis.lens.points is None
                                             else list(self.analysis.lens.points))}},
            "retrieval": {**vars(self.retrieval), "scorings": list(self.retrieval.scorings)},
            "probes": vars(self.probes).copy(),
        }


# ---------------------------------------------------------------- reading YAML


def resolve_job_path(spec: str | Path | None) -> tuple[str, str]:
    """(text, where) for a job given as a path or as the name of a bundled job (default: demo)."""
    spec = "demo" if spec is None else str(spec)
    path = Path(spec)
    if path.is_dir():
        if not (path / "job.yaml").is_file():
            raise ConfigError(f"{path}: a folder without job.yaml (an output folder has one once a run has started)")
        path = path / "job.yaml"
    if path.is_file():
        return path.read_text(encoding="utf-8"), str(path)
    name = spec[:-5] if spec.endswith(".yaml") and "/" not in spec else spec
    if name in BUNDLED_JOBS:
        res = importlib.resources.files("crossrep.jobs").joinpath(f"{name}.yaml")
        return res.read_text(encoding="utf-8"), f"{name} (bundled jobs/{name}.yaml)"
    raise ConfigError(f"job {spec!r}: no such file, and not a bundled job ({', '.join(BUNDLED_JOBS)})")


def load_job(spec: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Job:
    """Read a job spec (path or bundled name), apply `key=value` overrides, validate."""
    text, where = resolve_job_path(spec)
    raw = parse_yaml(text, where)
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: a job spec is a mapping with keys {', '.join(_TOP)}")
    folder = output_folder(spec)
    if folder is not None:  # an output folder's job: its `out` is the folder, wherever the run was copied or moved
        from .paths import located, portable

        old = raw.get("out")
        raw["out"] = str(folder)
        if isinstance(old, str) and os.path.isabs(old):  # paths inside the old `out` (data, checkpoints) move too
            for node, key in [(raw.get("data"), "root")] + [(m, "checkpoint") for m in raw.get("models") or []]:
                if isinstance(node, dict) and key in node:
                    node[key] = located(portable(node[key], Path(old)), folder)
    for item in overrides:
        apply_override(raw, item)
    try:
        return parse_job(raw, source=where)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def output_folder(spec: str | Path | None) -> Path | None:
    """The output folder a job spec names (a folder with job.yaml beside activations.zarr, or that job.yaml)."""
    if spec is None:
        return None
    path = Path(str(spec))
    job = path / "job.yaml" if path.is_dir() else path
    if job.name == "job.yaml" and job.is_file() and (job.parent / "activations.zarr").exists():
        return job.parent.resolve()
    return None


def parse_yaml(text: str, where: str) -> Any:
    """YAML text parsed, or an error naming the file, line and column and what is wrong there."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        context = getattr(exc, "context", None)
        raise ConfigError(f"{where}{at}: not valid YAML: {what}" + (f" ({context})" if context else "")) from None


def apply_override(raw: dict, item: str) -> None:
    """Set `a.b.0.c=value` in the raw mapping; the value is parsed as YAML."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. extract.batch_size=1")
    key, _, value = item.partition("=")
    parts = key.strip().split(".")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key}: value is not valid YAML: {exc}") from None
    node: Any = raw
    for depth, part in enumerate(parts[:-1]):
        here = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            node = node[_index(part, node, here)]
        elif isinstance(node, dict):
            node = node.setdefault(part, {})
        else:
            raise ConfigError(f"--set {key}: {here} is a value, not a mapping or list")
    last = parts[-1]
    if isinstance(node, list):
        node[_index(last, node, key)] = parsed
    elif isinstance(node, dict):
        node[last] = parsed
    else:
        raise ConfigError(f"--set {key}: {'.'.join(parts[:-1])} is a value, not a mapping or list")


def _index(part: str, node: list, key: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"--set {key}: {part!r} is not an index of a list of {len(node)}")
    return int(part)


# ---------------------------------------------------------------- validation

_TOP = ("name", "out", "data", "models", "extract", "similarity", "executor", "analysis", "retrieval", "probes")


class Section:
    """Typed reads from one YAML mapping; errors quote `prefix.key`; leftovers are reported."""

    def __init__(self, raw: Any, prefix: str, required: bool = True):
        if raw is None and not required:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{prefix}: expected a mapping, got {type(raw).__name__}")
        self.raw, self.prefix, self.seen = raw, prefix, set()

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def get(self, name: str, default: Any = ...) -> Any:
        self.seen.add(name)
        if name in self.raw and self.raw[name] is not None:
            return self.raw[name]
        if default is ...:
            near = difflib.get_close_matches(name, [str(k) for k in self.raw if k not in self.seen], n=1)
            hint = f" (found {near[0]!r}: a typo?)" if near else ""
            raise ConfigError(f"{self.key(name)}: missing (required){hint}")
        return default

    def int(self, name: str, default: Any = ..., minimum: int = 0) -> int:
        value = self.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(f"{self.key(name)}: expected an integer >= {minimum}, got {value!r}")
        return value

    def float(self, name: str, default: Any = ..., low: float = 0.0, high: float = float("inf")) -> float:
        value = self.get(name, default)
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise ConfigError(f"{self.key(name)}: expected a number in [{low}, {high}], got {value!r}")
        return float(value)

    def str(self, name: str, default: Any = ...) -> str:
        value = self.get(name, default)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{self.key(name)}: expected a non-empty string, got {value!r}")
        return value

    def choice(self, name: str, choices: tuple[str, ...], default: Any = ...) -> str:
        value = self.get(name, default)
        if value not in choices:
            raise ConfigError(f"{self.key(name)}: expected one of {', '.join(choices)}, got {value!r}")
        return value

    def bool(self, name: str, default: Any = ...) -> bool:
        value = self.get(name, default)
        if not isinstance(value, bool):
            raise ConfigError(f"{self.key(name)}: expected true or false, got {value!r}")
        return value

    def done(self) -> None:
        extra = [k for k in self.raw if k not in self.seen]
        if extra:
            k = str(extra[0])
            near = difflib.get_close_matches(k, sorted(self.seen), n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else f"; known keys: {', '.join(sorted(self.seen))}"
            raise ConfigError(f"{self.key(k)}: unknown key{hint}")


def parse_job(raw: dict, source: str = "") -> Job:
    top = Section(raw, "")
    name = top.str("name")
    out = _path(top, "out")

    d = Section(top.get("data"), "data")
    data = DataConfig(
        root=_path(d, "root"),
        format=d.choice("format", ("fleurs", "parquet", "hf_disk", "manifest", "auto"), "fleurs"),
        resample=d.bool("resample", False),
        split=d.choice("split", ("train", "dev", "test"), "test"),
        languages=langs.expand(d.get("languages"), "data.languages"),
        crossmodal_sentences=d.int("crossmodal_sentences", minimum=2),
        crosslingual_sentences=d.int("crosslingual_sentences", minimum=2),
        seed=d.int("seed", 0),
        utterances=d.choice("utterances", ("one", "all"), "one"),
        demo=d.bool("demo", False),
        levels=_levels(d),
    )
    d.done()

    raw_models = top.get("models")
    if not isinstance(raw_models, list) or not raw_models:
        raise ConfigError("models: expected a non-empty list of models")
    models = tuple(_parse_model(m, f"models[{i}]", data) for i, m in enumerate(raw_models))
    names = [m.name for m in models]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"models: names must be unique, {dup[0]!r} appears twice")

    e = Section(top.get("extract", None), "extract", required=False)
    extract = ExtractConfig(
        batch_size=e.int("batch_size", 8, minimum=1),
        chunk_size=e.int("chunk_size", 32, minimum=1),
        dtype=e.choice("dtype", ("float32", "bfloat16", "float16"), "float32"),
        device=e.choice("device", ("auto", "cpu", "cuda"), "auto"),
        threads=e.int("threads", 1, minimum=1),
        batch_seconds=e.float("batch_seconds", 0.0),
        feature_workers=e.int("feature_workers", 1),
        shards_per_task=e.int("shards_per_task", 1, minimum=1),
        features=e.choice("features", ("cpu", "device"), "cpu"),
    )
    e.done()

    s = Section(top.get("similarity", None), "similarity", required=False)
    similarity = SimilarityConfig(
        measures=_measures(s),
        knn=s.int("knn", 10, minimum=1),
        variance=s.float("variance", 0.9, low=1e-6, high=1.0),
        variance_mode=s.choice("variance_mode", ("singular", "squared"), "singular"),
        epsilon=s.float("epsilon", 1e-10, low=0.0, high=1.0),
        baseline_repeats=s.int("baseline_repeats", 5, minimum=1),
        seed=s.int("seed", 0),
        backend=s.choice("backend", ("numpy", "cupy", "auto"), "numpy"),
        scheduler=s.choice("scheduler", ("threads", "local", "slurm", "cuda"), "threads"),
        workers=s.int("workers", 2, minimum=1),
        families=_families(s),
        permutations=s.int("permutations", DEFAULT_PERMUTATIONS, minimum=2),
        bootstrap=s.int("bootstrap", DEFAULT_BOOTSTRAP),
        jackknife=s.int("jackknife", DEFAULT_JACKKNIFE),
        speakers=s.int("speakers", 0),
    )
    if similarity.bootstrap == 1:
        raise ConfigError("similarity.bootstrap: 1 replicate gives no interval; use 0 (none: intervals come from the "
                          "language bootstrap) or at least 2 (200 or more for reported intervals; each replicate "
                          "costs one more reduction)")
    if similarity.jackknife == 1:
        raise ConfigError("similarity.jackknife: 1 group gives no variance; use 0 (none: the findings are then not "
                          "tested) or at least 2 (default 10; each group costs one more reduction)")
    if similarity.speakers == 1:
        raise ConfigError("similarity.speakers: 1 redraw gives no variance; use 0 (none) or at least 2")
    if similarity.speakers and data.utterances != "all":
        raise ConfigError(f"similarity.speakers: {similarity.speakers} redraws of each key's recording need every "
                          f"recording stored: set data.utterances: all (it is {data.utterances})")
    fewest = min([data.crossmodal_sentences, data.crosslingual_sentences]
                 + [m.crosslingual_sentences for m in models])
    if similarity.jackknife > fewest // 2:
        raise ConfigError(f"similarity.jackknife: {similarity.jackknife} sentence groups need at least 2 sentences "
                          f"each, and the job compares as few as {fewest}: use at most {fewest // 2}")
    s.done()
    analysis = _analysis(Section(top.get("analysis", None), "analysis", required=False), models)

    x = Section(top.get("executor", None), "executor", required=False)
    executor = ExecutorConfig(
        kind=x.choice("kind", ("local", "debug", "slurm"), "local"),
        workers=x.int("workers", 2, minimum=1),
        timeout_min=x.int("timeout_min", 60, minimum=1),
        cluster=x.get("cluster", None),
    )
    if executor.kind == "slurm" and not executor.cluster:
        raise ConfigError("executor.cluster: required with executor.kind slurm (a profile such as horeka or dev, "
                          "or a path to one)")
    x.done()
    retrieval = _retrieval(Section(top.get("retrieval", None), "retrieval", required=False), data, models)
    probes = _probes(Section(top.get("probes", None), "probes", required=False), data, models)
    top.done()
    return Job(name, out, data, models, extract, similarity, executor, analysis, retrieval, probes, source)


def _levels(d: Section) -> dict[str, str]:
    """`data.levels`: {language: high | medium | low}, any code form; overrides the table's levels."""
    raw = d.get("levels", {})
    if not isinstance(raw, dict):
        raise ConfigError(f"{d.key('levels')}: expected a mapping language -> high, medium or low, got {raw!r}")
    out = {}
    for code, value in raw.items():
        key = f"{d.key('levels')}.{code}"
        try:
            iso = langs.resolve(str(code))
        except ConfigError as exc:
            raise ConfigError(f"{key}: {exc}") from None
        if value not in langs.LEVELS:
            raise ConfigError(f"{key}: expected one of {', '.join(langs.LEVELS)}, got {value!r}")
        out[iso] = value
    return out


SCORINGS = ("cosine", "margin")


def _retrieval(r: Section, data: DataConfig, models: tuple[ModelConfig, ...]) -> RetrievalConfig:
    raw = r.get("scorings", list(SCORINGS))
    raw = [raw] if isinstance(raw, str) else raw
    if not isinstance(raw, list) or any(x not in SCORINGS for x in raw) or len(set(raw)) != len(raw):
        raise ConfigError(f"{r.key('scorings')}: expected a list of distinct scorings from {', '.join(SCORINGS)} "
                          f"([] for no retrieval), got {raw!r}")
    out = RetrievalConfig(scorings=tuple(raw), k=r.int("k", 4, minimum=1), center=r.bool("center", False),
                          bootstrap=r.int("bootstrap", 200))
    fewest = min([data.crossmodal_sentences] + [m.crosslingual_sentences for m in models])
    if "margin" in out.scorings and out.k >= fewest:
        raise ConfigError(f"{r.key('k')}: the margin's {out.k} neighbours need more candidates than that, and the "
                          f"job retrieves among as few as {fewest} sentences: use at most {fewest - 1}")
    if out.bootstrap == 1:
        raise ConfigError(f"{r.key('bootstrap')}: 1 replicate gives no interval; use 0 or at least 2 (default 200)")
    r.done()
    return out


def _probes(p: Section, data: DataConfig, models: tuple[ModelConfig, ...]) -> ProbesConfig:
    out = ProbesConfig(enabled=p.bool("enabled", True), folds=p.int("folds", 5, minimum=2),
                       permutations=p.int("permutations", 1000, minimum=2), bootstrap=p.int("bootstrap", 200),
                       c=p.float("c", 1.0, low=1e-12))
    fewest = min(m.crosslingual_sentences for m in models)
    if out.enabled and out.folds > fewest:
        raise ConfigError(f"{p.key('folds')}: {out.folds} folds grouped by sentence id need at least as many "
                          f"sentences, and a model probes as few as {fewest} (its crosslingual_sentences)")
    if out.bootstrap == 1:
        raise ConfigError(f"{p.key('bootstrap')}: 1 replicate gives no interval; use 0 or at least 2 (default 200)")
    p.done()
    return out


DEFAULT_PERMUTATIONS = 4
DEFAULT_BOOTSTRAP = 0
DEFAULT_JACKKNIFE = 10


def _measures(s: Section) -> tuple[MeasureSpec, ...]:
    """The entries of `similarity.measures`: names, or mappings {name: ..., parameter: value}. Which names and
    parameters exist is the measures' own business (crossrep.measures.resolve checks them, quoting these keys)."""
    raw = s.get("measures", ["svcca"])
    raw = [raw] if isinstance(raw, (str, dict)) else raw
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{s.key('measures')}: expected a list of measures (names, or mappings with a name and "
                          f"parameters, e.g. [svcca, {{name: mknn, knn: 10}}]), got {raw!r}")
    specs = []
    for i, entry in enumerate(raw):
        key = f"{s.key('measures')}[{i}]"
        if isinstance(entry, dict):
            params = {str(k): v for k, v in entry.items() if k != "name"}
            name = entry.get("name")
            bad = [k for k, v in params.items() if not isinstance(v, (str, int, float, bool))]
            if bad:
                raise ConfigError(f"{key}.{bad[0]}: expected a number, string or boolean, got {params[bad[0]]!r}")
        else:
            name, params = entry, {}
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{key}: expected a measure name or a mapping with `name`, got {entry!r}")
        specs.append(MeasureSpec(name, params, key))
    names = [m.name for m in specs]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise ConfigError(f"{s.key('measures')}: {dup!r} is listed twice (each measure is one coordinate of the "
                          f"results; compare other parameters in another job)")
    return tuple(specs)


def _families(s: Section) -> tuple[str, ...]:
    """The names in `similarity.families` (crossrep.families.check says which exist and which are required)."""
    raw = s.get("families", ["crossmodal", "text", "speech", "text_speech"])
    raw = [raw] if isinstance(raw, str) else raw
    if not isinstance(raw, list) or not raw or any(not isinstance(f, str) for f in raw) or len(set(raw)) != len(raw):
        raise ConfigError(f"{s.key('families')}: expected a list of distinct family names, got {raw!r}")
    return tuple(raw)


def _analysis(a: Section, models: tuple[ModelConfig, ...]) -> AnalysisConfig:
    t = Section(a.get("tsne", None), a.key("tsne"), required=False)
    points = t.get("points", {})
    if not isinstance(points, dict) or any(not isinstance(v, (str, int)) for v in points.values()):
        raise ConfigError(f"{t.key('points')}: expected a mapping model -> point name, got {points!r}")
    names = {m.name for m in models}
    unknown = [k for k in points if k not in names]
    if unknown:
        raise ConfigError(f"{t.key('points')}.{unknown[0]}: no model of that name (have {', '.join(sorted(names))})")
    tsne = TsneConfig(points={str(k): str(v) for k, v in points.items()}, seed=t.int("seed", 0),
                      perplexity=t.float("perplexity", 30.0, low=1.0))
    t.done()
    analysis = AnalysisConfig(alpha=a.float("alpha", 0.05, low=1e-6, high=0.5),
                              language_bootstrap=a.int("language_bootstrap", 1000, minimum=20),
                              seed=a.int("seed", 0), tsne=tsne,
                              lens=_lens(Section(a.get("lens", None), a.key("lens"), required=False), names))
    a.done()
    return analysis


def _lens(s: Section, names: set[str]) -> LensConfig:
    """`analysis.lens`: which audio LLMs get the logit lens, at which points, with which k (the adapter and the
    points are checked when the store is planned)."""
    models = s.get("models", [])
    models = [models] if isinstance(models, str) else models
    if not isinstance(models, list) or any(not isinstance(m, str) for m in models):
        raise ConfigError(f"{s.key('models')}: expected a list of model names, got {models!r}")
    unknown = [m for m in models if m not in names]
    if unknown:
        raise ConfigError(f"{s.key('models')}: no model named {unknown[0]!r} (have {', '.join(sorted(names))})")
    points = s.get("points", "all")
    if points != "all" and (not isinstance(points, list) or not points):
        raise ConfigError(f"{s.key('points')}: expected 'all' or a list of point names, got {points!r}")
    lens = LensConfig(models=tuple(dict.fromkeys(models)),
                      points=None if points == "all" else tuple(str(p) for p in points), k=s.int("k", 5, minimum=1))
    s.done()
    return lens


def _path(section: Section, name: str) -> Path:
    """A path with `~` and `$VARS` expanded (an unset variable is an error), made absolute."""
    value = section.str(name)
    expanded = os.path.expandvars(value)
    if "$" in expanded:
        raise ConfigError(f"{section.key(name)}: {value!r} uses an environment variable that is not set")
    return Path(expanded).expanduser().resolve()


def _parse_model(raw: Any, prefix: str, data: DataConfig) -> ModelConfig:
    m = Section(raw, prefix)
    name = m.str("name")
    if "/" in name or name.startswith((".", "_")):
        raise ConfigError(f"{prefix}.name: {name!r} cannot be a store group name (no '/', no leading '.' or '_')")
    adapter = m.str("adapter")  # a model family: crossrep.models.family checks the name
    checkpoint = _checkpoint(m.get("checkpoint"), m.key("checkpoint"))
    options = m.get("options", {})
    if not isinstance(options, dict):
        raise ConfigError(f"{m.key('options')}: expected a mapping of adapter options, got {options!r}")
    languages = langs.expand(m.get("languages", list(data.languages)), f"{prefix}.languages")
    missing = [code for code in languages if code not in data.languages]
    if missing:
        raise ConfigError(f"{prefix}.languages: {', '.join(missing)} not in data.languages")
    if len(languages) < 2:
        raise ConfigError(f"{prefix}.languages: cross-lingual comparison needs at least 2 languages")
    m_sent = m.int("crosslingual_sentences", data.crosslingual_sentences, minimum=2)
    p = Section(m.get("points", {}), f"{prefix}.points")
    points: dict[str, tuple[str, ...] | None] = {}
    for modality in MODALITIES:
        value = p.get(modality, "all")
        if value == "all":
            points[modality] = None
        elif isinstance(value, list) and value:
            points[modality] = tuple(str(v) for v in value)
        else:
            raise ConfigError(f"{p.key(modality)}: expected 'all' or a list of point names, got {value!r}")
    p.done()
    m.done()
    return ModelConfig(name, adapter, checkpoint, languages, m_sent, points, options, prefix)


def _checkpoint(value: Any, key: str, depth: int = 0) -> Any:
    """A checkpoint string, or a mapping (nested at most twice) of them; `$VARS` expanded, unset ones an error."""
    if isinstance(value, str) and value:
        expanded = os.path.expanduser(os.path.expandvars(value))
        if "$" in expanded:
            raise ConfigError(f"{key}: {value!r} uses an environment variable that is not set")
        return expanded
    if isinstance(value, dict) and value and depth < 2:
        return {str(k): _checkpoint(v, f"{key}.{k}", depth + 1) for k, v in value.items()}
    raise ConfigError(f"{key}: expected a hub id, a local path or a mapping of them, got {value!r}")
