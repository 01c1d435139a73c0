#!/usr/bin/env bash
# Puts the full Fashion-MNIST (60000 training, 10000 test images, gzipped idx) into the folder
# given as argument, from the Debian package `dataset-fashion-mnist` (MIT; see data/README.md).
#   scripts/fetch-fashion-mnist.sh DIR
# Needs apt-get with the package lists (`apt-get update` once) and dpkg-deb. Elsewhere, the same
# four files are at https://github.com/zalandoresearch/fashion-mnist (data/fashion).
set -euo pipefail
if [ $# -ne 1 ]; then
  echo "usage: $0 DIR" >&2
  exit 2
fi
mkdir -p "$1"
dir=$(cd "$1" && pwd)
version=0.0~git20200523.55506a9-1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

(cd "$work" && apt-get download "dataset-fashion-mnist=$version") || {
  echo "apt-get download failed: run \`apt-get update\` first (Debian/Ubuntu only)" >&2
  exit 1
}
dpkg-deb -x "$work"/dataset-fashion-mnist_*.deb "$work/deb"
cp "$work"/deb/usr/share/datasets/fashion-mnist/*-ubyte.gz "$dir/"
# The upstream files' sums, so that a changed package does not go unnoticed.
(cd "$dir" && sha256sum --quiet -c - <<'SUMS'
cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa  t10k-images-idx3-ubyte.gz
8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05  t10k-labels-idx1-ubyte.gz
b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7  train-images-idx3-ubyte.gz
0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056  train-labels-idx1-ubyte.gz
SUMS
)
cat <<EOF
Fashion-MNIST is in $dir. To train on all of it, put this in a run config:

[data.train]
format = "idx"
images = "$dir/train-images-idx3-ubyte.gz"
labels = "$dir/train-labels-idx1-ubyte.gz"

[data.test]
format = "idx"
images = "$dir/t10k-images-idx3-ubyte.gz"
labels = "$dir/t10k-labels-idx1-ubyte.gz"
EOF
