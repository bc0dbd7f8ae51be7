"""Cluster profiles (`slurm/*.yaml`): partition, account, setup lines and per-stage resources, validated once."""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from pathlib import Path

import yaml

from .config import Section
from .errors import ConfigError

BUNDLED = ("horeka", "dev")


@dataclass(frozen=True)
class StageResources:
    partition: str | None
    gpus: int  # per shard (extract) or per job
    cpus: int  # per shard (extract) or per job
    mem_gb: int  # per shard (extract) or per job
    time_min: int


@dataclass(frozen=True)
class SlurmProfile:
    name: str
    partition: str
    account: str | None
    qos: str | None
    setup: tuple[str, ...]  # shell lines run before each task: module loads, environment activation
    additional: dict  # further #SBATCH directives, e.g. {constraint: "..."}
    array_parallelism: int  # extraction tasks running at once
    shards_per_node: int  # k > 1: one allocation runs k shards, one per GPU (for whole-node clusters)
    extract: StageResources
    reduce: StageResources
    aggregate: StageResources


def load_profile(spec: str) -> SlurmProfile:
    """A profile from a YAML path or a bundled name; errors quote the file and key."""
    path = Path(spec)
    if path.is_file():
        text, where = path.read_text(encoding="utf-8"), str(path)
    elif spec in BUNDLED:
        text = importlib.resources.files("crossrep.slurm").joinpath(f"{spec}.yaml").read_text(encoding="utf-8")
        where = f"{spec} (bundled slurm/{spec}.yaml)"
    else:
        raise ConfigError(f"cluster profile {spec!r}: no such file, and not a bundled profile "
                          f"({', '.join(BUNDLED)})")
    try:
        return _parse(yaml.safe_load(text), path.stem if path.is_file() else spec)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {exc}") from None


def _stage(s: Section, gpus: int) -> StageResources:
    return StageResources(partition=s.get("partition", None), gpus=s.int("gpus", gpus), cpus=s.int("cpus", 1, 1),
                          mem_gb=s.int("mem_gb", 4, 1), time_min=s.int("time_min", 60, 1))


def _parse(raw, name: str) -> SlurmProfile:
    top = Section(raw, "")
    setup = top.get("setup", [])
    if not isinstance(setup, list) or not all(isinstance(x, str) for x in setup):
        raise ConfigError("setup: expected a list of shell lines")
    additional = top.get("additional", {})
    if not isinstance(additional, dict):
        raise ConfigError("additional: expected a mapping of sbatch directives")
    sections = {k: Section(top.get(k, {}), k) for k in ("extract", "reduce", "aggregate")}
    ex = sections["extract"]
    parallel, per_node = ex.int("array_parallelism", 32, 1), ex.int("shards_per_node", 1, 1)
    stages = {k: _stage(sec, 1 if k == "extract" else 0) for k, sec in sections.items()}
    for sec in sections.values():
        sec.done()
    profile = SlurmProfile(
        name=name, partition=top.str("partition"), account=top.get("account", None), qos=top.get("qos", None),
        setup=tuple(setup), additional=dict(additional), array_parallelism=parallel, shards_per_node=per_node,
        extract=stages["extract"], reduce=stages["reduce"], aggregate=stages["aggregate"],
    )
    top.done()
    return profile
