"""One writer per output folder, one writer per shard: lock files that name their holder.

A lock is a small JSON file created with O_EXCL: host, pid, command, start time, a token and the Slurm jobs
that write under it. Processes started by the holder (submitit's local workers, the jobs of a Slurm
submission) inherit the token through `CROSSREP_LOCK`, or find their Slurm job id in the holder's list, and
count as the holder. A lock whose holder is gone (a dead pid on this host, Slurm jobs that have all ended) is
stale and taken over; a live one is refused, naming the holder.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import CrossrepError
from .sacct import ACTIVE, sacct_states

ENV = "CROSSREP_LOCK"
FOLDER_LOCK = ".crossrep.lock"


class LockedError(CrossrepError):
    """Another live process (or Slurm job) writes where this one wants to."""


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    command: str
    started: str
    token: str
    slurm_jobs: tuple[str, ...] = field(default_factory=tuple)

    def describe(self) -> str:
        jobs = f", Slurm jobs {', '.join(self.slurm_jobs)}" if self.slurm_jobs else ""
        return f"`{self.command}` (pid {self.pid} on {self.host}, since {self.started}{jobs})"


def alive(pid: int) -> bool:
    """The process exists on this host and has not exited (a zombie only waits to be reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _slurm_ids() -> set[str]:
    """The ids this process's Slurm job is known by (its array's id among them)."""
    return {os.environ[k] for k in ("SLURM_ARRAY_JOB_ID", "SLURM_JOB_ID") if os.environ.get(k)}


def _slurm_task() -> str | None:
    """This Slurm task's own id as sacct lists it ('12_3' in an array, else the job id)."""
    if os.environ.get("SLURM_ARRAY_JOB_ID") and os.environ.get("SLURM_ARRAY_TASK_ID"):
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")


class Lock:
    """A lock file at `path`; `what` names what it guards in messages. A folder lock counts the holder's
    children as the holder; a shard lock never does (one writer per shard), but a requeued Slurm task takes
    over the lock of its own earlier run."""

    def __init__(self, path: Path, what: str, shard: bool = False):
        self.path, self.what, self.shard = Path(path), what, shard
        self.holder: Holder | None = None  # set while this process holds it (None too when a parent does)
        self._env: str | None = None  # CROSSREP_LOCK before this process took a folder lock

    def read(self) -> Holder | None:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            return Holder(**{**raw, "slurm_jobs": tuple(raw.get("slurm_jobs", ()))})
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError):
            return Holder("?", -1, "an unreadable lock", "?", "")

    def stale(self, holder: Holder) -> bool:
        """The holder is gone: a dead pid on this host (and no active Slurm job), or only ended Slurm jobs."""
        here = holder.host == socket.gethostname()
        if holder.pid < 0:
            return False
        if here and alive(holder.pid):
            return False
        if holder.slurm_jobs:
            states = sacct_states(list(holder.slurm_jobs))
            if not states:
                return False  # cannot tell: refuse rather than risk two writers
            return not any(s in ACTIVE for s in states.values())
        return here

    def acquire(self, command: str) -> "Lock":
        token = os.environ.get(ENV, "")
        for _ in range(20):
            holder = self._create(command)
            if holder is None:
                if not self.shard:  # processes this one starts count as the holder
                    self._env = os.environ.get(ENV)
                    os.environ[ENV] = self.holder.token
                return self
            if not self.shard and ((token and holder.token == token) or (_slurm_ids() & set(holder.slurm_jobs))):
                return self  # held by a parent of this process
            rerun = self.shard and _slurm_task() is not None and _slurm_task() in holder.slurm_jobs
            if not rerun and not self.stale(holder):
                hint = ("" if holder.host == socket.gethostname() else
                        f"; if that process is gone, delete {self.path}")
                raise LockedError(f"{self.what} is in use by {holder.describe()} (lock {self.path}); wait for it "
                                  f"to end, or stop it{hint}")
            try:  # take over a stale lock: only one process can move it away
                self.path.rename(self.path.with_name(f"{self.path.name}.stale.{uuid.uuid4().hex[:8]}"))
            except FileNotFoundError:
                pass
            for old in self.path.parent.glob(f"{self.path.name}.stale.*"):
                old.unlink(missing_ok=True)
        raise LockedError(f"{self.path}: could not take the lock (it keeps changing hands)")

    def _create(self, command: str) -> Holder | None:
        """Create the lock file; None on success, else the current holder."""
        jobs = (_slurm_task(),) if self.shard and _slurm_task() else ()
        token = uuid.uuid4().hex if self.shard else os.environ.get(ENV) or uuid.uuid4().hex
        holder = Holder(socket.gethostname(), os.getpid(), command, time.strftime("%Y-%m-%dT%H:%M:%S"), token, jobs)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            for _ in range(50):  # a lock being written right now reads as empty for a moment
                current = self.read()
                if current is None:
                    return self._create(command)
                if current.pid >= 0:
                    return current
                time.sleep(0.02)
            return current
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(asdict(holder), f)
        self.holder = holder
        return None

    def add_jobs(self, ids: list[str]) -> None:
        """Record Slurm jobs that write under this lock: it stays held until they have all ended."""
        if self.holder is None:
            return
        self.holder = Holder(**{**asdict(self.holder), "slurm_jobs": tuple(self.holder.slurm_jobs) + tuple(ids)})
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(self.holder)), encoding="utf-8")
        tmp.replace(self.path)

    def release(self) -> None:
        """Remove the lock if this process holds it (not a parent's; not one handed to Slurm jobs)."""
        if self.holder is not None and (self.shard or not self.holder.slurm_jobs):
            current = self.read()
            if current is not None and current.token == self.holder.token and current.pid == self.holder.pid:
                self.path.unlink(missing_ok=True)
        if self.holder is not None and not self.shard:
            if self._env is None:
                os.environ.pop(ENV, None)
            else:
                os.environ[ENV] = self._env
        self.holder = None

    def __enter__(self) -> "Lock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def folder_lock(out: Path, command: str) -> Lock:
    """Take the lock of an output folder for `command`; its token passes to child processes."""
    return Lock(Path(out) / FOLDER_LOCK, f"output folder {out}").acquire(command)


def shard_lock(out: Path, key) -> Lock:
    """The lock of one shard group: at most one writer ever, whatever started it."""
    name = str(key).replace("/", "+")
    return Lock(Path(out) / ".locks" / f"{name}.lock", f"shard {key}", shard=True).acquire(f"extract {key}")
