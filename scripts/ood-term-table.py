#!/usr/bin/env python3
"""The README's OOD-term table from the run directories of scripts/ood-term-experiment.sh.

usage: scripts/ood-term-table.py OUT_DIR [SEEDS...]   (default seeds: every run-s<N> in OUT_DIR)

One row per (model, OOD term, scorer): near-OOD and far-OOD averages of FPR95, FPR95 (OpenOOD)
and AUROC, and ID accuracy, in percent, mean +- sample std over the seeds; `n` is how many seeds
a row has (the variants may have fewer than the uniform/no-outlier rows). Standard library only.
"""
import json
import pathlib
import re
import statistics
import sys

out = pathlib.Path(sys.argv[1])
seeds = sys.argv[2:] or sorted(
    (m.group(1) for p in out.glob("run-s*") if (m := re.fullmatch(r"run-s(\d+)", p.name))), key=int
)
VARIANTS = ["as_printed", "released", "outlier_negatives"]
POST_HOC = ["knn", "mahalanobis", "energy", "relation"]


def records(path):
    return json.loads(path.read_text())["records"] if path.is_file() else []


rows = {}  # (label, scorer) -> list of per-seed dicts


def add(label, scorer, recs):
    values = {}
    for r in recs:
        if r["scorer"] == scorer and r["dataset"] in ("near_average", "far_average"):
            g = r["dataset"].split("_")[0]
            values[f"{g} FPR95"] = r["fpr95"]
            values[f"{g} FPR95 (OpenOOD)"] = r["fpr95_openood"]
            values[f"{g} AUROC"] = r["auroc"]
            values["ID acc"] = r["id_acc"]
    if values:
        rows.setdefault((label, scorer), []).append(values)


for seed in seeds:
    run = records(out / f"run-s{seed}" / "metrics.json")
    for scorer in POST_HOC:
        add("pretrained", scorer, [r for r in run if r["model"] == "pretrained"])
    for scorer in ["knn", "knn_features"]:
        add("HamOS, uniform (default)", scorer, [r for r in run if r["model"] == "hamos"])
    for v in VARIANTS:
        recs = records(out / f"{v}-s{seed}" / "eval" / "metrics.json")
        for scorer in ["knn", "knn_features"]:
            add(f"HamOS, {v}", scorer, [r for r in recs if r["model"] == "hamos"])
    for scorer in ["knn", "knn_features"]:
        add("no outliers (cider_only)", scorer, [r for r in run if r["model"] == "cider_only"])

columns = [f"{g} {m}" for g in ("near", "far") for m in ("FPR95", "FPR95 (OpenOOD)", "AUROC")] + ["ID acc"]
print(f"seeds: {' '.join(seeds)}; percent, mean ± sample std over the seeds a row has (n)\n")
print("| model | scorer | n | " + " | ".join(columns) + " |")
print("|---|---|---:|" + "---:|" * len(columns))
for (label, scorer), per_seed in rows.items():
    cells = []
    for c in columns:
        xs = [100 * v[c] for v in per_seed if c in v]
        sd = f"{statistics.stdev(xs):.2f}" if len(xs) > 1 else "n/a"
        cells.append(f"{statistics.mean(xs):.2f} ± {sd}" if xs else "-")
    print(f"| {label} | {scorer} | {len(per_seed)} | " + " | ".join(cells) + " |")

# Paired by seed: every model of a seed starts from the same pretrained classifier and data order.
print("\nPaired differences, model minus the no-outlier model of the same seed (percentage points;")
print("near/far averages; negative FPR95 and positive AUROC differences favour the model; a")
print("difference that rounds to 0.00 is a tie):\n")
print("| model | scorer | metric | per seed | mean | seeds better |")
print("|---|---|---|---|---:|---:|")
for (label, scorer), per_seed in rows.items():
    if not label.startswith("HamOS"):
        continue
    base = rows.get(("no outliers (cider_only)", scorer), [])
    # rows hold one entry per seed that has the model, in seed order; pair by seed index.
    seeds_with = [s for s in seeds if (out / (f"run-s{s}" if "uniform" in label else
                  f"{label.split(', ')[1]}-s{s}/eval") / "metrics.json").is_file()]
    base_by_seed = dict(zip([s for s in seeds if (out / f"run-s{s}" / "metrics.json").is_file()], base))
    for metric in ["near AUROC", "near FPR95", "far AUROC", "far FPR95"]:
        diffs = [100 * (v[metric] - base_by_seed[s][metric]) for s, v in zip(seeds_with, per_seed)
                 if s in base_by_seed and metric in v]
        if not diffs:
            continue
        # Differences that print as +0.00 count as ties.
        better = sum(d >= 0.005 if "AUROC" in metric else d <= -0.005 for d in diffs)
        print(f"| {label} | {scorer} | {metric} | " + " ".join(f"{d:+.2f}" for d in diffs)
              + f" | {statistics.mean(diffs):+.2f} | {better} of {len(diffs)} |")
