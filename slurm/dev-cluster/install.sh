#!/usr/bin/env bash
# Install the Debian packages of a single-node development Slurm cluster (as root): munge, slurmctld, slurmd,
# the client tools, slurmdbd and MariaDB for accounting (sacct).
set -euo pipefail
need=()
for cmd in munged slurmctld slurmd sbatch slurmdbd mariadbd; do
  command -v "$cmd" >/dev/null 2>&1 || need+=("$cmd")
done
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "dev cluster: missing ${need[*]} and cannot install them (needs root and apt-get)" >&2
  exit 3
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge slurmdbd mariadb-server >/dev/null
