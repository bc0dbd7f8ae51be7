"""`<out>/slurm.json`: what was submitted to Slurm (array tasks, their shards and logs), for `crossrep status`.
Read without submitit or torch, so that status stays light."""

from __future__ import annotations

import json
from pathlib import Path

from ..paths import located

RECORD = "slurm.json"


def read_record(out: Path) -> dict:
    """The submissions, their log paths (recorded relative to `out`: `<out>/logs/...`) inside `out` as it is now."""
    path = Path(out) / RECORD
    return located(json.loads(path.read_text()), out) if path.is_file() else {"submissions": []}


def shard_tasks(out: Path) -> dict[int, dict]:
    """For each shard index, its latest Slurm task: {'task': '12_3', 'log': path}."""
    tasks: dict[int, dict] = {}
    for sub in read_record(out)["submissions"]:
        for task in sub["extract"]:
            for i in task["shards"]:
                tasks[i] = {"task": task["id"], "log": task["log"]}
    return tasks
