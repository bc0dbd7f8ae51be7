#!/usr/bin/env bash
# The checks that need a GPU, in one run on a GPU machine with CUDA, torch and CuPy installed:
#   1. tests/test_gpu.py and the reduction's backend test (CuPy against NumPy, CUDA extraction against CPU),
#   2. bench/backend_speed.py (the reduction and retrieval on NumPy threads and on CuPy, side by side),
#   3. bench/extract_speed.py --gpu (SeamlessM4T v2's encoders at real size through the extraction).
# Logs go to $OUT (default /tmp/crossrep-gpu-checks). Packages missing on the machine can come as wheels in
# .whl/ (bench/gpu_wheels.sh downloads them; installed into /tmp/site first). Stage limits in seconds:
# TEST_SECONDS, EXTRACT_SECONDS, BACKEND_SECONDS; BACKEND_ARGS go to backend_speed.py.
# Usage: bash bench/gpu_checks.sh
set -uo pipefail
OUT=${OUT:-/tmp/crossrep-gpu-checks}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/machine.txt"
python3 -c "import torch, cupy, numpy, zarr, transformers, crossrep
print('torch', torch.__version__, 'cupy', cupy.__version__, 'numpy', numpy.__version__, 'zarr', zarr.__version__,
      'transformers', transformers.__version__, 'crossrep', crossrep.__version__)" | tee -a "$OUT/machine.txt"

timeout "${TEST_SECONDS:-200}" python3 -m pytest -q -p no:cacheprovider -rs -s tests/test_gpu.py \
  tests/test_reduce.py::test_backend_choice 2>&1 | grep -vE "Loading|Writing|it/s\]" | tee "$OUT/tests.log"
timeout "${EXTRACT_SECONDS:-190}" python3 bench/extract_speed.py --gpu 2>&1 | grep -vE "Loading|Writing|it/s\]|layer_idx" \
  | tee "$OUT/extract_speed.log"
timeout "${BACKEND_SECONDS:-200}" python3 bench/backend_speed.py --workers "$(nproc)" ${BACKEND_ARGS:-} 2>&1 \
  | tee "$OUT/backend_speed.log"
