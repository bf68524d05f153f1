#!/usr/bin/env python3
"""Writes a public tabular data set, split across organisations, as CSV files.

The data set is scikit-learn's copy of the Wisconsin Diagnostic Breast
Cancer data (569 rows, 30 numeric features, binary target), which ships
inside the scikit-learn package that scripts/setup.sh installs: no download.
Rows are shuffled with a fixed seed and cut into N contiguous parts, one CSV
per part, plus schema.json: the model declaration for POST /v1/models.

Usage: export_public_dataset.py OUT_DIR [N_PARTS] [SEED]
"""
import csv
import json
import os
import random
import re
import sys

from sklearn.datasets import load_breast_cancer


def column(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def main() -> None:
    out = sys.argv[1]
    parts = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    data = load_breast_cancer()
    features = [column(n) for n in data.feature_names]
    # sklearn labels 0 = malignant, 1 = benign; the model predicts malignancy.
    rows = [list(map(float, x)) + [1 - int(y)] for x, y in zip(data.data, data.target)]
    random.Random(seed).shuffle(rows)
    os.makedirs(out, exist_ok=True)
    size = (len(rows) + parts - 1) // parts
    for p in range(parts):
        with open(os.path.join(out, f"part-{p}.csv"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(features + ["malignant"])
            w.writerows(rows[p * size:(p + 1) * size])
    schema = {
        "name": "breast_cancer",
        "task": "binary_classification",
        "features": features,
        "target": "malignant",
        "hidden_layers": [16],
    }
    with open(os.path.join(out, "schema.json"), "w") as f:
        json.dump(schema, f, indent=2)
    print(f"{len(rows)} rows in {parts} parts, {len(features)} features -> {out}")


if __name__ == "__main__":
    main()
