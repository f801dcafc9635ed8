"""Worker of the 2-process (gloo) sharded EM test (Dawid-Skene, one-coin, MACE, GLAD); runs in a spawned process."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist

from trinity_lightning.crowd import GLAD, MACE, DawidSkene, OneCoinDawidSkene

CLASSES = ["a", "b", "c"]

# name -> (class, constructor kwargs, fit kwargs); every variant runs in float64 so 1e-10 is meaningful
VARIANTS: dict[str, tuple[Any, dict[str, Any], dict[str, Any]]] = {
    "ds": (DawidSkene, {"dtype": torch.float64, "tol": 1e-12, "n_iter": 40}, {}),
    "ds_smoothing": (DawidSkene, {"dtype": torch.float64, "smoothing": 1.0, "n_iter": 30}, {}),
    "ds_compat": (DawidSkene, {"crowdkit_compat": True, "n_iter": 30}, {}),
    "ds_gold": (DawidSkene, {"dtype": torch.float64, "n_iter": 30}, {"true_labels": {"i007": "a", "i150": "c"}}),
    "one_coin": (OneCoinDawidSkene, {"dtype": torch.float64, "n_iter": 30}, {}),
    "mace_vb": (MACE, {"n_iter": 20}, {}),
    "mace_em": (MACE, {"n_iter": 20, "method": "em"}, {}),
    "glad": (GLAD, {}, {}),  # defaults: stops on its own (tol), so the ranks also agree on when
}

# fitted attributes compared with the single-process fit
ATTRIBUTES = {"DawidSkene": ("errors_", "priors_", "log_likelihood_", "n_iter_")}
ATTRIBUTES["OneCoinDawidSkene"] = (*ATTRIBUTES["DawidSkene"], "skills_")
ATTRIBUTES["MACE"] = ("spamming_", "thetas_", "skills_", "log_marginal_likelihood_")
ATTRIBUTES["GLAD"] = ("alphas_", "log_posterior_", "loss_history_", "n_iter_")
PER_ITEM = {"GLAD": ("betas_",)}  # this rank's items, like probas_


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
    # not tests.distributed._workers._init: importing that module loads Lightning (~20 s per process under load)
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=30))
    shard = shards(frame())[rank]
    report: dict[str, Any] = {"rows": len(shard)}
    for name, (cls, kwargs, fit_kwargs) in VARIANTS.items():
        model = cls(**kwargs).fit(shard, classes=CLASSES, process_group=True, **fit_kwargs)
        report[name] = {
            "items": list(model.table_.item_ids),
            "workers": list(model.table_.worker_ids),
            "probas_": model.probas_,
            "worker_accuracy_": model.worker_accuracy_,
            **{key: getattr(model, key) for key in (*ATTRIBUTES[cls.__name__], *PER_ITEM.get(cls.__name__, ()))},
        }
    try:
        DawidSkene().fit(shard, classes=CLASSES if rank == 0 else ["a", "b", "c", "d"], process_group=True)
    except ValueError as error:
        report["mismatch"] = f"{type(error).__name__}: {error}"
    try:  # rank 1's shard is empty: every rank raises, naming rank 1 (none waits for a missing collective)
        DawidSkene().fit(shard if rank == 0 else shard.iloc[:0], classes=CLASSES, process_group=True)
    except ValueError as error:
        report["empty"] = f"{type(error).__name__}: {error}"
    dist.destroy_process_group()
    torch.save(report, Path(out) / f"rank{rank}.pt")
