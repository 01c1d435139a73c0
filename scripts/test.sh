#!/usr/bin/env bash
# Runs every test of the workspace on both backends: candle (pure Rust) and tch (libtorch, CPU);
# the conformance suite, the sampler properties and the cross-backend agreement cover both.
# Installs libtorch into .venv-torch through scripts/install-libtorch.sh when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
LIBTORCH=$(bash scripts/install-libtorch.sh)
export LIBTORCH LIBTORCH_BYPASS_VERSION_CHECK=1
# Two shared cores: keep OpenMP and rayon from oversubscribing while tests run in parallel.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} RAYON_NUM_THREADS=${RAYON_NUM_THREADS:-2}
cargo test --workspace --features hamos-integration-tests/tch,hamos-samplers/tch-tests,hamos-nn/tch-tests "$@"
