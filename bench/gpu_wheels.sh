#!/usr/bin/env bash
# Download into .whl/ the Python 3.12 x86-64 wheels that bench/gpu_checks.sh installs on a GPU machine that has
# torch, CuPy, numpy, pandas, scikit-learn and matplotlib but not crossrep's other needs, at the versions of
# this checkout's .venv (so the GPU runs the code the tests here ran). `.whl/` is for the machine only: keep it
# out of git (`echo /.whl/ >> .git/info/exclude`). Usage: bash bench/gpu_wheels.sh [PYTHON]
set -euo pipefail
PY=${1:-.venv/bin/python}
NAMES="zarr numcodecs donfig google-crc32c dask distributed tornado zict tblib locket partd submitit soundfile soxr
cffi pycparser xarray transformers huggingface_hub httpx2 httpcore2 truststore click hf-xet regex"
pins=()
for name in $NAMES; do
  version=$("$PY" -m pip show "$name" 2>/dev/null | awk '/^Version:/{print $2}')
  [ -n "$version" ] || { echo "gpu_wheels: $name is not installed in $PY's environment" >&2; exit 1; }
  pins+=("$name==$version")
done
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
         manylinux2014_x86_64 manylinux1_x86_64 any; do
  platforms+=(--platform "$p")
done
mkdir -p .whl
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" -d .whl "${pins[@]}"
ls .whl | wc -l | xargs echo "gpu_wheels: wheels in .whl/:"
du -sh .whl
