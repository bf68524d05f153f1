#!/usr/bin/env python3
"""The node's federated campaign against independent references, on public data.

For each data set, number of organisations and seed, the rows are split
non-IID across the organisations (regression: sorted by one feature and cut
into contiguous parts; classification: Dirichlet label skew), and each
organisation's rows are cut 80 / 20 into train and test. Then:

- campaign: the train rows are imported into real mc-node processes by CSV
  (train rows first: a campaign trains on the first 80 % of a node's rows),
  a campaign runs over HTTP, and its safetensors file is scored here in
  PyTorch on the pooled test rows;
- fedavg: plain FedAvg in PyTorch (a fresh Adam per round, E local epochs
  on each organisation's own train rows, the sample-weighted mean);
- local: each organisation trains alone (R x E epochs); the mean of the
  organisations' scores on the pooled test rows;
- central: one model on all train rows pooled (R x E epochs).

Every model is the same MLP (hidden layers, batch size, learning rate,
rounds R and local epochs E as given); inputs and regression targets are
standardised with the pooled train statistics (the node pools the same
moments in its round 0). Scores: R² for regression, accuracy for
classification (F1 in the JSON), on the pooled test rows.

Usage: scripts/fl-compare [--orgs 5,10] [--seeds 1,2,3] [--datasets ...]
       [--campaign-set key=value ...] [--json OUT]
"""
import argparse
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


# ---------------------------------------------------------------- data sets

def column(name):
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def auto_mpg():
    from vega_datasets import local_data
    d = local_data.cars().dropna()
    features = ["Cylinders", "Displacement", "Horsepower", "Weight_in_lbs", "Acceleration"]
    x = d[features].to_numpy(float)
    year = d["Year"].astype("datetime64[ns]").dt.year.to_numpy(float)
    x = np.column_stack([x, year])
    names = [column(f) for f in features] + ["year"]
    return dict(name="auto_mpg", task="regression", x=x, y=d["Miles_per_Gallon"].to_numpy(float),
                features=names, target="mpg", sort_by="weight_in_lbs")


def seattle_weather():
    from vega_datasets import local_data
    d = local_data.seattle_weather()
    day = d["date"].dt.day_of_year.to_numpy(float)
    x = np.column_stack([d["temp_min"], d["precipitation"], d["wind"],
                         np.sin(2 * math.pi * day / 365.25), np.cos(2 * math.pi * day / 365.25)])
    return dict(name="seattle_weather", task="regression", x=x.astype(float),
                y=d["temp_max"].to_numpy(float),
                features=["temp_min", "precipitation", "wind", "season_sin", "season_cos"],
                target="temp_max", sort_by="wind")


def breast_cancer():
    from sklearn.datasets import load_breast_cancer
    d = load_breast_cancer()
    return dict(name="breast_cancer", task="binary_classification", x=d.data.astype(float),
                y=(1 - d.target).astype(float), labels=d.target,
                features=[column(n) for n in d.feature_names], target="malignant")


def digits():
    from sklearn.datasets import load_digits
    d = load_digits()
    return dict(name="digits", task="binary_classification", x=d.data.astype(float),
                y=(d.target >= 5).astype(float), labels=d.target,
                features=[f"px_{i}" for i in range(d.data.shape[1])], target="high_digit")


def diabetes():
    """Held out: never used to choose a default; run it by name (--datasets diabetes)."""
    from sklearn.datasets import load_diabetes
    d = load_diabetes()
    return dict(name="diabetes", task="regression", x=d.data.astype(float),
                y=d.target.astype(float), features=[column(n) for n in d.feature_names],
                target="progression", sort_by="bmi")


DATASETS = {f.__name__: f for f in (auto_mpg, seattle_weather, breast_cancer, digits)}
HELD_OUT = {f.__name__: f for f in (diabetes,)}
KNOWN = {**DATASETS, **HELD_OUT}


def split(data, orgs, seed, alpha):
    """Row indices of each organisation: non-IID (see the module docs)."""
    rng = np.random.default_rng(seed)
    n = len(data["y"])
    if data["task"] == "regression":
        key = data["x"][:, data["features"].index(data["sort_by"])]
        order = np.lexsort((rng.random(n), key))
        return [part for part in np.array_split(order, orgs)]
    labels = data["labels"]
    parts = [[] for _ in range(orgs)]
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        shares = rng.dirichlet([alpha] * orgs)
        cuts = (np.cumsum(shares)[:-1] * len(rows)).astype(int)
        for p, chunk in enumerate(np.split(rows, cuts)):
            parts[p].extend(chunk.tolist())
    # Every organisation needs rows to train and test on.
    for p in range(orgs):
        while len(parts[p]) < 10:
            donor = max(range(orgs), key=lambda q: len(parts[q]))
            parts[p].append(parts[donor].pop())
    return [rng.permutation(np.array(p)) for p in parts]


