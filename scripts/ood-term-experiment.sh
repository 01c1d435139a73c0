#!/usr/bin/env bash
# The OOD-term comparison of the README ("Does HamOS beat the same fine-tuning without
# outliers?"): for each seed, `hamos run` (pretrained post-hoc scorers, HamOS with the paper's
# `uniform` term, the same fine-tuning without outliers), then `hamos train` + `hamos eval` for
# each other OOD-term variant on the same cached pretrained classifier; finally one `hamos table`
# per variant and the README's combined table (scripts/ood-term-table.py, into OUT_DIR/table.md).
# Everything else is the shipped preset. Finished steps are skipped when rerun.
#   usage: scripts/ood-term-experiment.sh OUT_DIR [SEEDS (default "0 1 2")] [extra --set args...]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: $0 OUT_DIR [SEEDS] [--set KEY=VALUE ...]}
seeds=${2:-0 1 2}
shift $(( $# >= 2 ? 2 : 1 ))
hamos=${HAMOS_BIN:-./target/release/hamos}
variants=(as_printed released outlier_negatives)
mkdir -p "$out"
for seed in $seeds; do
  run="$out/run-s$seed"
  [ -f "$run/metrics.json" ] || "$hamos" run --set seed="$seed" --set train.ood_loss=uniform "$@" --out "$run"
  for v in "${variants[@]}"; do
    dir="$out/$v-s$seed"
    if [ ! -f "$dir/eval/metrics.json" ]; then
      rm -rf "$dir"
      "$hamos" train --set seed="$seed" --set train.ood_loss="$v" "$@" --out "$dir"
      "$hamos" eval --run "$dir" --scorers knn,knn_features --out "$dir/eval"
    fi
  done
done
runs() { for seed in $seeds; do echo "$out/$1-s$seed$2"; done; }
"$hamos" table $(runs run "") --out "$out/table-uniform-and-baselines.md"
for v in "${variants[@]}"; do
  "$hamos" table $(runs "$v" /eval) --out "$out/table-$v.md"
done
python3 scripts/ood-term-table.py "$out" $seeds | tee "$out/table.md"
