"""Worker of the 2-process (gloo) sharded Dawid-Skene test; runs in a spawned process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from trinity_lightning.crowd import DawidSkene, OneCoinDawidSkene

CLASSES = ["a", "b", "c"]

# name -> (class, constructor kwargs, fit kwargs); every variant runs in float64 so 1e-10 is meaningful
VARIANTS: dict[str, tuple[Any, dict[str, Any], dict[str, Any]]] = {
    "ds": (DawidSkene, {"dtype": torch.float64, "tol": 1e-12, "n_iter": 40}, {}),
    "ds_smoothing": (DawidSkene, {"dtype": torch.float64, "smoothing": 1.0, "n_iter": 30}, {}),
    "ds_compat": (DawidSkene, {"crowdkit_compat": True, "n_iter": 30}, {}),
    "ds_gold": (DawidSkene, {"dtype": torch.float64, "n_iter": 30}, {"true_labels": {"i007": "a", "i150": "c"}}),
    "one_coin": (OneCoinDawidSkene, {"dtype": torch.float64, "n_iter": 30}, {}),
}


def frame() -> pd.DataFrame:
    """260 items x 3-5 labels from 9 workers (worker w8 labels only items in the second shard), 3 classes."""
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, 260)
    rows = []
    for i, z in enumerate(truth):
        for w in rng.choice(8 if i < 200 else 9, size=rng.integers(3, 6), replace=False):
            right = rng.random() < 0.55 + 0.05 * w
            rows.append((f"i{i:03d}", f"w{w}", CLASSES[z] if right else CLASSES[rng.integers(0, 3)]))
    return pd.DataFrame(rows, columns=["task", "worker", "label"])


def shards(table: pd.DataFrame) -> list[pd.DataFrame]:
    """Uneven shards (about 30% / 70%) cut inside item i077, plus a few rows of other items moved across."""
    cut = int(np.flatnonzero(table["task"].to_numpy() == "i077")[1])  # after the first row of i077
    first, second = table.iloc[:cut], table.iloc[cut:]
    moved = second.index[second["task"].isin(["i120", "i199", "i255"])][::2]
    return [pd.concat([first, second.loc[moved]]), second.drop(moved)]


def fit_worker(rank: int, world: int, port: int, out: str) -> None:
    """Fit every variant on this rank's shard; then a class-list mismatch (rank 1 declares other classes)."""
    from tests.distributed._workers import _init

    _init(rank, world, port, timeout=30.0)
    shard = shards(frame())[rank]
    report: dict[str, Any] = {"rows": len(shard)}
    for name, (cls, kwargs, fit_kwargs) in VARIANTS.items():
        model = cls(**kwargs).fit(shard, classes=CLASSES, process_group=True, **fit_kwargs)
        report[name] = {
            "items": list(model.table_.item_ids),
            "workers": list(model.table_.worker_ids),
            "probas": model.probas_,
            "errors": model.errors_,
            "priors": model.priors_,
            "worker_accuracy": model.worker_accuracy_,
            "log_likelihood": model.log_likelihood_,
            "n_iter": model.n_iter_,
        }
    try:
        DawidSkene().fit(shard, classes=CLASSES if rank == 0 else ["a", "b", "c", "d"], process_group=True)
    except ValueError as error:
        report["mismatch"] = f"{type(error).__name__}: {error}"
    torch.save(report, Path(out) / f"rank{rank}.pt")
