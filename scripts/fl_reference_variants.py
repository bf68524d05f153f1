#!/usr/bin/env python3
"""Plain FedAvg in PyTorch (scripts/fl_compare.py's reference) from two starting
distributions and with two learning-rate schedules, on fl-compare's splits.

Variants: 'torch' (PyTorch's nn.Linear default: weights and biases uniform on
±1/sqrt(fan_in)), 'he' (He-uniform weights, ±sqrt(6/fan_in), zero biases, the
campaign's start before 2026-12-02), and each with '_cos' (the rate decaying on
a cosine to a tenth over the rounds, the campaign default). Prints the mean and
sd of the pooled held-out score over seeds 1..N for 5 and 10 organisations.

Usage: .venv/bin/python scripts/fl_reference_variants.py DATASET SEEDS
"""
import math
import os
import statistics
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fl_compare as fc  # noqa: E402


class Settings:
    rounds, local_epochs, learning_rate, batch_size, hidden = 40, 5, 0.001, 16, [32, 32]


VARIANTS = {"torch": (False, False), "he": (True, False), "torch_cos": (False, True), "he_cos": (True, True)}


def he_start(model, seed):
    g = torch.Generator().manual_seed(seed)
    for layer in model:
        if isinstance(layer, torch.nn.Linear):
            bound = math.sqrt(6.0 / layer.in_features)
            with torch.no_grad():
                layer.weight.uniform_(-bound, bound, generator=g)
                layer.bias.zero_()


def cosine(r):
    """The campaign default: a cosine from the rate down to a tenth of it."""
    progress = r / (Settings.rounds - 1)
    return Settings.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def fedavg(data, trains, st, seed, he, decay):
    return fc.fedavg(data, trains, st, Settings, seed,
                     start=he_start if he else None, rate_of_round=cosine if decay else None)


def main():
    name, seeds = sys.argv[1], range(1, int(sys.argv[2]) + 1)
    torch.set_num_threads(1)
    data = fc.DATASETS[name]()
    for orgs in (5, 10):
        scores = {v: [] for v in VARIANTS}
        for seed in seeds:
            cut = [fc.train_test(rows, seed) for rows in fc.split(data, orgs, seed, 0.5)]
            trains, test = [c[0] for c in cut], np.concatenate([c[1] for c in cut])
            pooled = np.concatenate(trains)
            st = fc.Standardiser(data["x"][pooled], data["y"][pooled], data["task"])
            for variant, (he, cosine) in VARIANTS.items():
                model = fedavg(data, trains, st, seed, he, cosine)
                scores[variant].append(fc.score(data["task"], st.predict(model, data["x"][test]), data["y"][test])[0])
        cells = ", ".join(f"{v} {statistics.mean(s):.3f} ± {statistics.pstdev(s):.3f}" for v, s in scores.items())
        print(f"{name} {orgs} organisations: {cells}", flush=True)


if __name__ == "__main__":
    main()
