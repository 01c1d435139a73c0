#!/usr/bin/env python3
"""Regenerates nn/tests/fixtures/resnet18_cifar.json: PyTorch reference logits of OpenOOD's
ResNet18_32x32 under deterministic, formula-generated weights, so that a Rust test can rebuild
the same weights under the same PyTorch names and compare logits without shipping 45 MB of them.

Run it through scripts/make-resnet-fixture.sh, which makes the venv (torch==2.13.0 from PyPI
without its CUDA dependencies) and runs `--cuda-stubs DIR` first.

  --cuda-stubs DIR   build no-op stand-ins for the CUDA libraries that the PyPI torch wheel
                     links against but that the venv lacks (cuBLAS, cuDNN, NCCL, ...), so that
                     `import torch` works on a CPU-only machine without multi-GB downloads.
                     Any call into a stand-in aborts with the symbol's name; CPU code never
                     makes one. Run Python with LD_LIBRARY_PATH=DIR afterwards.
  --out PATH         the fixture to write (default: <repo>/nn/tests/fixtures/resnet18_cifar.json)
  --safetensors PATH also save the state_dict there when the safetensors package is installed
                     (default: /tmp/resnet18_fixture.safetensors; "" to skip)
"""

import argparse
import json
import math
import os
import pathlib
import re
import subprocess
import sys
import sysconfig

REPO = pathlib.Path(__file__).resolve().parent.parent

FORMULA = (
    "sin is the C library's double sin (glibc; Rust's f64::sin), its argument rounded in "
    "float64 as written: (0.37*i) + (1.3*j). "
    "Every tensor of model.state_dict() is visited in state_dict order with index j = 0, 1, 2, ... "
    "(num_batches_tracked entries count for j but keep their value 0, int64, shape []). "
    "Element i is the tensor's flat row-major index and s = sin(0.37*i + 1.3*j), computed in "
    "float64 then cast to float32. Conv/Linear '*.weight' (rank >= 2): s * sqrt(3/fan_in), "
    "fan_in = product of the dims after the first. BatchNorm 'weight': 1 + 0.1*s. BatchNorm "
    "'bias' and 'fc.bias': 0.1*s. 'running_mean': 0.05*s. 'running_var': 1 + 0.25*(1 + s). "
    "Input x of shape [2,3,32,32]: x[i] = 1.5*sin(0.11*i) (float64 -> float32), i row-major. "
    "Model in eval mode (BatchNorm uses running stats, eps 1e-5). logits_f64 come from a "
    ".double() copy of the model and input (the float32 values cast up); logits_f32 from the "
    "float32 model; features_f64 are the 512 pooled penultimate features of sample 0 "
    "(float64 run), rounded to 8 significant digits."
)


# --------------------------------------------------------------------------------------------
# CUDA stand-ins (no torch import here)


def _run(cmd, **kw):
    res = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stderr}")
    return res.stdout


def _torch_dir():
    return pathlib.Path(sysconfig.get_paths()["purelib"]) / "torch"


def _dyn_symbols(path, undefined):
    """(name, version or None, weak) of the dynamic symbols of `path`, defined or undefined."""
    flag = "--undefined-only" if undefined else "--defined-only"
    out = _run(["nm", "-D", flag, str(path)])
    syms = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        kind, name = parts[-2], parts[-1]
        version = None
        if "@" in name:
            name, _, version = name.partition("@")
            version = version.lstrip("@")
        syms.append((name, version, kind in ("w", "v")))
    return syms


def _version_needs(path):
    """{version name: library file} from the .gnu.version_r section of `path`."""
    out = _run(["readelf", "-V", "--wide", str(path)])
    needs, current = {}, None
    for line in out.splitlines():
        m = re.search(r"File: (\S+)", line)
        if m:
            current = m.group(1)
            continue
        m = re.search(r"Name: (\S+)\s+Flags", line)
        if m and current:
            needs[m.group(1)] = current
    return needs


