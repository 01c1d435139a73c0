#!/usr/bin/env bash
# Installs the CPU minimum of libtorch 2.13 (from the torch==2.13.0 wheel on PyPI) into a venv
# and prints the LIBTORCH path on stdout. Idempotent: a second run only prints the path.
#   HAMOS_TORCH_VENV  where the venv lives (default: <repo>/.venv-torch)
#   HAMOS_TORCH_FULL=1  install the full torch wheel with its CUDA dependencies (for --features tch/cuda)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${HAMOS_TORCH_VENV:-$repo/.venv-torch}
py=${PYTHON:-python3}
marker=$venv/.hamos-libtorch-ok
if [ ! -f "$marker" ]; then
  echo "installing libtorch 2.13 into $venv (about 1.25 GB, CPU minimum)" >&2
  "$py" -m venv "$venv"
  if [ "${HAMOS_TORCH_FULL:-0}" = 1 ]; then
    "$venv/bin/pip" install -q torch==2.13.0 >&2
  else
    "$venv/bin/pip" install -q --no-deps torch==2.13.0 nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85 >&2
  fi
  touch "$marker"
fi
torch_dir=$("$venv/bin/python" - <<'PY'
import pathlib, sysconfig
print(pathlib.Path(sysconfig.get_paths()["purelib"]) / "torch")
PY
)
[ -f "$torch_dir/lib/libtorch_cpu.so" ] || { echo "libtorch not found under $torch_dir; delete $venv and rerun" >&2; exit 1; }
echo "$torch_dir"
