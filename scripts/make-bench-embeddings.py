#!/usr/bin/env python3
"""Writes clustered unit embeddings as an uncompressed .npz (`embeddings` [C*S, d] float32,
`labels` [C*S] int64), standard library only: the input of the `hamos synth` timing in the
README. Usage: make-bench-embeddings.py OUT.npz [C S d]  (default 100 1000 128, seed 0)."""
import array
import math
import random
import struct
import sys
import zipfile


def npy(values, descr, shape):
    header = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, shape)
    header += " " * (64 - (10 + len(header) + 1) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + values.tobytes()


def main():
    out = sys.argv[1]
    classes, per_class, dim = (int(v) for v in (sys.argv[2:5] or [100, 1000, 128]))
    rng = random.Random(0)
    embeddings, labels = array.array("f"), array.array("q")
    for c in range(classes):
        centre = [rng.gauss(0, 1) for _ in range(dim)]
        norm = math.sqrt(sum(x * x for x in centre))
        centre = [x / norm for x in centre]
        for _ in range(per_class):
            # Noise of norm about 0.3 around the centre, as `hamos bench synth` draws.
            v = [a + rng.gauss(0, 0.3) / math.sqrt(dim) for a in centre]
            norm = math.sqrt(sum(x * x for x in v))
            embeddings.extend(x / norm for x in v)
            labels.append(c)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        z.writestr("embeddings.npy", npy(embeddings, "<f4", (classes * per_class, dim)))
        z.writestr("labels.npy", npy(labels, "<i8", "(%d,)" % (classes * per_class)))


if __name__ == "__main__":
    main()
