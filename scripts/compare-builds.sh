#!/usr/bin/env bash
# Compares `hamos bench synth` timings of several builds on a VM whose speed drifts: runs the
# builds in turn, PAIRS times (`--runs 15 --samplers hmc`), and prints each build's median of
# those per-run medians and the median of its paired differences against the first build (the
# lower middle value for an even count).
#
#   scripts/compare-builds.sh PAIRS CLASSES BINARY...
#   e.g. cp target/release/hamos /tmp/new; scripts/compare-builds.sh 8 10 /tmp/old /tmp/new
#
# Environment per build: wrap the binary in a script (`RAYON_NUM_THREADS=1 exec BIN "$@"`).
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 PAIRS CLASSES BINARY..." >&2
    exit 2
fi
pairs=$1 classes=$2
shift 2
out=$(mktemp)
for ((i = 1; i <= pairs; i++)); do
    for b in "$@"; do
        ms=$("$b" bench synth --runs 15 --samplers hmc --classes "$classes" 2>/dev/null | tail -1 | awk -F'|' '{print $3}')
        echo "$i $b $ms" >>"$out"
    done
done
first=$1
median() { sort -n | awk '{v[NR] = $1} END {printf "%.2f %.2f %.2f %d\n", v[int((NR + 1) / 2)], v[1], v[NR], NR}'; }
for b in "$@"; do
    read -r med lo hi n < <(awk -v b="$b" '$2 == b {print $3}' "$out" | median)
    read -r dmed dlo dhi _ < <(awk -v b="$b" -v first="$first" \
        '$2 == first {base[$1] = $3} $2 == b {t[$1] = $3} END {for (i in t) print t[i] - base[i]}' "$out" | median)
    echo "$b: median $med ms (min $lo, max $hi, $n runs); paired difference against $first: median $dmed ms ($dlo to $dhi)"
done
rm -f "$out"