def build_cuda_stubs(stub_dir):
    stub_dir = pathlib.Path(stub_dir)
    stub_dir.mkdir(parents=True, exist_ok=True)
    torch_dir = _torch_dir()
    nvidia = torch_dir.parent / "nvidia"
    search = [str(torch_dir / "lib")] + [str(p) for p in nvidia.glob("*/lib")] + [
        str(p) for p in nvidia.glob("*/*/lib")
    ]
    env = dict(os.environ, LD_LIBRARY_PATH=":".join(search + [str(stub_dir)]))
    # The objects that `import torch` loads: torch._C and what it pulls in.
    roots = list(torch_dir.glob("_C*.so")) + [torch_dir / "lib" / "libtorch_global_deps.so"]
    loaded, missing = {}, set()
    for root in roots:
        for line in _run(["ldd", str(root)], env=env).splitlines():
            m = re.match(r"\s*(\S+) => (.*)", line)
            if not m:
                continue
            name, where = m.groups()
            if where.startswith("not found"):
                missing.add(name)
            else:
                loaded[name] = where.split(" (")[0]
        loaded[root.name] = str(root)
    # Stand-ins from an earlier run are rebuilt, not trusted.
    missing |= {n for n, p in loaded.items() if pathlib.Path(p).parent == stub_dir}
    loaded = {n: p for n, p in loaded.items() if pathlib.Path(p).parent != stub_dir}
    if not missing:
        print("no CUDA library is missing; no stand-ins needed", file=sys.stderr)
        return
    defined = set()
    for path in loaded.values():
        defined.update(name for name, _, _ in _dyn_symbols(path, undefined=False))
    per_lib = {lib: {} for lib in missing}  # lib -> {symbol: version or None}
    loose = set()
    for path in loaded.values():
        needs = _version_needs(path)
        for name, version, weak in _dyn_symbols(path, undefined=True):
            if name in defined:
                continue
            lib = needs.get(version) if version else None
            if lib in per_lib:
                per_lib[lib][name] = version
            elif not weak:
                loose.add(name)
    # Unversioned references bind to any default-version definition: give them to one library.
    first = sorted(missing)[0]
    for name in loose:
        per_lib[first].setdefault(name, None)
    for lib, syms in sorted(per_lib.items()):
        if not syms:  # needed by name only: a library with one placeholder symbol will do
            syms = {"hamos_cuda_stub_placeholder": None}
        versions = sorted({v for v in syms.values() if v})
        if len(versions) > 1:
            raise SystemExit(f"{lib}: several version nodes {versions}; not supported")
        node = versions[0] if versions else lib
        ident = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
        bad = [s for s in syms if not ident.match(s)]
        if bad:
            raise SystemExit(f"{lib}: symbols that are not C identifiers: {bad[:5]}")
        src = ["#include <stdio.h>", "#include <stdlib.h>",
               "static void die(const char *s) { fprintf(stderr, \"CUDA stand-in %s called "
               "(this torch has no real CUDA libraries)\\n\", s); abort(); }"]
        src += [f"void {s}(void) {{ die(\"{s}\"); }}" for s in sorted(syms)]
        c_file = stub_dir / f"{lib}.c"
        map_file = stub_dir / f"{lib}.map"
        c_file.write_text("\n".join(src) + "\n")
        globs = "".join(f"    {s};\n" for s in sorted(syms))
        map_file.write_text(f"{node} {{\n  global:\n{globs}  local: *;\n}};\n")
        _run(["cc", "-shared", "-fPIC", "-O0", "-w", "-o", str(stub_dir / lib), str(c_file),
              f"-Wl,-soname,{lib}", f"-Wl,--version-script={map_file}"])
        print(f"stand-in {lib}: {len(syms)} symbols, version node {node}", file=sys.stderr)


# --------------------------------------------------------------------------------------------
# The model and the fixture


