"""Active relabelling (ActiveLab) vs relabelling at random on the shared crowd sets, labels revealed on request.

    python benchmarks/active_relabel.py            # 4 datasets, 3 seeds, budget 1.5 extra labels per item
    python benchmarks/active_relabel.py --quick    # 2 datasets, 1 seed (smoke run)

Every item's crowd labels are held back in a random order (per seed); asking for a label of an item reveals the next
one (a new worker's). Two settings:

* ``relabel``: every item starts with one label; every further label is a relabel;
* ``mixed``: half of the items (at random) start with one label, the other half have none; the next label may go to a
  new item or to a relabel.

Each round asks for ``N / 20`` labels, chosen by a policy: ``activelab`` (the lowest ActiveLab scores,
:func:`~trinity_lightning.active.relabel.activelab_scores`), ``random`` (uniformly among the items that can still
take a label, new or labelled), ``random_relabel`` (uniformly among the labelled items only) and ``new_first``
(unlabelled items first, in random order, then random relabels). The crowd sets have no item features, so the
"model" is the class prior of the current consensus (the same for every item): ActiveLab then ranks with what the
labels themselves say (consensus quality weighted by annotator quality and the number of labels).

Measured after every round: accuracy against gold of the Dawid-Skene aggregate of the revealed labels (items without
a label get the majority class), per extra label spent. The claim ``activelab_vs_random_relabel_acc``: ActiveLab minus
random relabelling (``relabel`` setting), accuracy at a budget of one extra label per item, mean over datasets and
seeds (target_delta 0). Results: ``benchmarks/results/active_relabel.json``; plot: ``docs/img/active_relabel.png``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import claim, write_results
from trinity_lightning.active.relabel import activelab_scores, activelab_select
from trinity_lightning.crowd import DawidSkene
from trinity_lightning.data import crowd_datasets, load_crowd

POLICIES = ("activelab", "random", "random_relabel", "new_first")
SETTINGS = ("relabel", "mixed")
ROUNDS_PER_ITEM = 20  # labels per round: N / 20
CLAIM_BUDGET = 1.0  # extra labels per item at which the claim is read


def load(name: str) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray, int]:
    """Per item (with gold): its workers and labels (ids), the gold ids, and the number of classes."""
    frame, gold = load_crowd(name)
    frame = frame[frame["task"].isin(gold.index)]
    classes = sorted(set(frame["label"]) | set(gold))
    code = {c: i for i, c in enumerate(classes)}
    workers = {w: i for i, w in enumerate(sorted(frame["worker"].unique()))}
    items = sorted(frame["task"].unique())
    grouped = frame.groupby("task")
    per_workers = [grouped.get_group(t)["worker"].map(workers).to_numpy() for t in items]
    per_labels = [grouped.get_group(t)["label"].map(code).to_numpy() for t in items]
    truth = np.array([code[gold[t]] for t in items])
    return per_workers, per_labels, truth, len(classes)


class Campaign:
    """Revealed labels per item (the first ``revealed[i]`` of its shuffled crowd labels)."""

    def __init__(self, workers: list[np.ndarray], labels: list[np.ndarray], k: int, seed: int, setting: str) -> None:
        rng = np.random.default_rng(seed)
        orders = [rng.permutation(len(w)) for w in workers]
        self.workers = [w[o] for w, o in zip(workers, orders)]
        self.labels = [lab[o] for lab, o in zip(labels, orders)]
        self.k, self.n = k, len(workers)
        self.total = np.array([len(w) for w in workers])
        self.revealed = np.ones(self.n, dtype=np.int64)
        if setting == "mixed":
            self.revealed[rng.permutation(self.n)[: self.n // 2]] = 0
        self.rng = rng

    def long_form(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        items = np.repeat(np.arange(self.n), self.revealed)
        workers = np.concatenate([w[:r] for w, r in zip(self.workers, self.revealed)])
        labels = np.concatenate([lab[:r] for lab, r in zip(self.labels, self.revealed)])
        return items, workers, labels

    def aggregate(self) -> np.ndarray:
        items, workers, labels = self.long_form()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = DawidSkene().fit(pd.DataFrame({"task": items, "worker": workers, "label": labels}))
        out = np.full(self.n, np.bincount(labels, minlength=self.k).argmax())
        classes = np.asarray(ds.table_.classes)
        out[np.asarray(ds.table_.item_ids, dtype=np.int64)] = classes[ds.labels_.numpy()]
        return out

    def choose(self, policy: str, size: int) -> np.ndarray:
        can = self.revealed < self.total
        new, old = np.flatnonzero(can & (self.revealed == 0)), np.flatnonzero(can & (self.revealed > 0))
        size = min(size, int(can.sum()))
        if policy == "random":
            return self.rng.choice(np.flatnonzero(can), size=size, replace=False)
        if policy == "random_relabel":
            return self.rng.choice(old, size=min(size, len(old)), replace=False)
        if policy == "new_first":
            first = self.rng.permutation(new)[:size]
            rest = self.rng.choice(old, size=min(size - len(first), len(old)), replace=False)
            return np.concatenate([first, rest])
        return self._activelab(size, can)

    def _activelab(self, size: int, can: np.ndarray) -> np.ndarray:
        labelled = np.flatnonzero(self.revealed > 0)
        unlabelled = np.flatnonzero((self.revealed == 0) & can)
        items, workers, labels = self.long_form()
        used = np.unique(workers)
        column = np.searchsorted(used, workers)
        row = np.searchsorted(labelled, items)
        matrix = torch.full((len(labelled), len(used)), -1, dtype=torch.long)
        matrix[torch.from_numpy(row), torch.from_numpy(column)] = torch.from_numpy(labels)
        prior = np.bincount(self.aggregate()[labelled], minlength=self.k) + 1.0
        prior = torch.from_numpy(prior / prior.sum())
        scored, fresh = activelab_scores(
            matrix, prior.expand(len(labelled), -1), prior.expand(len(unlabelled), -1) if len(unlabelled) else None
        )
        again, first = activelab_select(scored, fresh, size, torch.from_numpy(can[labelled]))
        return np.concatenate([labelled[again], unlabelled[first]]).astype(np.int64)


def run(name: str, seeds: list[int], budget_per_item: float) -> dict[str, Any]:
    workers, labels, truth, k = load(name)
    n = len(truth)
    size = max(1, n // ROUNDS_PER_ITEM)
    out: dict[str, Any] = {"items": n, "classes": k, "labels": int(sum(len(w) for w in workers)), "batch": size}
    for setting in SETTINGS:
        for policy in POLICIES:
            curves = []
            for seed in seeds:
                camp = Campaign(workers, labels, k, seed, setting)
                start = int(camp.revealed.sum())
                spent, acc = [0], [float((camp.aggregate() == truth).mean())]
                while spent[-1] < budget_per_item * n and (camp.revealed < camp.total).any():
                    chosen = camp.choose(policy, size)
                    if len(chosen) == 0:
                        break
                    camp.revealed[chosen] += 1
                    spent.append(int(camp.revealed.sum()) - start)
                    acc.append(float((camp.aggregate() == truth).mean()))
                curves.append({"seed": seed, "spent": spent, "accuracy": acc})
            out[f"{setting}/{policy}"] = curves
            print(f"{name} {setting:8s} {policy:15s} final acc {np.mean([c['accuracy'][-1] for c in curves]):.4f}")
    return out


def at_budget(curve: dict[str, Any], labels: float) -> float:
    """Accuracy interpolated at ``labels`` extra labels spent."""
    return float(np.interp(labels, curve["spent"], curve["accuracy"]))


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, axes = plt.subplots(len(SETTINGS), len(names), figsize=(3.2 * len(names), 5.6), squeeze=False)
    for col, name in enumerate(names):
        n = results[name]["items"]
        for row, setting in enumerate(SETTINGS):
            ax = axes[row][col]
            for policy in POLICIES:
                curves = results[name][f"{setting}/{policy}"]
                grid = np.linspace(0, max(c["spent"][-1] for c in curves), 40)
                mean = np.mean([np.interp(grid, c["spent"], c["accuracy"]) for c in curves], axis=0)
                ax.plot(grid / n, mean, label=policy)
            ax.set_title(f"{name.removeprefix('crowd_')}: {setting}", fontsize=9)
            ax.set_xlabel("extra labels per item", fontsize=8)
            ax.set_ylabel("DS accuracy vs gold", fontsize=8)
            ax.tick_params(labelsize=7)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 datasets, 1 seed")
    parser.add_argument("--budget", type=float, default=1.5, help="extra labels per item to spend")
    args = parser.parse_args()
    torch.set_num_threads(1)
    names = crowd_datasets()[:2] if args.quick else crowd_datasets()
    seeds = [0] if args.quick else [0, 1, 2]
    started, cpu = time.perf_counter(), time.process_time()
    results = {name: run(name, seeds, args.budget) for name in names}
    deltas, per_dataset = [], {}
    for name, res in results.items():
        budget = CLAIM_BUDGET * res["items"]
        row = {}
        for setting in SETTINGS:
            for policy in POLICIES:
                row[f"{setting}/{policy}"] = float(np.mean([at_budget(c, budget) for c in res[f"{setting}/{policy}"]]))
        per_dataset[name] = row
        deltas.append((row["relabel/activelab"], row["relabel/random"]))
    ours, anchor = float(np.mean([d[0] for d in deltas])), float(np.mean([d[1] for d in deltas]))
    claims = [
        claim(
            "activelab_vs_random_relabel_acc",
            "Dawid-Skene accuracy vs gold after 1 extra label per item (every item starts with 1 label, the rest "
            f"held back and revealed on request): ActiveLab vs random relabelling, mean over {len(names)} crowd "
            f"sets x {len(seeds)} seeds",
            ours=ours,
            anchor=anchor,
            better="higher",
            unit="accuracy",
            target_delta=0.0,
        )
    ]
    load_avg = os.getloadavg()
    details = {
        "at_budget_one_extra_label_per_item": per_dataset,
        "worst_dataset_delta": min(r["relabel/activelab"] - r["relabel/random"] for r in per_dataset.values()),
        "curves": results,
        "seeds": seeds,
        "policies": list(POLICIES),
        "settings": list(SETTINGS),
        "model": "class prior of the current consensus (the crowd sets have no item features)",
        "aggregate": "DawidSkene (defaults); unlabelled items get the majority class",
        "cpu_seconds": round(time.process_time() - cpu, 1),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "load_average": load_avg,
        "plot": "docs/img/active_relabel.png",
    }
    plot(results, Path(__file__).resolve().parents[1] / "docs" / "img" / "active_relabel.png")
    print(write_results("active_relabel", claims, details), f"delta {ours - anchor:+.4f}")


if __name__ == "__main__":
    main()