def train_test(rows, seed):
    rows = np.random.default_rng(seed).permutation(rows)
    cut = int(round(0.8 * len(rows)))
    return rows[:cut], rows[cut:]


# --------------------------------------------------------------- references

def mlp(inputs, hidden):
    sizes = [inputs] + hidden + [1]
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


class Standardiser:
    def __init__(self, x, y, task):
        self.mean, self.std = x.mean(0), x.std(0)
        self.std[self.std == 0] = 1.0
        self.task = task
        self.ymean, self.ystd = (y.mean(), y.std() or 1.0) if task == "regression" else (0.0, 1.0)

    def x(self, x):
        return torch.tensor((x - self.mean) / self.std, dtype=torch.float32)

    def y(self, y):
        return torch.tensor((y - self.ymean) / self.ystd, dtype=torch.float32).unsqueeze(1)

    def predict(self, model, x):
        with torch.no_grad():
            out = model(self.x(x)).squeeze(1).numpy().astype(float)
        return out * self.ystd + self.ymean if self.task == "regression" else 1 / (1 + np.exp(-out))


def loss_fn(task):
    return torch.nn.MSELoss() if task == "regression" else torch.nn.BCEWithLogitsLoss()


def local_epochs(model, x, y, epochs, args, task, gen, rate=None):
    opt = torch.optim.Adam(model.parameters(), lr=args.learning_rate if rate is None else rate)
    loss = loss_fn(task)
    n = len(y)
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for b in range(0, n, args.batch_size):
            idx = order[b:b + args.batch_size]
            opt.zero_grad()
            loss(model(x[idx]), y[idx]).backward()
            opt.step()


def fedavg(data, trains, st, args, seed, start=None, rate_of_round=None):
    """Plain FedAvg. `start(model, seed)` may redraw the initial weights and
    `rate_of_round(r)` give round r's learning rate (default: the constant
    args.learning_rate); see scripts/fl_reference_variants.py."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = mlp(len(data["features"]), args.hidden)
    if start is not None:
        start(model, seed)
    xs = [st.x(data["x"][t]) for t in trains]
    ys = [st.y(data["y"][t]) for t in trains]
    weights = np.array([len(t) for t in trains], float)
    weights /= weights.sum()
    for r in range(args.rounds):
        rate = None if rate_of_round is None else rate_of_round(r)
        states = []
        for x, y in zip(xs, ys):
            local = mlp(len(data["features"]), args.hidden)
            local.load_state_dict(model.state_dict())
            local_epochs(local, x, y, args.local_epochs, args, data["task"], gen, rate)
            states.append(local.state_dict())
        model.load_state_dict({k: sum(w * s[k] for w, s in zip(weights, states)) for k in states[0]})
    return model


def trained_alone(data, rows, st, args, seed):
    torch.manual_seed(seed)
    model = mlp(len(data["features"]), args.hidden)
    gen = torch.Generator().manual_seed(seed)
    local_epochs(model, st.x(data["x"][rows]), st.y(data["y"][rows]),
                 args.rounds * args.local_epochs, args, data["task"], gen)
    return model


def score(task, predictions, y):
    if task == "regression":
        return 1 - ((predictions - y) ** 2).sum() / ((y - y.mean()) ** 2).sum(), None
    p = predictions >= 0.5
    t = y >= 0.5
    tp, fp, fn = (p & t).sum(), (p & ~t).sum(), (~p & t).sum()
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return float((p == t).mean()), float(f1)


def node_model_predictions(path, x):
    """Predictions of a node's safetensors file (see learn/tests/python_interop.rs)."""
    tensors = load_file(path)
    with safe_open(path, "pt") as f:
        schema = json.loads(f.metadata()["schema"])
    sizes = [len(schema["features"])] + schema["hidden_layers"] + [1]
    model = mlp(sizes[0], schema["hidden_layers"])
    model.load_state_dict({f"{2 * i}.{part}": tensors[f"layers.{i}.{part}"]
                           for i in range(len(sizes) - 1) for part in ("weight", "bias")})
    xt = torch.tensor(x, dtype=torch.float32)
    with torch.no_grad():
        out = model((xt - tensors["norm.feature_mean"]) / tensors["norm.feature_std"]).squeeze(1)
        if schema["task"] != "regression":
            return torch.sigmoid(out).numpy().astype(float)
        return (out * tensors["norm.target_std"] + tensors["norm.target_mean"]).numpy().astype(float)


