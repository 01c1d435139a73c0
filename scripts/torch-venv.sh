# Sourced by the scripts that run PyTorch on the CPU (make-resnet-fixture.sh,
# reference-small-cnn.sh). Makes a throwaway venv with torch==2.13.0 from PyPI *without* its
# multi-GB CUDA dependencies: the wheel's libraries still link against cuBLAS, cuDNN, NCCL, ...,
# so make-resnet-fixture.py --cuda-stubs builds small stand-ins for those (cc, nm, readelf
# needed) and `import torch` then works on the CPU. Nothing under .venv-torch is touched.
#   HAMOS_FIXTURE_VENV  where the venv lives (default: /tmp/fixture-venv)
# Defines: $venv, and torch_python ARGS... (runs the venv's python with the stubs on the path).
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${HAMOS_FIXTURE_VENV:-/tmp/fixture-venv}
py=${PYTHON:-python3}
marker=$venv/.hamos-fixture-ok
if [ ! -f "$marker" ]; then
  echo "making $venv (torch 2.13.0 CPU minimum, about 1.3 GB)" >&2
  "$py" -m venv "$venv"
  "$venv/bin/pip" install -q --no-deps torch==2.13.0 nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85 >&2
  # torch's small pure-Python dependencies, listed in full (--no-deps keeps pip from
  # reporting the CUDA packages that torch asks for and we leave out).
  "$venv/bin/pip" install -q --no-deps typing_extensions 'sympy>=1.13.3' mpmath filelock jinja2 MarkupSafe networkx fsspec numpy >&2
  # Optional: only for the /tmp .safetensors copy of the state_dict.
  "$venv/bin/pip" install -q --no-deps safetensors >&2 || echo "safetensors not installed; skipping that copy" >&2
  touch "$marker"
fi
stubs=$venv/cuda-stubs
[ -d "$stubs" ] || "$venv/bin/python" "$repo/scripts/make-resnet-fixture.py" --cuda-stubs "$stubs"
torch_python() {
  LD_LIBRARY_PATH=$stubs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} "$venv/bin/python" "$@"
}
