"""Model families: one folder each under crossrep/models/, found by the `family.yaml` it carries.

`family.yaml` says what jobs, plans and `--help` need without importing the family's code (no torch): its name
(a job's `models[i].adapter`), the Adapter class its package exports, whether text and speech of a language go
through one pass (`joint`), its points and a one-line summary. Adding a family is adding a folder; nothing else
lists families.
"""

from __future__ import annotations

import functools
import importlib
import importlib.resources
from dataclasses import dataclass

import yaml

from ..errors import ConfigError

DESCRIPTION = "family.yaml"
KEYS = ("name", "adapter", "joint", "points", "summary")


@dataclass(frozen=True)
class Family:
    """A model family as its folder describes it."""

    name: str  # what a job's `models[i].adapter` names
    folder: str  # the package under crossrep.models
    adapter: str  # the Adapter class the package exports
    joint: bool  # text and speech of one language in one forward pass (audio LLMs)
    points: str  # the points it offers, for --help
    summary: str

    @property
    def line(self) -> str:
        """One line for `--help` and error messages."""
        return f"{self.summary}{'; joint pass' if self.joint else ''}; {self.points}"


@functools.lru_cache(maxsize=1)
def families() -> dict[str, Family]:
    """Every family folder of this package, by name (sorted)."""
    found = {}
    for folder in sorted(importlib.resources.files(__name__).iterdir(), key=lambda p: p.name):
        path = folder / DESCRIPTION
        if not path.is_file():
            continue
        family = _read(path, folder.name)
        if family.name in found:
            raise ConfigError(f"{path}: family {family.name!r} is also described by "
                              f"crossrep/models/{found[family.name].folder}/{DESCRIPTION}")
        found[family.name] = family
    return dict(sorted(found.items()))


def _read(path, folder: str) -> Family:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with {', '.join(KEYS)}")
    missing = [k for k in KEYS if k not in raw]
    unknown = [k for k in raw if k not in KEYS]
    if missing or unknown:
        raise ConfigError(f"{path}: " + "; ".join(([f"missing {', '.join(missing)}"] if missing else [])
                                                  + ([f"unknown key {', '.join(unknown)}"] if unknown else [])))
    if not isinstance(raw["joint"], bool):
        raise ConfigError(f"{path}: joint: expected true or false, got {raw['joint']!r}")
    return Family(str(raw["name"]), folder, str(raw["adapter"]), raw["joint"], str(raw["points"]),
                  str(raw["summary"]))


def family(name: str, key: str = "adapter") -> Family:
    """The family a job names; `key` is where the job names it, quoted in the error."""
    known = families()
    if name not in known:
        raise ConfigError(f"{key}: unknown model family {name!r} (known: {', '.join(known)})")
    return known[name]


def adapter_class(name: str):
    """The Adapter class of family `name` (imports the family's code)."""
    f = family(name)
    return getattr(importlib.import_module(f"{__name__}.{f.folder}"), f.adapter)
