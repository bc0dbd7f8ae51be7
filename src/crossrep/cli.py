"""The `crossrep` command: run a job's stages, or one stage, check progress, write demo data."""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
from pathlib import Path

from .errors import ConfigError, CrossrepError, describe

EPILOG = """\
examples:
  crossrep run                                  the demo job end to end, locally (jobs/demo.yaml)
  crossrep run jobs/paper.yaml --executor local the study's setup on this machine
  crossrep run demo --set out=runs/demo-b1 --set extract.batch_size=1   a variant in its own folder
  crossrep status demo                          complete / partial / failed / missing per shard
  crossrep status runs/demo --verify            read every chunk back; damaged ones are recomputed by `run`
  crossrep status demo --timing                 where extraction spent its time, per shard and stage
  crossrep extract demo --shard 3               one shard in this process (for sbatch arrays)
  crossrep run paper --executor slurm --cluster horeka   submit the array, reduce and aggregate jobs
  crossrep resume paper --executor slurm --cluster horeka  resubmit what is not complete
  crossrep demo-data runs/demo-data             write the demo FLEURS-layout data only

JOB is a YAML file, an output folder (its job.yaml), or the name of a bundled job (demo, paper); it defaults
to demo. One command writes to an output folder at a time: a second is refused, naming the first.
Outputs: <out>/activations.zarr, <out>/similarity.zarr, <out>/similarity.csv, <out>/figures/,
<out>/report/index.html (`crossrep report JOB`).

In Python: `crossrep.open(out)` (activations, similarity Datasets, findings, status) and
`crossrep.compare(x, y, measure=..., **parameters)` for two arrays (README: Python API).

model families (a job's `models[i].adapter`; docs/models.md):
{families}

measures (a job's `similarity.measures`: a name, or {{name: ..., parameter: value}}; docs/statistics.md):
{measures}
"""


def families() -> str:
    from .models import families

    return "\n".join(f"  {f.name:<16} {f.line}" for f in families().values())


def measures() -> str:
    from .measures import REGISTRY, get

    return "\n".join(f"  {name:<16} " + (", ".join(f"{k}={v!r}" for k, v in get(name).params().items()) or "-")
                     + f"; invariant to: {', '.join(cls.invariances)}" for name, cls in REGISTRY.items())


