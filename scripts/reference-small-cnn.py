#!/usr/bin/env python3
"""An independent PyTorch reference of `small_cnn`'s cross-entropy training on Fashion-MNIST:
the same network (conv3x3 1->32, BN, ReLU, maxpool 2; 32->64 likewise; 64->128, BN, ReLU;
global average pool; fc), the same recipe as `hamos train`'s pretraining (SGD momentum 0.9,
weight decay 1e-4, cosine annealing per step, batch 128, 10 % held out, normalization 0.2860 /
0.3530, optional crop-2 + flip), printing the test accuracy after every epoch. It answers
"how accurate can this network get on this much data in this many epochs", independently of
the Rust code. Run it through scripts/reference-small-cnn.sh."""

import argparse
import gzip
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def idx(path):
    raw = gzip.open(path).read()
    nd = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(nd)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * nd).reshape(dims)


class SmallCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32)
        self.c2, self.b2 = nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64)
        self.c3, self.b3 = nn.Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128)
        self.fc = nn.Linear(128, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.b1(self.c1(x))), 2)
        x = F.max_pool2d(F.relu(self.b2(self.c2(x))), 2)
        x = F.relu(self.b3(self.c3(x)))
        return self.fc(x.mean((2, 3)))


def augment(xb):
    n = len(xb)
    padded = F.pad(xb, (2, 2, 2, 2))
    ox, oy, flip = torch.randint(0, 5, (n,)), torch.randint(0, 5, (n,)), torch.rand(n) < 0.5
    out = torch.empty_like(xb)
    for j in range(n):
        im = padded[j, :, oy[j]:oy[j] + 28, ox[j]:ox[j] + 28]
        out[j] = im.flip(-1) if flip[j] else im
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--train-images", default="data/fashion_mnist_train-images-idx3-ubyte.gz")
    ap.add_argument("--train-labels", default="data/fashion_mnist_train-labels-idx1-ubyte.gz")
    ap.add_argument("--test-images", default="data/fashion_mnist_test-images-idx3-ubyte.gz")
    ap.add_argument("--test-labels", default="data/fashion_mnist_test-labels-idx1-ubyte.gz")
    ap.add_argument("--per-class", type=int, default=0, help="first N per class in file order (0: all)")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--lr", type=float, default=0.2)
    ap.add_argument("--augment", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    x, y = idx(args.train_images), idx(args.train_labels).astype(np.int64)
    if args.per_class:
        keep = np.concatenate([np.where(y == c)[0][:args.per_class] for c in range(10)])
        keep.sort()
        x, y = x[keep], y[keep]
    order = rng.permutation(len(x))[len(x) // 10:]  # 10 % held out, as the Rust split
    x, y = x[order], y[order]
    norm = lambda a: torch.tensor((a.astype(np.float32) / 255 - 0.2860) / 0.3530)[:, None]
    X, Y = norm(x), torch.tensor(y)
    Xt, Yt = norm(idx(args.test_images)), idx(args.test_labels)
    net = SmallCnn()
    opt = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=0.9, weight_decay=1e-4)
    batch = 128
    steps = args.epochs * (len(X) // batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    start = time.time()
    print(f"{len(X)} training images, {args.epochs} epochs, lr {args.lr}, augment {args.augment}")
    for epoch in range(args.epochs):
        net.train()
        perm = torch.randperm(len(X))
        for i in range(0, len(X) - batch + 1, batch):
            xb, yb = X[perm[i:i + batch]], Y[perm[i:i + batch]]
            if args.augment:
                xb = augment(xb)
            loss = F.cross_entropy(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        net.eval()
        with torch.no_grad():
            acc = (net(Xt).argmax(1).numpy() == Yt).mean()
        print(f"epoch {epoch + 1}: test accuracy {acc:.4f} ({time.time() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
