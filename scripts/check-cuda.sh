#!/usr/bin/env bash
# Checks that the `cuda` features still compile (`cargo check` only: nothing runs on a GPU).
# Installs nvcc and the headers of the CUDA 13.0 line from PyPI into a venv (idempotent: a second
# run reuses it), then runs `cargo check` with the cuda features of hamos-candle, hamos-tch and hamos.
# candle's kernels (candle-kernels) are really compiled by nvcc here, so this needs no GPU but
# does need a host C++ compiler that nvcc 13.0 accepts (gcc <= 15).
# The first run takes long (here, 2 cores under load: 65 min; candle's kernels are compiled twice,
# because torch-sys's build dependencies change the features of cudaforge's in the hamos check);
# later runs reuse CARGO_TARGET_DIR and only re-check the workspace crates (seconds).
#   HAMOS_CUDA_VENV    where the venv lives (default: <repo>/.venv-cuda)
#   CUDA_COMPUTE_CAP   the GPU architecture to build candle's kernels for (default: 90, H100)
#   CARGO_TARGET_DIR   the target directory (default: <repo>/target-cuda, so the CPU build is kept)
#   HAMOS_CUDA_CRATES  the checks to run, a subset of "candle tch hamos" (default: all three)
# Exits non-zero if any check fails; prints a PASS/FAIL line per check and the elapsed time.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${HAMOS_CUDA_VENV:-$repo/.venv-cuda}
py=${PYTHON:-python3}
marker=$venv/.hamos-cuda-ok
# The CUDA 13.0 line. Since CUDA 13 every wheel lays its files into one tree,
# site-packages/nvidia/cu13/{bin,include,lib,nvvm}, so that tree is itself a CUDA root.
pkgs=(
  nvidia-cuda-nvcc==13.0.88    # nvcc, ptxas, fatbinary, nvlink, bin/nvcc.profile
  nvidia-cuda-crt==13.0.88     # include/crt/host_config.h and friends (split out of nvcc in 13)
  nvidia-nvvm==13.0.88         # nvvm/bin/cicc, the device front end nvcc calls
  nvidia-cuda-runtime==13.0.96 # cuda_runtime.h, cuda.h, cuda_fp16.h, cuda_bf16.h, mma.h, libcudart
  nvidia-cuda-cccl==13.0.85    # cub/, thrust/, cuda/std/ (needed by cuda_fp16.h in 13)
)
start=$(date +%s)
if [ ! -f "$marker" ]; then
  echo "installing nvcc 13.0 and CUDA headers into $venv (about 200 MB)" >&2
  "$py" -m venv "$venv"
  "$venv/bin/pip" install -q --no-deps "${pkgs[@]}" >&2
  touch "$marker"
fi
cuda_root=$("$venv/bin/python" - <<'PY'
import pathlib, sysconfig
print(pathlib.Path(sysconfig.get_paths()["purelib"]) / "nvidia" / "cu13")
PY
)
[ -x "$cuda_root/bin/nvcc" ] || { echo "nvcc not found under $cuda_root; delete $venv and rerun" >&2; exit 1; }
# cudaforge (candle-kernels' build script) and cudarc look for <root>/lib64; the wheels ship lib/.
[ -e "$cuda_root/lib64" ] || ln -s lib "$cuda_root/lib64"

export CUDA_ROOT=$cuda_root CUDA_PATH=$cuda_root CUDA_HOME=$cuda_root
export PATH=$cuda_root/bin:$PATH
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target-cuda}
nvcc_version=$(nvcc --version | sed -n 's/.*, V\([0-9.]*\)$/\1/p')
echo "nvcc $nvcc_version at $cuda_root/bin/nvcc, CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP, CARGO_TARGET_DIR=$CARGO_TARGET_DIR" >&2

cd "$repo"
declare -a results=()
failed=0
run_check() { # name, cargo args...
  local name=$1 t0 rc
  shift
  t0=$(date +%s)
  echo "== cargo check $*" >&2
  set +e
  cargo check "$@" >&2
  rc=$?
  set -e
  local verdict=PASS
  [ "$rc" = 0 ] || { verdict=FAIL; failed=1; }
  results+=("$(printf '%-5s %-14s (%ds) cargo check %s' "$verdict" "$name" $(($(date +%s) - t0)) "$*")")
}

crates=${HAMOS_CUDA_CRATES:-candle tch hamos}
for c in $crates; do
  case $c in
    candle) run_check hamos-candle -p hamos-candle --features cuda ;;
    tch | hamos)
      if [ -z "${LIBTORCH:-}" ]; then
        LIBTORCH=$(bash "$repo/scripts/install-libtorch.sh")
        export LIBTORCH LIBTORCH_BYPASS_VERSION_CHECK=1
      fi
      if [ "$c" = tch ]; then
        run_check hamos-tch -p hamos-tch --features cuda
      else
        run_check hamos -p hamos --features cuda,tch
      fi
      ;;
    *) echo "unknown check '$c' in HAMOS_CUDA_CRATES (use candle, tch, hamos)" >&2; exit 2 ;;
  esac
done

echo
echo "CUDA feature check (nvcc $nvcc_version, sm_$CUDA_COMPUTE_CAP):"
printf '  %s\n' "${results[@]}"
echo "elapsed: $(($(date +%s) - start))s"
[ "$failed" = 0 ] && echo "RESULT: PASS" || echo "RESULT: FAIL"
exit "$failed"
