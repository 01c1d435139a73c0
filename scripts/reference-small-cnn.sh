#!/usr/bin/env bash
# Trains small_cnn with PyTorch 2.13 on the CPU as an independent reference of what the network
# reaches on the shipped data (see scripts/reference-small-cnn.py for the recipe and options):
#   scripts/reference-small-cnn.sh --per-class 1200 --epochs 8
# The venv is scripts/torch-venv.sh's (made on first use, about 1.3 GB).
set -euo pipefail
source "$(dirname "$0")/torch-venv.sh"
cd "$repo"
torch_python "$repo/scripts/reference-small-cnn.py" "$@"
