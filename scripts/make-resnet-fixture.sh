#!/usr/bin/env bash
# Regenerates nn/tests/fixtures/resnet18_cifar.json (see nn/tests/fixtures/README.md) with
# PyTorch 2.13 on the CPU (the venv: scripts/torch-venv.sh).
#   extra arguments go to make-resnet-fixture.py (--out PATH, --safetensors PATH)
set -euo pipefail
source "$(dirname "$0")/torch-venv.sh"
torch_python "$repo/scripts/make-resnet-fixture.py" "$@"
