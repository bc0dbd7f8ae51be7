#!/usr/bin/env bash
# Stop exactly the daemons start.sh started (by the pids it recorded), newest first.
set -uo pipefail
DIR=${CROSSREP_SLURM_DIR:-/tmp/crossrep-slurm}
for name in slurmd slurmctld slurmdbd mariadb munged; do
  f="$DIR/started/$name.pid"
  [ -f "$f" ] || continue
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  fi
  rm -f "$f"
done
