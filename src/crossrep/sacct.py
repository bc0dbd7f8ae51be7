"""Slurm accounting: the state of jobs and array tasks, from `sacct` (empty where Slurm is not installed)."""

from __future__ import annotations

import re
import subprocess

ACTIVE = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SUSPENDED",
          "CONFIGURING", "COMPLETING", "STAGE_OUT", "SIGNALING"}


def sacct_states(job_ids: list[str]) -> dict[str, str]:
    """State of each job or array task id (e.g. '12_3'), from sacct; {} where sacct is unavailable."""
    if not job_ids:
        return {}
    try:
        out = subprocess.run(["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", ",".join(job_ids)],
                             capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    states = {}
    for line in out.splitlines():
        jid, _, state = line.partition("|")
        states[jid] = state.split()[0] if state else "UNKNOWN"
        match = re.fullmatch(r"(\d+)_\[(\d+)-(\d+)(?:%\d+)?\]", jid)  # pending array tasks listed as a range
        if match:
            for k in range(int(match.group(2)), int(match.group(3)) + 1):
                states.setdefault(f"{match.group(1)}_{k}", states[jid])
    return states