def make_model(num_classes=10):
    import torch.nn as nn
    import torch.nn.functional as F

    class BasicBlock(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            if stride != 1 or cin != cout:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
            else:
                self.shortcut = nn.Sequential()

        def forward(self, x):
            out = F.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return F.relu(out + self.shortcut(x))

    class ResNet18_32x32(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            cin = 64
            for k, (cout, stride) in enumerate([(64, 1), (128, 2), (256, 2), (512, 2)], 1):
                setattr(self, f"layer{k}",
                        nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
                cin = cout
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(512, num_classes)

        def features(self, x):
            x = F.relu(self.bn1(self.conv1(x)))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.avgpool(x).flatten(1)

        def forward(self, x):
            return self.fc(self.features(x))

    return ResNet18_32x32()


def formula_value(name, shape, i, j):
    """The formula for one element, as plain Python (documentation and a spot check)."""
    s = math.sin(0.37 * i + 1.3 * j)
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "weight" and len(shape) >= 2:
        return s * math.sqrt(3.0 / math.prod(shape[1:]))
    if leaf == "weight":
        return 1.0 + 0.1 * s
    if leaf == "bias":
        return 0.1 * s
    if leaf == "running_mean":
        return 0.05 * s
    if leaf == "running_var":
        return 1.0 + 0.25 * (1.0 + s)
    raise ValueError(name)


def sin_series(a, b, n):
    """float64 tensor of sin(a*i + b) for i in 0..n, with the C library's sin (math.sin), which
    is what Rust's f64::sin calls on Linux; torch.sin (SLEEF) differs from it in the last bit on
    about 0.2% of these arguments (never after the cast to float32 in a 12M-element check)."""
    import torch

    return torch.tensor([math.sin(a * i + b) for i in range(n)], dtype=torch.float64)


def fill_state_dict(model):
    import torch

    sd = model.state_dict()
    for j, (name, t) in enumerate(sd.items()):
        if not t.is_floating_point():
            assert name.endswith("num_batches_tracked"), name
            continue
        s = sin_series(0.37, 1.3 * j, t.numel())
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "weight" and t.dim() >= 2:
            v = s * math.sqrt(3.0 / math.prod(t.shape[1:]))
        elif leaf == "weight":
            v = 1.0 + 0.1 * s
        elif leaf == "bias":
            v = 0.1 * s
        elif leaf == "running_mean":
            v = 0.05 * s
        elif leaf == "running_var":
            v = 1.0 + 0.25 * (1.0 + s)
        else:
            raise ValueError(f"no formula for {name}")
        with torch.no_grad():
            t.copy_(v.to(torch.float32).reshape(t.shape))
    # Spot check the vectorised fill against the scalar formula.
    for j, (name, t) in enumerate(model.state_dict().items()):
        if t.is_floating_point():
            for i in (0, t.numel() // 2, t.numel() - 1):
                want = float(torch.tensor(formula_value(name, list(t.shape), i, j),
                                          dtype=torch.float32))
                assert t.reshape(-1)[i].item() == want, (name, i)


def value_checks(sd, x):
    checks = []
    for name, t in list(sd.items()) + [("input", x)]:
        if t.is_floating_point():
            flat = t.reshape(-1)
            for i in sorted({0, 1, flat.numel() // 2, flat.numel() - 1}):
                checks.append({"name": name, "i": i, "value": float(flat[i])})
    return checks


def sig8(v):
    return float(f"{v:.8g}")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cuda-stubs")
    ap.add_argument("--out", default=str(REPO / "nn/tests/fixtures/resnet18_cifar.json"))
    ap.add_argument("--safetensors", default="/tmp/resnet18_fixture.safetensors")
    args = ap.parse_args()
    if args.cuda_stubs:
        build_cuda_stubs(args.cuda_stubs)
        return

    import copy

    import torch

    model = make_model()
    fill_state_dict(model)
    model.eval()

    n = 2 * 3 * 32 * 32
    x32 = (sin_series(0.11, 0.0, n) * 1.5).to(torch.float32)
    x32 = x32.reshape(2, 3, 32, 32)

    model64 = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        logits32 = model(x32)
        feats64 = model64.features(x32.double())
        logits64 = model64.fc(feats64)
        assert torch.equal(logits64, model64(x32.double()))

    assert torch.isfinite(logits64).all() and torch.isfinite(logits32).all()
    max_diff = (logits32.double() - logits64).abs().max().item()

    sd = model.state_dict()
    fixture = {
        "torch_version": torch.__version__,
        "model": "OpenOOD ResNet18_32x32 (num_classes=10), eval mode",
        "formula": FORMULA,
        "state_dict": [{"name": k, "shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")}
                       for k, v in sd.items()],
        # A few float32 values of the formula, to tell a formula mismatch from a model mismatch.
        "value_checks": value_checks(sd, x32),
        "input_shape": [2, 3, 32, 32],
        "logits_f64": logits64.tolist(),
        "logits_f32": [[float(v) for v in row] for row in logits32.tolist()],
        "features_f64": [sig8(v) for v in feats64[0].tolist()],
    }
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(fixture, indent=1) + "\n")

    print(f"torch {torch.__version__}; wrote {out} ({len(sd)} state_dict entries)")
    print("logits_f64:")
    for row in logits64.tolist():
        print("  " + " ".join(f"{v:+.6f}" for v in row))
    f = feats64[0]
    print(f"features[0]: min {f.min().item():.4g} max {f.max().item():.4g} "
          f"mean {f.mean().item():.4g} zeros {(f == 0).sum().item()}/512")
    print(f"max |logits_f32 - logits_f64| = {max_diff:.3g}")

    if args.safetensors:
        try:
            from safetensors.torch import save_file
        except ImportError:
            print("safetensors not installed; skipped the .safetensors copy")
            return
        save_file({k: v.contiguous() for k, v in sd.items()}, args.safetensors)
        from safetensors import safe_open

        with safe_open(args.safetensors, framework="pt") as fh:
            print(f"{args.safetensors}: {len(list(fh.keys()))} tensors")
            for k in fh.keys():
                t = fh.get_tensor(k)
                print(f"  {k} {str(t.dtype).replace('torch.', '')} {list(t.shape)}")


if __name__ == "__main__":
    main()