def _job_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("job", nargs="?", default="demo", help="job YAML file or bundled job name (default: demo)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a job key, value read as YAML (repeatable), e.g. extract.batch_size=1")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bars (they are drawn only on a terminal anyway); one line per stage remains")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="crossrep",
        description="Compare how multimodal models (SeamlessM4T v2, SONAR, SALMONN-7B, audio LLMs) represent the same "
                    "sentence across languages and across text and speech: extract pooled per-layer "
                    "activations, score every language pair (SVCCA, PWCCA, CKA, debiased CKA, mutual kNN), "
                    "with a permutation null per cell and sentence-jackknife replicates, draw the figures, test the "
                    "study's six findings (two-sided t tests over languages and sentences, Holm-adjusted per "
                    "finding, intervals that agree with the verdicts) and write a self-contained HTML report.",
        epilog=EPILOG.format(families=families(), measures=measures()), formatter_class=argparse.RawDescriptionHelpFormatter)
    from . import __version__

    top.add_argument("--version", action="version", version=f"crossrep {__version__}")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for name, text in (("run", "Run a job's stages through an executor. Completed shards are kept: running "
                                "again resumes where it stopped."),
                       ("resume", "Resubmit only the shards that are not complete, then the downstream stages. "
                                  "Refuses while a shard still has an active Slurm task.")):
        p = sub.add_parser(name, help=text.split(".")[0].lower(), description=text)
        _job_args(p)
        p.add_argument("--executor", choices=("local", "debug", "slurm"), help="override executor.kind")
        p.add_argument("--cluster", metavar="PROFILE",
                       help="Slurm cluster profile: a YAML file or a bundled one (horeka, dev)")
        p.add_argument("--wait", action="store_true",
                       help="slurm: wait for the jobs with a progress display (local and debug always wait)")
        p.add_argument("--stages", default="extract,reduce,aggregate",
                       help="comma-separated subset of extract,reduce,aggregate")
        p.add_argument("--dry-run", action="store_true",
                       help="slurm: print the sbatch scripts that would be submitted, submit nothing")

    p = sub.add_parser("prefetch", help="download the job's hub models into the local cache (login node)",
                       description="Run on a login node with network: downloads every model given as a hub id "
                                   "into the Hugging Face cache (HF_HOME), so that compute nodes, where tasks "
                                   "run with HF_HUB_OFFLINE=1, find them.")
    _job_args(p)

    p = sub.add_parser("plan", help="create the activation store and list the shards",
                       description="Read the corpus (its TSVs, parquet or manifest) and the models' configs, read "
                                   "the header of every clip the shards will extract (a bad clip stops here, "
                                   "named, before anything is written), create <out>/activations.zarr with every "
                                   "shard group, and print per language its keys (and with data.utterances: all "
                                   "its recordings and speakers) and the shard table (index, model, modality, "
                                   "language). Run it once before `extract --shard`.")
    _job_args(p)

    p = sub.add_parser("extract", help="extract activations in this process",
                       description="Extract shards in this process: all incomplete ones, or those given with "
                                   "--shard (the store must exist: see `crossrep plan`).")
    _job_args(p)
    p.add_argument("--shard", action="append", metavar="I|KEY",
                   help="shard index or MODEL/MODALITY/LANG key (repeatable); see `crossrep plan`")

    for name, text in (("reduce", "compute similarity.zarr (scores, permutation nulls, sentence-jackknife "
                                  "replicates, intervals) from a complete activation store"),
                       ("aggregate", "draw the figures, test the six findings and write the report from "
                                     "similarity.zarr")):
        p = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ", in this process.")
        _job_args(p)

    p = sub.add_parser("report", help="write the study report <out>/report/index.html from findings.json",
                       description="Write <out>/report/index.html: one self-contained HTML page (figures embedded, "
                                   "no network needed) with a verdict per finding, model and measure, a section per "
                                   "finding and the methods, from <out>/findings.json and <out>/figures/ (written by "
                                   "the aggregate stage), in this process.")
    _job_args(p)

    p = sub.add_parser("status", help="show each shard: complete, partial, failed or missing",
                       description="Show each shard's state, with its error and log where it failed. Exit status 0 "
                                   "when every shard is complete (and, with --verify, undamaged), else 1.")
    _job_args(p)
    p.add_argument("--all", action="store_true", help="list complete shards too")
    p.add_argument("--verify", action="store_true",
                   help="read back every chunk recorded as done (file, checksums, finite values); name each "
                        "damaged one and mark it not done, so that `run` or `resume` recomputes exactly those")
    p.add_argument("--timing", action="store_true",
                   help="seconds per extraction stage of each finished shard (model load, audio, features, waiting "
                        "for features, forward, pooling copy, write), the forward pass's share of the time and the "
                        "padding share of the batches")

    p = sub.add_parser("repair", help="rebuild a store whose root metadata is lost, keeping verified chunks",
                       description="Rebuild the metadata of <out>/activations.zarr from the job's plan where its root "
                                   "zarr.json is missing or unreadable: missing groups and arrays are re-created, "
                                   "and every chunk whose files all verify is kept. Nothing is deleted.")
    _job_args(p)

    p = sub.add_parser("demo-data", help="write the demo data (FLEURS layout) to DIR",
                       description="Write a FLEURS-layout copy of crossrep's own parallel corpus, with speech "
                                   "from espeak-ng where installed and a labelled synthetic signal elsewhere.")
    p.add_argument("dir", type=Path)
    p.add_argument("--languages", default="all", help="comma-separated ISO codes or set names (default: all)")
    p.add_argument("--sentences", type=int, default=48, help="sentences per language (2..48, default 48)")

    p = sub.add_parser("languages", help="list the languages crossrep knows and their codes",
                       description="Every FLEURS language (102): ISO 639-3 code, FLEURS config, FLoRes-200 code, "
                                   "name, script, family, resource level (the study's 36 have one; set others with "
                                   "data.levels) and the sets it is in. A job may name a language by any of these "
                                   "codes, by ISO 639-1 or by a BCP-47 tag.")
    p.add_argument("--set", dest="set_name", default="fleurs", help="a set name (default: fleurs, all 102)")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return _dispatch(args)
    except CrossrepError as exc:
        print(f"crossrep: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno == errno.EPIPE:  # `crossrep status | head`
            sys.stderr.close()
            return 0
        if exc.errno == errno.ENOSPC:
            print(f"crossrep: error: {describe(exc, getattr(args, 'out', None))}; free some space and run the same "
                  f"command again to resume", file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:
        print("crossrep: interrupted; every worker has stopped; run the same command again to resume",
              file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())


def check_job(job) -> None:
    """What the job's configuration cannot check by itself, before any work starts: the model families, the
    measures and their parameters, the comparison families (their registries live above the configuration)."""
    from . import families, measures, models

    try:
        for m in job.models:
            models.family(m.adapter, f"{m.key}.adapter")
        families.check(job.similarity)
        measures.resolve(job.similarity)
    except ConfigError as exc:
        raise ConfigError(f"{job.source}: {exc}" if job.source else str(exc)) from None


def _terminate(signum, frame):
    """SIGTERM (scancel, kill) stops like Ctrl-C: workers first, then this process."""
    raise KeyboardInterrupt


def _dispatch(args) -> int:
    from .config import load_job

    if args.command == "languages":
        from . import languages as langs

        print("iso\tfleurs\tflores\tname\tscript\tfamily\tlevel\tsets")
        for iso in langs.expand(args.set_name, "--set"):
            x = langs.get(iso)
            print(f"{iso}\t{x.fleurs}\t{x.flores}\t{x.name}\t{x.script}\t{x.family}\t{x.level}\t{','.join(x.sets)}")
        return 0
    if args.command == "demo-data":
        from . import languages as langs
        from .data.demo import write_demo

        codes = langs.expand(args.languages.split(","), "--languages")
        print(write_demo(args.dir, codes, sentences=args.sentences))
        return 0
    overrides = list(args.overrides)
    if getattr(args, "executor", None):
        overrides.append(f"executor.kind={args.executor}")
    if getattr(args, "cluster", None):
        overrides.append(f"executor.cluster={args.cluster}")
    job = load_job(args.job, overrides)
    args.out = job.out
    check_job(job)
    if args.quiet:
        from . import progress

        progress.QUIET = True
    if args.command in ("run", "resume"):
        from .launch import STAGES, launcher

        stages = tuple(s.strip() for s in args.stages.split(",") if s.strip())
        unknown = [s for s in stages if s not in STAGES]
        if unknown:
            raise CrossrepError(f"--stages: unknown stage {unknown[0]!r}; stages are {', '.join(STAGES)}")
        if args.dry_run:
            from .launch.slurm import SlurmLauncher
            from .plan import shards

            if job.executor.kind != "slurm":
                raise CrossrepError("--dry-run previews Slurm submissions: add --executor slurm --cluster PROFILE")
            print(SlurmLauncher(job).preview(list(range(len(shards(job))))))
            return 0
        submitted_only = job.executor.kind == "slurm" and not args.wait
        launcher(job).run(stages, wait=not submitted_only)
        print(f"crossrep: {'submitted' if submitted_only else 'done'}; results in {job.out}")
        return 0
    if args.command == "prefetch":
        from .prefetch import prefetch

        for line in prefetch(job):
            print(line)
        return 0
    if args.command == "plan":
        from .lock import folder_lock
        from .plan import corpus_summary, create_store, shards

        with folder_lock(job.out, f"crossrep plan {job.name}"):
            store = create_store(job)
        for line in corpus_summary(job):
            print(line)
        print(f"# {store.path}")
        for i, s in enumerate(shards(job)):
            print(f"{i}\t{s.model}\t{s.modality}\t{s.lang}")
        return 0
    if args.command == "extract":
        from .extract import run_all, run_task, shard_indices
        from .lock import folder_lock
        from .plan import create_store, write_resolved

        if args.shard:  # an array task: shard locks only, so that the tasks of an array run side by side
            indices = shard_indices(job, args.shard)
            run_task(str(write_resolved(job)), indices)
            return 0
        with folder_lock(job.out, f"crossrep extract {job.name}"):
            create_store(job)
            run_all(job)
        return 0
    if args.command in ("reduce", "aggregate", "report"):
        from . import stages
        from .plan import write_resolved

        stage = getattr(stages, f"{args.command}_stage")
        print(stage(str(write_resolved(job))))
        return 0
    if args.command == "status":
        from .status import render, render_timing

        text, ok = render(job, show_all=args.all, verify=args.verify)
        print(text)
        if args.timing:
            print(render_timing(job))
        return 0 if ok else 1
    if args.command == "repair":
        from .lock import folder_lock
        from .plan import store_plan
        from .store import ActivationStore

        with folder_lock(job.out, f"crossrep repair {job.name}"):
            store, kept = ActivationStore.rebuild(job.out, store_plan(job))
        states = [store.state(k) for k in store.plan.shards()]
        print(f"{store.path}: metadata rebuilt from the job's plan; {kept} chunks verified and kept, "
              f"{sum(s.complete for s in states)} of {len(states)} shards complete; `crossrep run` does the rest")
        return 0
    raise AssertionError(args.command)