# -------------------------------------------------------------- the testnet

TOKEN = {"value": None}  # the testnet's admin token, read from its base dir


def headers(extra=None):
    out = dict(extra or {})
    if TOKEN["value"]:
        out["authorization"] = "Bearer " + TOKEN["value"]
    return out


def http(method, url, body=None, content_type="application/json"):
    req = urllib.request.Request(url, data=body, method=method, headers=headers({"content-type": content_type}))
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            raw = r.read()
    except urllib.error.HTTPError as e:
        raise SystemExit(f"fl-compare: {method} {url}: {e.code} {e.read().decode(errors='replace')}")
    return raw if content_type == "raw" else (json.loads(raw) if raw else None)


def view_or_none(url):
    """A campaign view, or None while the node does not know the campaign."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers()), timeout=120) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise SystemExit(f"fl-compare: GET {url}: {e.code} {e.read().decode(errors='replace')}")


class Testnet:
    def __init__(self, nodes, base_dir):
        binary = os.path.join(ROOT, "target/release/mc-testnet")
        self.proc = subprocess.Popen([binary, "up", "--nodes", str(nodes), "--base-dir", base_dir],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.urls = []
        for line in self.proc.stdout:
            m = re.search(r"\] \S+ +\S+ at (http://\S+)", line)
            if m:
                self.urls.append(m.group(1))
            if "nodes up" in line:
                break
        if len(self.urls) != nodes:
            raise SystemExit(f"fl-compare: the testnet did not start ({len(self.urls)} of {nodes} nodes)")
        with open(os.path.join(base_dir, "admin.token")) as f:
            TOKEN["value"] = f.read().strip()
        self.peers = [http("GET", u + "/status")["peer_id"] for u in self.urls]

    def close(self):
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def csv_text(features, target, x, y):
    lines = [",".join(features + [target])]
    lines += [",".join(repr(float(v)) for v in row) + "," + repr(float(t)) for row, t in zip(x, y)]
    return "\n".join(lines) + "\n"


def campaign(net, data, trains, tests, args, seed, workdir):
    orgs = len(trains)
    name = "fc_" + data["name"]
    schema = {"name": name, "task": data["task"], "features": data["features"],
              "target": data["target"], "hidden_layers": args.hidden}
    for i in range(orgs):
        url = net.urls[i]
        http("POST", url + "/v1/models", json.dumps(schema).encode())
        # Train rows first: the campaign trains on the first 80 %.
        rows = np.concatenate([trains[i], tests[i]])
        body = csv_text(data["features"], data["target"], data["x"][rows], data["y"][rows]).encode()
        http("POST", f"{url}/v1/learn/import?model={name}&replace=true&retrain_on_drift=false",
             body, "text/csv")
    before = http("GET", f"{net.urls[0]}/v1/models/{name}")["versions"]
    spec = {"model": name, "rounds": args.rounds, "local_epochs": args.local_epochs,
            "participants": net.peers[:orgs], "aggregation": "fedavg", "round_deadline_s": 300,
            "batch_size": args.batch_size, "learning_rate": args.learning_rate, "seed": seed}
    for setting in args.campaign_set:
        key, value = setting.split("=", 1)
        spec[key] = json.loads(value)
    started = time.time()
    cid = http("POST", net.urls[0] + "/v1/campaigns", json.dumps(spec).encode())["id"]
    while True:
        # A node that has not seen the declaration yet answers 404.
        views = [view_or_none(f"{u}/v1/campaigns/{cid}") for u in net.urls[:orgs]]
        if all(v is not None and v["state"] == "completed" for v in views):
            break
        if time.time() - started > 1800:
            raise SystemExit(f"fl-compare: campaign {cid} did not complete in 30 min")
        time.sleep(0.2)
    wall = time.time() - started
    while http("GET", f"{net.urls[0]}/v1/models/{name}")["versions"] == before:
        time.sleep(0.1)
    path = os.path.join(workdir, f"{name}-{orgs}-{seed}.safetensors")
    with open(path, "wb") as f:
        f.write(http("GET", f"{net.urls[0]}/v1/models/{name}/weights", content_type="raw"))
    one_model = len({v["model_hash"] for v in views}) == 1
    return path, wall, one_model, views[0]["model_hash"]


# --------------------------------------------------------------------- main

def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default=",".join(DATASETS),
                   help=f"comma-separated, of {', '.join(KNOWN)} (diabetes is held out of the default run)")
    p.add_argument("--orgs", default="5,10")
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument("--local-epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--learning-rate", type=float, default=0.001)
    p.add_argument("--hidden", default="32,32")
    p.add_argument("--alpha", type=float, default=0.5, help="Dirichlet concentration of the label skew")
    p.add_argument("--campaign-set", action="append", default=[],
                   help="an extra campaign field, e.g. drift_correction=false (JSON value)")
    p.add_argument("--json", help="write the results as JSON here")
    args = p.parse_args()
    unknown = [d for d in args.datasets.split(",") if d not in KNOWN]
    if unknown:
        p.error(f"unknown data set(s) {', '.join(unknown)}; known: {', '.join(KNOWN)}")
    args.hidden = [int(h) for h in args.hidden.split(",")]
    orgs_list = [int(o) for o in args.orgs.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    torch.set_num_threads(1)
    results = []
    workdir = tempfile.mkdtemp(prefix="fl-compare-")
    net = Testnet(max(orgs_list), os.path.join(workdir, "testnet"))
    try:
        for dname in args.datasets.split(","):
            data = KNOWN[dname]()
            for orgs in orgs_list:
                for seed in seeds:
                    parts = split(data, orgs, seed, args.alpha)
                    cut = [train_test(rows, seed) for rows in parts]
                    trains, tests = [c[0] for c in cut], [c[1] for c in cut]
                    test = np.concatenate(tests)
                    all_train = np.concatenate(trains)
                    st = Standardiser(data["x"][all_train], data["y"][all_train], data["task"])
                    x_test, y_test = data["x"][test], data["y"][test]
                    row = {"dataset": dname, "task": data["task"], "orgs": orgs, "seed": seed,
                           "rows": [int(len(t)) for t in trains]}
                    path, wall, one_model, model_hash = campaign(net, data, trains, tests, args, seed, workdir)
                    row["campaign"], row["campaign_f1"] = score(data["task"], node_model_predictions(path, x_test), y_test)
                    row.update(campaign_wall_s=wall, one_model=one_model, model_hash=model_hash)
                    row["fedavg"], row["fedavg_f1"] = score(data["task"], st.predict(fedavg(data, trains, st, args, seed), x_test), y_test)
                    alone = [score(data["task"], st.predict(trained_alone(data, t, st, args, seed), x_test), y_test)[0] for t in trains]
                    row["local"] = statistics.mean(alone)
                    row["central"], row["central_f1"] = score(data["task"], st.predict(trained_alone(data, all_train, st, args, seed), x_test), y_test)
                    results.append(row)
                    print(f"{dname:16} orgs {orgs:2} seed {seed}: campaign {row['campaign']:.3f} "
                          f"fedavg {row['fedavg']:.3f} local {row['local']:.3f} central {row['central']:.3f} "
                          f"({wall:.1f} s{'' if one_model else ', MODELS DIFFER'})", flush=True)
    finally:
        net.close()
    print_table(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"settings": {k: v for k, v in vars(args).items() if k != "json"},
                       "results": results}, f, indent=2)


def print_table(results):
    print(f"\n{'data set':16} {'orgs':>4}  {'campaign':>13} {'fedavg':>13} {'local':>13} {'central':>13}  campaign-fedavg")
    keys = sorted({(r["dataset"], r["orgs"]) for r in results}, key=lambda k: (list(KNOWN).index(k[0]), k[1]))
    for dname, orgs in keys:
        rows = [r for r in results if r["dataset"] == dname and r["orgs"] == orgs]
        cell = lambda k: f"{statistics.mean(r[k] for r in rows):.3f} ± {statistics.pstdev([r[k] for r in rows]):.3f}"
        gap = statistics.mean(r["campaign"] - r["fedavg"] for r in rows)
        print(f"{dname:16} {orgs:>4}  {cell('campaign'):>13} {cell('fedavg'):>13} {cell('local'):>13} {cell('central'):>13}  {gap:+.3f}")
    print("scores: R² (regression) or accuracy (classification) on the pooled test rows; mean ± sd over seeds")


if __name__ == "__main__":
    sys.exit(main())
