#!/usr/bin/env bash
# Start a real single-node Slurm cluster as root, everything under $CROSSREP_SLURM_DIR (default
# /tmp/crossrep-slurm): munge (unless one already answers), MariaDB + slurmdbd (accounting, so sacct works),
# slurmctld and slurmd with 4 fake GPUs as gres. Prints the line to export SLURM_CONF. Idempotent.
# MaxArraySize comes from $CROSSREP_SLURM_MAX_ARRAY_SIZE (default 1001, Slurm's own default).
set -euo pipefail
DIR=${CROSSREP_SLURM_DIR:-/tmp/crossrep-slurm}
HOST=$(hostname -s)
CPUS=$(getconf _NPROCESSORS_ONLN)  # not nproc: it follows OMP_NUM_THREADS, which Dask sets
MEM=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 2048 ))
MAXARRAY=${CROSSREP_SLURM_MAX_ARRAY_SIZE:-1001}
PORT=${CROSSREP_SLURM_DB_PORT:-3307}
export SLURM_CONF=$DIR/slurm.conf
mkdir -p "$DIR"/{state,spool,log,db,run,started}
trap 'echo "dev cluster: start failed at line $LINENO (logs in $DIR/log)" >&2' ERR

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
started() { cp "$1" "$DIR/started/$2.pid"; }
wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local t=$1 what=$2; shift 2
  for _ in $(seq $((t * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "dev cluster: $what did not come up; see $DIR/log" >&2; exit 1
}

if alive "$DIR/run/slurmctld.pid" && alive "$DIR/run/slurmd.pid" && sinfo -h >/dev/null 2>&1; then
  echo "# already running"
  echo "export SLURM_CONF=$SLURM_CONF"; exit 0
fi

# munge: reuse one that answers, else start ours
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
  mkdir -p /run/munge && chown munge:munge /run/munge
  chown munge:munge "$DIR/run"
  su -s /bin/sh munge -c "/usr/sbin/munged --pid-file=$DIR/run/munged.pid"
  chown root:root "$DIR/run"
  wait_for 10 munge sh -c 'munge -n | unmunge'
  started "$DIR/run/munged.pid" munged
fi

# MariaDB for slurmdbd
if ! alive "$DIR/run/mariadb.pid"; then
  [ -d "$DIR/db/mysql" ] || mariadb-install-db --user=root --datadir="$DIR/db" >"$DIR/log/mariadb-install.log" 2>&1
  setsid mariadbd --user=root --datadir="$DIR/db" --socket="$DIR/run/mysql.sock" --port="$PORT" \
    --bind-address=127.0.0.1 --pid-file="$DIR/run/mariadb.pid" --log-error="$DIR/log/mariadb.log" \
    </dev/null >/dev/null 2>&1 &
  wait_for 30 MariaDB mariadb --socket="$DIR/run/mysql.sock" -u root -e "select 1"
  started "$DIR/run/mariadb.pid" mariadb
  mariadb --socket="$DIR/run/mysql.sock" -u root -e "
    CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'crossrep-dev';
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'crossrep-dev';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
fi

for i in 0 1 2 3; do [ -c "$DIR/fakegpu$i" ] || mknod "$DIR/fakegpu$i" c 1 3; done

cat > "$DIR/slurmdbd.conf" <<CONF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$PORT
StorageUser=slurm
StoragePass=crossrep-dev
StorageLoc=slurm_acct_db
LogFile=$DIR/log/slurmdbd.log
PidFile=$DIR/run/slurmdbd.pid
CONF
chmod 600 "$DIR/slurmdbd.conf"

cat > "$DIR/gres.conf" <<CONF
AutoDetect=off
NodeName=$HOST Name=gpu File=$DIR/fakegpu[0-3]
CONF

cat > "$DIR/slurm.conf" <<CONF
ClusterName=crossrep-dev
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
MaxArraySize=$MAXARRAY
JobRequeue=1
KillWait=2
GresTypes=gpu
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStorageTRES=gres/gpu
JobAcctGatherType=jobacct_gather/linux
SchedulerParameters=sched_interval=1
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM Gres=gpu:4 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF

if ! alive "$DIR/run/slurmdbd.pid"; then
  slurmdbd -f "$DIR/slurmdbd.conf" 2>>"$DIR/log/slurmdbd.log" || slurmdbd 2>>"$DIR/log/slurmdbd.log"
  wait_for 30 slurmdbd test -s "$DIR/run/slurmdbd.pid"
  started "$DIR/run/slurmdbd.pid" slurmdbd
fi
wait_for 30 "slurmdbd connection" sacctmgr -n show cluster
sacctmgr -n -P show cluster format=cluster | grep -qx crossrep-dev || sacctmgr -i add cluster crossrep-dev >/dev/null
sacctmgr -n -P show account format=account | grep -qx crossrep || sacctmgr -i add account crossrep >/dev/null
sacctmgr -n -P show user format=user | grep -qx root || sacctmgr -i add user root account=crossrep >/dev/null

if ! alive "$DIR/run/slurmctld.pid"; then
  slurmctld
  wait_for 30 slurmctld test -s "$DIR/run/slurmctld.pid"
  started "$DIR/run/slurmctld.pid" slurmctld
fi
if ! alive "$DIR/run/slurmd.pid"; then
  slurmd
  wait_for 30 slurmd test -s "$DIR/run/slurmd.pid"
  started "$DIR/run/slurmd.pid" slurmd
fi
wait_for 60 "the node" sh -c "sinfo -h -o %T | grep -qE '^(idle|mixed|allocated)'"
echo "export SLURM_CONF=$SLURM_CONF"
