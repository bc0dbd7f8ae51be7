#!/usr/bin/env bash
# Plain-sbatch path (no submitit): plan on the login node, then an extraction array over the shard indices
# (split at the cluster's MaxArraySize), the reduction after every array (afterok), the aggregation after it.
# usage: slurm/sbatch/submit.sh JOB.yaml [sbatch options for all three jobs, e.g. -p accelerated -A project]
# PARALLEL (default 32) caps the extraction tasks running at once. Logs go to the current directory.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
job=$1; shift
n=$(crossrep plan "$job" | grep -vc '^#')
max=$(scontrol show config | awk '/^MaxArraySize/ {print $3}')
max=${max:-1001}
deps=()
for ((start = 0; start < n; start += max)); do
  count=$(( n - start < max ? n - start : max ))
  id=$(sbatch --parsable --array=0-$((count - 1))%"${PARALLEL:-32}" --export=ALL,CROSSREP_SHARD_OFFSET=$start \
       "$@" "$here/extract.sbatch" "$job")
  deps+=("${id%%;*}")
  echo "extract: array job ${id%%;*} (shards $start-$((start + count - 1)))"
done
dep=$(IFS=:; echo "${deps[*]}")
reduce=$(sbatch --parsable --dependency=afterok:"$dep" --kill-on-invalid-dep=yes "$@" "$here/reduce.sbatch" "$job")
echo "reduce: job ${reduce%%;*} (afterok:$dep)"
agg=$(sbatch --parsable --dependency=afterok:"${reduce%%;*}" --kill-on-invalid-dep=yes "$@" "$here/aggregate.sbatch" "$job")
echo "aggregate: job ${agg%%;*} (afterok:${reduce%%;*})"
echo "follow: crossrep status $job"
