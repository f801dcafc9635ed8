"""Tensor-train RNN forecasting (issue 17): TLSTM vs LSTM, multiplicative LSTM, DLinear, closed-form ridge and
Repeat on Genz dynamics, ETTh1, exchange rate and Victorian electricity demand (temperature as a covariate), plus
the TT cell's memory against the full-outer-product contraction and the DataModule's throughput.

    python benchmarks/forecasting.py                              # everything, 3 seeds, CPU-feasible sizes
    python benchmarks/forecasting.py --only memory,throughput     # the timing / memory parts alone (~1-2 min idle)
    python benchmarks/forecasting.py --quick --results-dir /tmp/fc # a smoke run at toy sizes

Sections (``--only`` takes any of them; a partial run updates only its sections of the stored results file):

* ``memory``: one TLSTM transition step at H=64, L=3, P=3, TT rank 4, batch 8 (the issue's example: the outer
  product has (64*3+1)^3 = 7.2 M entries per sample). Activation memory = bytes of the tensors autograd saves for
  backward (``torch.autograd.graph.saved_tensors_hooks``, each storage once) plus the largest intermediate tensor
  (a ``TorchDispatchMode`` watching every op's output). Ours vs ``full_outer_product_contract``; outputs checked equal
  to 1e-5 (relative to the output's scale).
* ``throughput``: training windows per CPU second (one thread) of a model fed by
  ``TimeSeriesDataModule.train_dataloader()`` (lazy strided-view windows, one ``index_select`` gather per batch)
  vs the same model fed batches gathered (``index_select``) from a pre-materialised windows tensor; passes over
  every training window, the two paths interleaved so both see the same load, median of 7 (wall-clock rates are
  recorded too); for DLinear (a model fast enough to expose the data path) and TLSTM. Also the windows' memory:
  O(series) vs O(windows).
* ``genz`` / ``etth1`` / ``exchange`` / ``elecdemand``: every model, 3 seeds, MSE / MAE per horizon (normalized
  units, the protocol's). Repeat and ridge are deterministic (one fit); DLinear and the recurrent models are trained
  per seed with Lightning. Recurrent models (TLSTM, LSTM, MLSTM, parameter counts matched to TLSTM's within a few
  percent) are trained once at the longest horizon with the free-running decoder and scored on that horizon's test
  windows; their figure at a shorter horizon h is the mean over steps 1..h of the same windows. The linear baselines
  are scored per horizon on the protocol's windows (same target rows; at the longest horizon both sets coincide).

``--recipe segrnn`` trains the ETTh1 recurrent models with SegRNN's published recipe (``SEGRNN_ETTH1``: history
720, ``SegmentRecurrentNet`` with segment length 24, every training window, epochs with early stopping on every
validation window); the ETTh1 claims read it since stop 24 (``benchmarks/forecasting_segrnn_rule.md``).

The recurrent recipe's options (``--instance-norm``, ``--highway``, ``--history``, ``--decoder direct``,
``--channel-independent``: one univariate network shared by the target channels) apply to TLSTM, LSTM and MLSTM
alike; ``details.sections.channel_independence`` holds stop 19's validation-only selection among them.

What is scaled down for 2 shared CPU cores (sizes are recorded in ``details.config``): few epochs, strided training
windows for the recurrent models, small hidden sizes; Genz 2,000 sequences, 20-step history and horizon (the
research note: 5,000 sequences, 50 steps). The figures are therefore a CPU-budget comparison, not the paper's.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _harness import quiet, trainer
from _results import RESULTS_DIR, claim, median, read_results, write_results

ROOT = Path(__file__).resolve().parents[1]
PLOT = ROOT / "docs" / "img" / "forecasting.png"
SECTIONS = ("memory", "genz", "etth1", "exchange", "elecdemand", "throughput", "diagnosis", "selection", "ridge_fits")
# "diagnosis" (train vs validation curves, stop 16), "selection" (validation-only recipe search, stop 17) and
# "ridge_fits" (the closed-form ridge by form and training-window stride, stop 20) run only when asked
DEFAULT_SECTIONS = SECTIONS[:-3]
RECURRENT = ("tlstm", "lstm", "mlstm")
COLORS = {
    "repeat": "tab:gray",
    "ridge": "tab:orange",
    "dlinear": "tab:purple",
    "tlstm": "tab:red",
    "lstm": "tab:blue",
    "mlstm": "tab:green",
}
ALL_MODELS = ("repeat", "ridge", "dlinear", *RECURRENT)

# Published numbers (MSE, MAE) of the standard protocol, quoted in docs/forecasting.md beside ours.
PUBLISHED = {
    "etth1": {
        "Repeat": {96: (1.295, 0.713), 192: (1.325, 0.733), 336: (1.323, 0.744), 720: (1.339, 0.756)},
        "DLinear (L=336)": {96: (0.375, 0.399), 192: (0.405, 0.416), 336: (0.439, 0.443), 720: (0.472, 0.490)},
        "PatchTST/42 (L=336)": {96: (0.375, 0.399), 192: (0.414, 0.421), 336: (0.431, 0.436), 720: (0.449, 0.466)},
        "SegRNN (L=96)": {96: (0.368, 0.395), 192: (0.408, 0.419), 336: (0.444, 0.440), 720: (0.446, 0.457)},
    },
    "exchange": {
        "Repeat": {96: (0.081, 0.196), 192: (0.167, 0.289), 336: (0.305, 0.396), 720: (0.823, 0.681)},
        "DLinear": {96: (0.081, 0.203), 192: (0.157, 0.293), 336: (0.305, 0.414), 720: (0.643, 0.601)},
    },
}

# DLinear's published recipe (LTSF-Linear, scripts/EXP-LongForecasting/DLinear/*.sh and run_longExp.py defaults):
# Adam, channel-shared (not --individual), at most 10 epochs, early stopping on validation MSE with patience 3, the
# learning rate halved after every epoch (lradj type1); ETTh1 batch 8 at lr 1e-4; exchange rate lr 5e-4 with batch 8
# (96, 192) or 32 (336), and lr 5e-3 with batch 32 at 720.
DLINEAR_ETTH1: dict[str, Any] = {"lr": 1e-4, "batch": 8, "epochs": 10, "patience": 3, "lr_decay": 0.5}
DLINEAR_EXCHANGE: dict[str, Any] = {
    **DLINEAR_ETTH1,
    "lr": 5e-4,
    "per_horizon": {336: {"batch": 32}, 720: {"batch": 32, "lr": 5e-3}},
}

FULL: dict[str, dict[str, Any]] = {
    "genz": {
        "n_sequences": 2000,
        "history": 20,
        "horizon": 20,
        "c": 2.0,
        "epochs": 6,
        "batch": 64,
        "hidden": 16,
        "rank": 4,
        "lr": 3e-3,
    },
    "etth1": {
        "source": "ett/ETTh1.csv",
        "split": "ett_hour",
        "history": 96,
        "linear_history": 336,
        "horizons": [96, 192, 336, 720],
        "stride": 8,
        "eval_stride": 4,
        "batch": 32,
        "hidden": 16,
        "rank": 4,
        "lr": 3e-3,
        "max_steps": 300,
        "val_every": 25,
        "patience": 4,
        "val_stride": 32,
        "train_probe_stride": 64,
        "dlinear": DLINEAR_ETTH1,
    },
    "exchange": {
        "source": "exchange_rate/exchange_rate.txt.gz",
        "split": [0.7, 0.1, 0.2],
        "history": 96,
        "linear_history": 336,
        "horizons": [96, 192, 336, 720],
        "recurrent_horizon": 96,
        "stride": 16,
        "batch": 32,
        "hidden": 16,
        "rank": 4,
        "lr": 3e-3,
        "max_steps": 300,
        "val_every": 25,
        "patience": 4,
        "val_stride": 8,
        "dlinear": DLINEAR_EXCHANGE,
    },
    "elecdemand": {
        "source": "elecdemand_vic2014/elecdemand.csv",
        "targets": ["Demand"],
        "covariates": ["Temperature"],
        "split": [0.7, 0.1, 0.2],
        "history": 96,
        "linear_history": 336,
        "horizons": [48, 96],
        "stride": 16,
        "batch": 32,
        "hidden": 16,
        "rank": 4,
        "lr": 3e-3,
        "max_steps": 300,
        "val_every": 25,
        "patience": 4,
        "val_stride": 8,
        "dlinear": DLINEAR_ETTH1,
    },
}
# SegRNN's published ETTh1 recipe (lss-1138/SegRNN scripts/SegRNN/etth1.sh and run_longExp.py defaults): history
# 720, segment 24, d_model 512, dropout 0.1, batch 64, Adam lr 3e-4, at most 30 epochs, early stopping on the
# validation MSE (every validation window, after every epoch) with patience 5, MSE loss, the last value subtracted
# (revin 0), channel ids on, every training window. CPU changes: hidden 64 (not 512); the learning rate falls by 0.9
# after every epoch from the first (SegRNN's lradj type3 holds it for 3 epochs first). The cell is TLSTM (L=3, P=3,
# rank 4) or the LSTM / MLSTM matched on the whole network's parameter count.
SEGRNN_ETTH1: dict[str, Any] = {
    "decoder": "segment",
    "history": 720,
    "segment_length": 24,
    "dropout": 0.1,
    "hidden": 64,
    "stride": 1,
    "recurrent_batch": 64,
    "lr": 3e-4,
    "recurrent_lr_decay": 0.9,
    "recurrent_epochs": 30,
    "patience": 5,
    "val_stride": 1,
    "report_val_stride": 32,
    "highway": None,
    "instance_norm": None,
    "channel_independent": False,
    "train_probe_stride": 0,
}
SEGRNN_QUICK: dict[str, Any] = {**SEGRNN_ETTH1, "history": 48, "segment_length": 12, "hidden": 8, "recurrent_epochs": 1}
SEGRNN_QUICK.update(stride=400, val_stride=200, report_val_stride=400)
QUICK: dict[str, dict[str, Any]] = {
    "genz": {**FULL["genz"], "n_sequences": 200, "history": 8, "horizon": 8, "epochs": 1, "hidden": 8, "rank": 2},
    "etth1": {
        **FULL["etth1"],
        "history": 24,
        "linear_history": 48,
        "horizons": [24, 48],
        "stride": 400,
        "hidden": 8,
        "rank": 2,
        "max_steps": 4,
        "val_every": 2,
        "val_stride": 200,
        "dlinear": {**DLINEAR_ETTH1, "epochs": 1, "batch": 256},
    },
    "exchange": {
        **FULL["exchange"],
        "history": 24,
        "linear_history": 48,
        "horizons": [24, 48],
        "recurrent_horizon": 48,
        "stride": 200,
        "hidden": 8,
        "rank": 2,
        "max_steps": 4,
        "val_every": 2,
        "val_stride": 100,
        "dlinear": {**DLINEAR_EXCHANGE, "epochs": 1, "batch": 256, "per_horizon": {}},
    },
    "elecdemand": {
        **FULL["elecdemand"],
        "history": 24,
        "linear_history": 48,
        "horizons": [24],
        "stride": 400,
        "hidden": 8,
        "rank": 2,
        "max_steps": 4,
        "val_every": 2,
        "val_stride": 200,
        "dlinear": {**DLINEAR_ETTH1, "epochs": 1, "batch": 256},
    },
}


# -- memory -------------------------------------------------------------------------------------------------------
def activation_bytes(fn: Any, *args: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """``fn(*args)``, the bytes autograd saves for backward (each storage once) and the largest op output."""
    from torch.utils._python_dispatch import TorchDispatchMode

    saved: dict[tuple[int, int], int] = {}
    largest = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        saved[(storage.data_ptr(), storage.nbytes())] = storage.nbytes()
        return t

    class Largest(TorchDispatchMode):
        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            out = func(*args, **(kwargs or {}))
            for o in out if isinstance(out, (tuple, list)) else [out]:
                if isinstance(o, torch.Tensor):
                    largest[0] = max(largest[0], o.numel() * o.element_size())
            return out

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), Largest():
        out = fn(*args)
    return out, sum(saved.values()), largest[0]


def run_memory(quick: bool) -> dict[str, Any]:
    from trinity_lightning.forecasting import TTTransition, full_outer_product_contract

    hidden, lags, order, rank, batch = (16, 3, 3, 4, 4) if quick else (64, 3, 3, 4, 8)
    torch.manual_seed(0)
    dim = hidden * lags + 1
    tt = TTTransition(dim, 4 * hidden, order, rank)
    s = torch.cat([torch.ones(batch, 1), torch.randn(batch, dim - 1)], dim=1).requires_grad_(True)
    ours, ours_saved, ours_largest = activation_bytes(tt, s)
    ref, ref_saved, ref_largest = activation_bytes(
        lambda x: full_outer_product_contract(tt.first, list(tt.cores), x), s
    )
    scale = float(ref.abs().max())
    max_err = float((ours - ref).abs().max()) / scale
    ours_total, ref_total = ours_saved + ours_largest, ref_saved + ref_largest
    times = {}
    for name, fn in (("ours", tt), ("reference", lambda x: full_outer_product_contract(tt.first, list(tt.cores), x))):
        runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            fn(s).sum().backward()
            runs.append(time.perf_counter() - t0)
        times[name] = median(runs)
    return {
        "claim": claim(
            "tt_cell_memory_vs_full_outer_product",
            f"activation memory of one TLSTM transition step (H={hidden}, L={lags}, P={order}, TT rank {rank}, batch "
            f"{batch}): tensors saved for backward + largest intermediate, full-outer-product reference / ours; "
            f"outputs equal to {max_err:.1e} (relative)",
            ours=ours_total / 2**20,
            anchor=ref_total / 2**20,
            unit="MiB",
            better="lower",
            target=10.0,
        ),
        "details": {
            "state_dim": dim,
            "outer_product_entries_per_sample": dim**order,
            "max_relative_difference": max_err,
            "ours_saved_bytes": ours_saved,
            "ours_largest_bytes": ours_largest,
            "reference_saved_bytes": ref_saved,
            "reference_largest_bytes": ref_largest,
            "forward_backward_s_median_of_3": times,
            "equal_to_1e-5": max_err <= 1e-5,
        },
    }


# -- throughput ---------------------------------------------------------------------------------------------------
def run_throughput(quick: bool) -> dict[str, Any]:
    from trinity_lightning.data import has_dataset
    from trinity_lightning.forecasting import DLinear, RecurrentForecastNet, TimeSeriesDataModule

    if has_dataset("ett"):
        dm = TimeSeriesDataModule("ett/ETTh1.csv", history=96, horizon=96, split="ett_hour", batch_size=32)
    else:  # pragma: no cover - synthetic fallback
        import pandas as pd

        t = torch.arange(17420.0)
        dm = TimeSeriesDataModule(
            pd.DataFrame({"y": torch.sin(t / 24).numpy()}), history=96, horizon=96, split="ett_hour", batch_size=32
        )
    dm.setup("fit")
    windows = dm.train_dataset
    materialized = [part.contiguous() for part in windows.materialize()]
    bytes_lazy = dm.values.numel() * dm.values.element_size()  # type: ignore[union-attr]
    bytes_materialized = sum(p.numel() * p.element_size() for p in materialized)
    out: dict[str, Any] = {
        "windows": len(windows),
        "series_bytes": bytes_lazy,
        "materialized_bytes": bytes_materialized,
    }
    out["load_average_before"] = [round(v, 2) for v in os.getloadavg()]
    n_windows = 512 if quick else len(windows)
    models: dict[str, Any] = {"dlinear": lambda: DLinear(dm.n_targets, 96, 96)}
    models["tlstm"] = lambda: RecurrentForecastNet(dm.n_targets, 0, "tlstm", 16, rank=4)
    budget = {"dlinear": n_windows, "tlstm": 128 if quick else 256}
    passes = {"dlinear": 3 if quick else 7, "tlstm": 2 if quick else 3}
    out["passes"] = passes
    for name, build in models.items():
        n_batches = math.ceil(budget[name] / 32)
        torch.manual_seed(0)
        model = build()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step(
            history: torch.Tensor, fc: torch.Tensor, target: torch.Tensor, m: Any = model, o: Any = optimizer
        ) -> None:
            o.zero_grad()
            torch.nn.functional.mse_loss(m(history, fc, 96), target).backward()
            o.step()

        def via_datamodule(n_batches: int = n_batches) -> tuple[float, float, int]:
            # the DataModule's own training loader (shuffled, batch 32), as Lightning iterates it
            count, t0, c0 = 0, time.perf_counter(), time.process_time()
            for batch in itertools.islice(dm.train_dataloader(), n_batches):
                step(*batch)
                count += len(batch[0])
            return count / (time.process_time() - c0), count / (time.perf_counter() - t0), count

        def via_tensor(n_batches: int = n_batches) -> tuple[float, float, int]:
            # the anchor: batches gathered from the windows materialised up front (index_select, the fastest gather)
            count, t0, c0 = 0, time.perf_counter(), time.process_time()
            order = torch.randperm(len(materialized[0]))
            for i in range(n_batches):
                idx = order[i * 32 : (i + 1) * 32]
                step(*(part.index_select(0, idx) for part in materialized))
                count += len(idx)
            return count / (time.process_time() - c0), count / (time.perf_counter() - t0), count

        via_datamodule(2), via_tensor(2)  # warm-up (optimizer state, allocator), not timed
        runs: dict[str, list[tuple[float, float, int]]] = {"datamodule": [], "materialized": []}
        for _ in range(passes[name]):  # interleaved, so both paths see the same load
            runs["datamodule"].append(via_datamodule())
            runs["materialized"].append(via_tensor())
        lazy = median([r[0] for r in runs["datamodule"]])
        dense = median([r[0] for r in runs["materialized"]])
        out[name] = {
            "datamodule_windows_per_cpu_s": lazy,
            "materialized_windows_per_cpu_s": dense,
            "ratio": lazy / dense,
            "datamodule_windows_per_wall_s": median([r[1] for r in runs["datamodule"]]),
            "materialized_windows_per_wall_s": median([r[1] for r in runs["materialized"]]),
            "windows_per_pass": runs["datamodule"][0][2],
        }
    out["claim"] = claim(
        "datamodule_vs_materialized_windows_per_s",
        "training windows per CPU second of DLinear (ETTh1, 96 -> 96, batch 32, one thread) fed by "
        "TimeSeriesDataModule.train_dataloader() vs batches gathered from a pre-materialised windows tensor, median "
        f"of {passes['dlinear']} interleaved passes over every training window (wall-clock rates and TLSTM in details)",
        ours=out["dlinear"]["datamodule_windows_per_cpu_s"],
        anchor=out["dlinear"]["materialized_windows_per_cpu_s"],
        unit="windows/CPU s",
        better="higher",
        target=0.9,
    )
    return out


# -- accuracy -----------------------------------------------------------------------------------------------------
def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def matched_hidden(
    cell: str, n_targets: int, n_covariates: int, target_params: int, cfg: dict[str, Any] | None = None
) -> int:
    """The hidden size whose recurrent net (built as :func:`recurrent_net` builds it for ``cfg``: channel-independent
    or not, recurrent or direct decoder) has the parameter count closest to ``target_params``."""
    recipe = cfg or {}
    return min(
        range(2, 257),
        key=lambda h: abs(count_parameters(recurrent_net(recipe, cell, h, n_targets, n_covariates)) - target_params),
    )


def recurrent_net(cfg: dict[str, Any], cell: str, hidden: int, n_targets: int, n_covariates: int) -> Any:
    """The recurrent forecaster a section's recipe ``cfg`` trains: ``decoder`` (recurrent, default, or direct at the
    recipe's horizon) and, with ``channel_independent``, one univariate network shared by the target channels
    (``Forecaster(channel_independent=True)`` wraps it; the covariates, if any, are appended per channel)."""
    from trinity_lightning.forecasting import RecurrentForecastNet, SegmentRecurrentNet

    decoder = cfg.get("decoder") or "recurrent"
    horizon = cfg.get("recurrent_horizon", (cfg.get("horizons") or [None])[-1]) if decoder != "recurrent" else None
    if cfg.get("channel_independent"):
        n_targets = 1
    if decoder == "segment":  # SegRNN's design (segment recurrence, parallel decoding, channel embeddings)
        return SegmentRecurrentNet(
            n_targets,
            n_covariates,
            cell,
            hidden,
            rank=int(cfg.get("rank", 4)),
            horizon=int(horizon),
            segment_length=int(cfg["segment_length"]),
            dropout=float(cfg.get("dropout", 0.0)),
        )
    return RecurrentForecastNet(
        n_targets, n_covariates, cell, hidden, rank=int(cfg.get("rank", 4)), decoder=decoder, horizon=horizon
    )


class BestWeights(pl.Callback):
    """Records ``val_mse`` at every validation (with the global step) and keeps the best weights in memory;
    :meth:`restore` loads them back (early stopping's "restore best weights")."""

    def __init__(self) -> None:
        self.best = math.inf
        self.state: dict[str, torch.Tensor] | None = None
        self.curve: list[tuple[int, float]] = []

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.offer(int(trainer.global_step), float(trainer.callback_metrics["val_mse"]), pl_module)

    def offer(self, step: int, value: float, pl_module: pl.LightningModule) -> None:
        """Record a validation taken outside the trainer (e.g. before the first step) like one taken in it."""
        self.curve.append((step, value))
        if value < self.best:
            self.best = value
            self.state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}

    def restore(self, pl_module: pl.LightningModule) -> None:
        if self.state is not None:
            pl_module.load_state_dict(self.state)


class TrainProbe(pl.Callback):
    """At every validation, the free-running MSE of the model on a fixed set of *training* windows (eval mode, the
    same forecast the validation scores) and the mean training-batch loss since the previous validation: the
    train-vs-validation curves that tell over-fitting from a shift between the splits."""

    def __init__(self, loader: Any, horizon: int) -> None:
        self.loader, self.horizon = loader, horizon
        self.curve: list[tuple[int, float, float]] = []
        self._losses: list[float] = []

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, *args: Any) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self._losses.append(float(loss))

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from trinity_lightning.forecasting import evaluate

        probe = evaluate(pl_module.network, self.loader, self.horizon).summary()["mse"]  # type: ignore[arg-type]
        batches = sum(self._losses) / len(self._losses) if self._losses else math.nan
        self.curve.append((int(trainer.global_step), probe, batches))
        self._losses = []


def fit_with_config(
    dm: Any, network: Any, seed: int, cfg: dict[str, Any], instance_norm: str | None, train_probe_stride: int
) -> tuple[Any, dict[str, Any]]:
    """:func:`fit_forecaster` with a section's recurrent recipe ``cfg`` (lr, max_steps, val_every, patience,
    val_stride, highway, highway_init, highway_alpha, highway_lr, channel_independent; ``recurrent_epochs`` instead of
    max_steps / val_every: that many epochs at most, validated after each one, as SegRNN's recipe;
    ``recurrent_batch``, ``recurrent_lr_decay``: the batch size and the per-epoch learning-rate factor)."""
    batch = int(cfg.get("recurrent_batch") or dm.batch_size)
    max_steps, val_every = cfg["max_steps"], cfg["val_every"]
    if cfg.get("recurrent_epochs"):
        val_every = math.ceil(len(dm.windows("train")) / batch)
        max_steps = int(cfg["recurrent_epochs"]) * val_every
    return fit_forecaster(
        dm,
        network,
        seed,
        lr=cfg["lr"],
        max_steps=max_steps,
        val_every=val_every,
        batch_size=batch,
        lr_decay=float(cfg.get("recurrent_lr_decay", 1.0)),
        patience=cfg["patience"],
        val_stride=cfg["val_stride"],
        instance_norm=instance_norm,
        train_probe_stride=train_probe_stride,
        highway=cfg.get("highway"),
        highway_init=cfg.get("highway_init", "ridge"),
        highway_alpha=float(cfg.get("highway_alpha", 1.0)),
        highway_lr=cfg.get("highway_lr"),
        channel_independent=bool(cfg.get("channel_independent")),
        highway_gate=bool(cfg.get("highway_gate")),
        highway_fit_stride=cfg.get("highway_fit_stride"),
    )


def fit_forecaster(
    dm: Any,
    network: Any,
    seed: int,
    lr: float,
    *,
    max_steps: int,
    val_every: int,
    patience: int,
    val_stride: int = 1,
    batch_size: int | None = None,
    lr_decay: float = 1.0,
    teacher_forcing: float = 0.0,
    instance_norm: str | None = None,
    train_probe_stride: int = 0,
    highway: int | None = None,
    highway_init: str = "ridge",
    highway_alpha: float = 1.0,
    highway_lr: float | None = None,
    channel_independent: bool = False,
    highway_gate: bool = False,
    highway_fit_stride: int | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Train ``network`` on ``dm``'s training windows (Adam, gradient norm clipped to 1) for at most ``max_steps``
    steps, scoring ``val_mse`` (the free-running forecast, the test's) on every ``val_stride``-th validation window
    every ``val_every`` steps; stop after ``patience`` validations without improvement and restore the best weights.

    Teacher forcing is off by default: with it (p = 0.5, then 0.25) one ETTh1 seed of the previous run learned a
    per-step increment bias it never paid for in training, and its free-running 720-step forecast drifted (squared
    mean error 4.9 of the last step's MSE 5.5); the same seed trained free-running scored 1.11 (docs/forecasting.md).
    ``instance_norm`` wraps the network (``Forecaster(instance_norm=...)``); ``train_probe_stride > 0`` also
    records the free-running MSE on every ``train_probe_stride``-th training window at each validation and the mean
    training-batch loss (``train_curve``: step, probe MSE, batch loss). ``highway=w`` adds the linear
    autoregressive highway (``Forecaster(highway=w)``), set before training to the closed-form ridge fit of what the
    untrained network leaves over on the training windows (``highway_init="ridge"``, penalty ``highway_alpha``) or
    left at zero (``"zeros"``), trained at ``highway_lr`` (``None``: ``lr``; 0: frozen); the record then holds the validation MSE of that starting point
    (``start_val_mse``). ``channel_independent`` wraps the network (built for one target) in
    ``ChannelIndependent`` (``Forecaster(channel_independent=True)``), inside the highway and the instance
    normalisation. ``highway_gate`` scales the network's forecast by a learnable scalar that starts at 0
    (``Forecaster(highway_gate=True)``): step 0 is then exactly the highway's ridge forecast, and it is also a
    candidate of the best-weights rule (validated before the first step, reported as step 0).
    ``highway_fit_stride`` fits the highway's ridge on every ``n``-th training window instead of the training
    batches' windows (the recipes train on every 8th window to save CPU; a closed-form fit needs no such saving, and
    on ETTh1 at 720 the 336-value ridge scores test MSE 0.606 fitted on every 8th window against 0.472 on all).
    Returns the model and the training record (val curve, steps, best step, CPU seconds).
    """
    from lightning.pytorch.callbacks import EarlyStopping

    from trinity_lightning.forecasting import Forecaster, collate_windows

    pl.seed_everything(seed, verbose=False)
    model = Forecaster(
        network=network,
        lr=lr,
        lr_decay=lr_decay,
        teacher_forcing=teacher_forcing,
        teacher_forcing_epochs=1 if teacher_forcing else 0,
        instance_norm=instance_norm,
        highway=highway,
        highway_lr=highway_lr,
        channel_independent=channel_independent,
        highway_gate=highway_gate,
        horizon=dm.horizon,
    )
    train = torch.utils.data.DataLoader(
        dm.windows("train"),
        batch_size=batch_size or dm.batch_size,
        shuffle=True,
        drop_last=False,
        collate_fn=collate_windows,
    )
    val = torch.utils.data.DataLoader(
        dm.windows("val", stride=val_stride), batch_size=512, collate_fn=collate_windows, drop_last=False
    )
    every = min(val_every, len(train))
    t0 = time.process_time()
    start: dict[str, Any] = {}
    if highway:
        if highway_init == "ridge":
            fit_on = train
            if highway_fit_stride:
                fit_on = torch.utils.data.DataLoader(
                    dm.windows("train", stride=highway_fit_stride), batch_size=512, collate_fn=collate_windows
                )
            model.fit_highway(fit_on, alpha=highway_alpha)
        elif highway_init != "zeros":
            raise ValueError(f"highway_init: got {highway_init!r}; expected 'ridge' or 'zeros'")
        start["start_val_mse"] = evaluate_mse(model.network, val, dm.horizon)
    best = BestWeights()
    if highway and highway_gate:  # step 0 is the ridge forecast itself: a model this recipe can return
        best.offer(0, start["start_val_mse"], model)
    stop = EarlyStopping("val_mse", patience=patience, mode="min", check_finite=True)
    callbacks: list[pl.Callback] = [best, stop]
    if train_probe_stride:
        probe_loader = torch.utils.data.DataLoader(
            dm.windows("train", stride=train_probe_stride), batch_size=512, collate_fn=collate_windows
        )
        probe = TrainProbe(probe_loader, dm.horizon)
        callbacks.insert(0, probe)
    trainer(
        max_steps=max_steps,
        max_epochs=-1,
        val_check_interval=every,
        check_val_every_n_epoch=None if every < len(train) else 1,
        gradient_clip_val=1.0,
        accelerator="cpu",
        callbacks=callbacks,
    ).fit(model, train_dataloaders=train, val_dataloaders=val)
    best.restore(model)
    record = {
        "val_curve": [[s, round(v, 5)] for s, v in best.curve],
        "best_val_mse": best.best,
        "best_step": min(best.curve, key=lambda sv: sv[1])[0] if best.curve else None,
        "steps": int(model.global_step),
        "cpu_s": round(time.process_time() - t0, 1),
        "stopped_early": bool(stop.stopped_epoch) or model.global_step < max_steps,
        **start,
    }
    gate = getattr(model.highway_module, "gate", None)
    if gate is not None:
        record["gate"] = round(float(gate), 5)  # the network's share in the restored weights (0 at step 0)
    if train_probe_stride:
        record["train_curve"] = [[s, round(p, 5), round(b, 5)] for s, p, b in probe.curve]
    return model, record


def fit_epochs(dm: Any, network: Any, epochs: int, seed: int, lr: float) -> Any:
    """The Genz section's recipe (unchanged since its stored run): ``epochs`` epochs, no validation, teacher forcing
    0.5 decaying to 0 over the epochs; Genz's horizon is 20 steps, where the drift above does not build up."""
    from trinity_lightning.forecasting import Forecaster

    pl.seed_everything(seed, verbose=False)
    model = Forecaster(network=network, lr=lr, teacher_forcing=0.5, teacher_forcing_epochs=max(1, epochs))
    model.hparams.update(horizon=dm.horizon)
    trainer(max_epochs=epochs, limit_val_batches=0, gradient_clip_val=1.0, accelerator="cpu").fit(model, datamodule=dm)
    return model


def curves_of(network: Any, loader: Any, horizon: int) -> dict[str, list[float]]:
    from trinity_lightning.forecasting import evaluate

    curves = evaluate(network, loader, horizon).compute()
    return {k: [float(x) for x in v] for k, v in curves.items() if k in ("mse", "mae")}


def summarize_curve(curve: dict[str, list[float]], h: int) -> dict[str, float]:
    return {"mse": sum(curve["mse"][:h]) / h, "mae": sum(curve["mae"][:h]) / h}


def run_series(name: str, cfg: dict[str, Any], seeds: list[int], models: set[str]) -> dict[str, Any]:
    """Every model on one real series; returns per-model, per-horizon MSE/MAE (mean and per seed)."""
    from trinity_lightning.forecasting import (
        DLinear,
        Repeat,
        RidgeLast,
        TimeSeriesDataModule,
        collate_windows,
    )

    def datamodule(history: int, horizon: int, stride: int = 1) -> Any:
        dm = TimeSeriesDataModule(
            cfg["source"],
            targets=cfg.get("targets"),
            covariates=cfg.get("covariates"),
            history=history,
            horizon=horizon,
            split=cfg["split"],
            batch_size=cfg["batch"],
            eval_batch_size=512,
            train_stride=stride,
        )
        dm.setup("fit")
        return dm

    horizons = cfg["horizons"]
    longest = cfg.get("recurrent_horizon", horizons[-1])
    result: dict[str, Any] = {"horizons": horizons, "recurrent_horizon": longest, "models": {}, "curves": {}}
    # linear baselines, per horizon, on the protocol's windows
    for h in horizons if models & {"repeat", "ridge", "dlinear"} else []:
        dm = datamodule(cfg["linear_history"], h)
        test = dm.test_dataloader()
        rep = summarize_curve(c := curves_of(Repeat(dm.n_targets), test, h), h)
        result["models"].setdefault("repeat", {})[h] = {**rep, "per_seed": [rep["mse"]]}
        if h == horizons[-1]:
            result["curves"]["repeat"] = c
        ridge = RidgeLast(dm.n_targets, cfg["linear_history"], h, alpha=1.0).fit(dm.train_dataloader())
        rid = summarize_curve(c := curves_of(ridge, test, h), h)
        result["models"].setdefault("ridge", {})[h] = {**rid, "per_seed": [rid["mse"]]}
        if h == horizons[-1]:
            result["curves"]["ridge"] = c
        runs = []
        dl = {**cfg["dlinear"], **cfg["dlinear"].get("per_horizon", {}).get(h, {})}
        for seed in seeds if "dlinear" in models else []:
            torch.manual_seed(seed)
            model, record = fit_forecaster(
                dm,
                DLinear(dm.n_targets, cfg["linear_history"], h),
                seed,
                lr=dl["lr"],
                batch_size=dl["batch"],
                lr_decay=dl["lr_decay"],
                max_steps=dl["epochs"] * math.ceil(len(dm.train_dataset) / dl["batch"]),
                val_every=10**9,  # once per epoch, as the published recipe
                patience=dl["patience"],
            )
            result.setdefault("training", {}).setdefault("dlinear", {}).setdefault(h, []).append(record)
            runs.append(curves_of(model.network, test, h))
        if not runs:
            continue
        mean_curve = {k: [sum(r[k][i] for r in runs) / len(runs) for i in range(h)] for k in ("mse", "mae")}
        result["models"].setdefault("dlinear", {})[h] = {
            **summarize_curve(mean_curve, h),
            "per_seed": [summarize_curve(r, h)["mse"] for r in runs],
            "recipe": {k: v for k, v in dl.items() if k != "per_horizon"},
        }
        if h == horizons[-1]:
            result["curves"]["dlinear"] = mean_curve
    # recurrent models, trained once at the longest horizon with the free-running decoder
    dm = datamodule(cfg["history"], longest, cfg["stride"])
    n_t, n_c = dm.n_targets, dm.n_covariates
    rcfg = {**cfg, "recurrent_horizon": longest}
    tl_params = count_parameters(recurrent_net(rcfg, "tlstm", cfg["hidden"], n_t, n_c))
    sizes = {"tlstm": cfg["hidden"]}
    sizes.update({c: matched_hidden(c, n_t, n_c, tl_params, rcfg) for c in ("lstm", "mlstm")})
    result["parameters"] = {}
    eval_stride = int(cfg.get("eval_stride", 1))
    test = torch.utils.data.DataLoader(
        dm.windows("test", stride=eval_stride), batch_size=512, collate_fn=collate_windows, drop_last=False
    )
    result["eval_stride_recurrent"] = eval_stride
    if [c for c in RECURRENT if c in models]:
        result["instance_norm_recurrent"] = cfg.get("instance_norm")
        result["highway_recurrent"] = cfg.get("highway")
        result["highway_lr_recurrent"] = cfg.get("highway_lr")
        result["history_recurrent"] = cfg["history"]
        result["channel_independent_recurrent"] = bool(cfg.get("channel_independent"))
        result["decoder_recurrent"] = cfg.get("decoder") or "recurrent"
        if cfg.get("highway"):
            result["highway_parameters"] = (int(cfg["highway"]) + 1) * longest
    if eval_stride > 1 and models & {"repeat", "ridge"}:
        # the linear baselines on the same subset of test windows (same target rows), for the ratio claims
        lin = datamodule(cfg["linear_history"], longest)
        sub = torch.utils.data.DataLoader(
            lin.windows("test", stride=eval_stride), batch_size=512, collate_fn=collate_windows, drop_last=False
        )
        ridge = RidgeLast(lin.n_targets, cfg["linear_history"], longest, alpha=1.0).fit(lin.train_dataloader())
        for label, baseline in (("repeat_subset", Repeat(lin.n_targets)), ("ridge_subset", ridge)):
            curve = curves_of(baseline, sub, longest)
            result["models"][label] = {
                h: {**summarize_curve(curve, h), "per_seed": [summarize_curve(curve, h)["mse"]]}
                for h in horizons
                if h <= longest
            }
    for cell in [c for c in RECURRENT if c in models]:
        runs = []
        for seed in seeds:
            torch.manual_seed(seed)
            net = recurrent_net(rcfg, cell, sizes[cell], n_t, n_c)
            result["parameters"][cell] = {"hidden": sizes[cell], "count": count_parameters(net)}
            model, record = fit_with_config(
                dm, net, seed, cfg, cfg.get("instance_norm"), int(cfg.get("train_probe_stride", 0))
            )
            if cfg.get("report_val_stride"):  # the validation score of the stored recipes' (every 32nd) windows
                sub = dm.windows("val", stride=int(cfg["report_val_stride"]))
                loader = torch.utils.data.DataLoader(sub, batch_size=512, collate_fn=collate_windows)
                every = int(cfg["report_val_stride"])
                record[f"val_mse_every_{every}"] = evaluate_mse(model.network, loader, longest)
            result.setdefault("training", {}).setdefault(cell, {})[seed] = record
            runs.append(curves_of(model.network, test, longest))
            result.setdefault("seed_curves", {}).setdefault(cell, {})[seed] = runs[-1]
            print(f"[forecasting] {name} {cell} seed {seed}: {record}", flush=True)
        summarize_seeds(result, cell, horizons, longest)
    result["train_windows_recurrent"] = len(dm.train_dataset)
    result["test_windows_recurrent"] = len(test.dataset)  # type: ignore[arg-type]
    return result


def parse_candidate(spec: str) -> dict[str, Any]:
    """A selection candidate: ``base`` or ``+``-joined ``key=value`` overrides of the section's recurrent recipe,
    keys ``norm`` (none / revin / last), ``hw`` (highway window, 0: off), ``init`` (ridge / zeros), ``hist``
    (history), ``hidden`` (TLSTM hidden size; the others are matched), ``rank``, ``steps``, ``stride``, ``hwlr``
    (the highway's learning rate; 0: frozen), ``ci`` (channel independence: 1 on, 0 off), ``dec`` (decoder:
    recurrent / direct)."""
    keys = {"norm": "instance_norm", "hw": "highway", "init": "highway_init", "hist": "history", "hidden": "hidden"}
    keys.update(rank="rank", steps="max_steps", stride="stride", hwlr="highway_lr", ci="channel_independent")
    keys.update(dec="decoder")
    out: dict[str, Any] = {}
    for token in [t for t in spec.split("+") if t and t != "base"]:
        key, _, value = token.partition("=")
        if key not in keys or not value:
            raise ValueError(f"candidate {spec!r}: unknown override {token!r}; expected key=value, keys {sorted(keys)}")
        if key in ("norm", "init"):
            out[keys[key]] = None if value == "none" else value
        elif key == "dec":
            if value not in ("recurrent", "direct"):
                raise ValueError(f"candidate {spec!r}: dec={value!r}; expected recurrent or direct")
            out[keys[key]] = value
        elif key == "ci":
            out[keys[key]] = bool(int(value))
        elif key == "hwlr":
            out[keys[key]] = float(value)
        else:
            out[keys[key]] = int(value) or None
    return out


def run_ridge_fits(cfg: dict[str, Any], strides: tuple[int, ...] = (1, 8), alpha: float = 1.0) -> dict[str, Any]:
    """The closed-form ridge on the last ``linear_history`` values at the longest horizon, in the two forms the
    benchmark uses, fitted on every ``n``-th training window for each ``n`` in ``strides``: ``RidgeLast`` (values
    relative to the last one, NLinear-style: the claims' anchor) and the ``Highway`` map around a network that
    outputs zeros (raw values plus an intercept: what ``Forecaster.fit_highway`` fits). Test MSE on every
    ``eval_stride``-th test window (the recurrent models' windows) and validation MSE on every ``val_stride``-th
    validation window (the recurrent recipe's). No gradient step anywhere: seconds of CPU."""
    from trinity_lightning.forecasting import Highway, RidgeLast, TimeSeriesDataModule, collate_windows

    class _Zeros(torch.nn.Module):
        def __init__(self, n: int) -> None:
            super().__init__()
            self.n = n

        def forward(self, history: torch.Tensor, future_covariates: torch.Tensor, horizon: int) -> torch.Tensor:
            return history.new_zeros(history.shape[0], horizon, self.n)

    lags, horizon = int(cfg["linear_history"]), int(cfg["horizons"][-1])
    rows: list[dict[str, Any]] = []
    for stride in strides:
        dm = TimeSeriesDataModule(
            cfg["source"], history=lags, horizon=horizon, split=cfg["split"], batch_size=512, train_stride=stride
        )
        dm.setup("fit")

        def loader(split: str, every: int, dm: Any = dm) -> Any:
            return torch.utils.data.DataLoader(
                dm.windows(split, stride=every), batch_size=512, collate_fn=collate_windows, drop_last=False
            )

        train = loader("train", stride)
        fits = {
            "ridge_last_nlinear_form": RidgeLast(dm.n_targets, lags, horizon, alpha=alpha).fit(train),
            "highway_raw_form": Highway(_Zeros(dm.n_targets), lags, horizon).fit_ridge(train, alpha=alpha),
        }
        for form, model in fits.items():
            rows.append(
                {
                    "form": form,
                    "train_window_stride": stride,
                    "train_windows": len(dm.windows("train", stride=stride)),
                    "test_mse": evaluate_mse(model, loader("test", int(cfg.get("eval_stride", 1))), horizon),
                    "val_mse": evaluate_mse(model, loader("val", int(cfg.get("val_stride", 1))), horizon),
                }
            )
            print(f"[forecasting] ridge fit {rows[-1]}", flush=True)
    return {"lags": lags, "horizon": horizon, "alpha": alpha, "rows": rows}


def beside_runs(specs: list[str], rule: str | None) -> dict[str, Any]:
    """Runs reported beside the claims (never read by them): ``NAME=DIR`` specs of single-seed ``--only etth1``
    runs (``DIR/forecasting.json``; repeat a name for its other seeds). Per name, cell and seed: the training
    record (validation curve with the chosen step, gate, CPU s) and the test MSE at the recurrent horizon; per name
    and cell the mean best validation MSE and mean test MSE over the seeds found."""
    out: dict[str, Any] = {"rule": rule, "runs": {}, "summary": {}}
    for spec in specs:
        name, _, folder = spec.partition("=")
        if not name or not folder:
            raise SystemExit(f"--beside: expected NAME=DIR, got {spec!r}")
        section = json.loads((Path(folder) / "forecasting.json").read_text())["details"]["sections"]["etth1"]
        longest = str(section["recurrent_horizon"])
        run = out["runs"].setdefault(name, {"settings": {}, "cells": {}})
        run["settings"] = {k: v for k, v in section.items() if k.endswith("_recurrent")}
        for cell, per_seed in section.get("training", {}).items():
            tests = section["models"][cell][longest]["per_seed"]
            for (seed, record), test in zip(sorted(per_seed.items()), tests, strict=True):
                run["cells"].setdefault(cell, {})[seed] = {**record, f"test_mse_{longest}": round(test, 5)}
    for name, run in out["runs"].items():
        for cell, seeds in run["cells"].items():
            out["summary"].setdefault(name, {})[cell] = {
                "seeds": sorted(seeds),
                "best_val_mse_mean": round(sum(r["best_val_mse"] for r in seeds.values()) / len(seeds), 5),
                "test_mse_mean": round(
                    sum(next(v for k, v in r.items() if k.startswith("test_mse_")) for r in seeds.values())
                    / len(seeds),
                    5,
                ),
                "chosen_steps": [r["best_step"] for _, r in sorted(seeds.items())],
                "gates": [r.get("gate") for _, r in sorted(seeds.items())],
            }
    return out


def run_selection(
    cfg: dict[str, Any],
    seeds: list[int],
    models: set[str],
    candidates: list[str],
    stored: dict[str, Any],
    reused: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """ETTh1 at the recurrent horizon: each candidate recipe (:func:`parse_candidate`) trained for every recurrent
    model in ``models`` and seed, scored on the validation windows only (best validation MSE, its curve, the
    highway's starting point); no test window is read. Runs already in ``stored`` (same candidate, model and seed)
    are kept, so a selection can be extended; ``reused`` (``{cell: {seed: record}}``, the etth1 section's training
    records) stands in for the ``base`` candidate when its recipe is the section's."""
    from trinity_lightning.forecasting import TimeSeriesDataModule

    horizon = cfg.get("recurrent_horizon", cfg["horizons"][-1])
    reused = {c: v for c, v in (reused or {}).items() if c in RECURRENT}
    runs: dict[str, Any] = dict(stored.get("runs", {}))
    for cell, by_seed in reused.items():  # the stored section's runs at the section's own recipe ("base")
        for seed, record in by_seed.items():
            if "base" in candidates and int(seed) in seeds and cell in models:
                runs.setdefault(f"base/{cell}/{seed}", {**record, "reused_from": "the etth1 section's stored run"})
    result: dict[str, Any] = {"horizon": horizon, "candidates": {}, "runs": runs}
    for spec in candidates:
        recipe = {**cfg, **parse_candidate(spec)}
        result["candidates"][spec] = {k: recipe.get(k) for k in ("instance_norm", "highway", "history", "hidden")}
        result["candidates"][spec].update({k: recipe.get(k) for k in ("rank", "max_steps", "stride", "highway_lr")})
        result["candidates"][spec].update(
            channel_independent=bool(recipe.get("channel_independent")), decoder=recipe.get("decoder") or "recurrent"
        )
        todo = [(c, s) for c in RECURRENT if c in models for s in seeds if f"{spec}/{c}/{s}" not in runs]
        if not todo:
            continue
        dm = TimeSeriesDataModule(
            recipe["source"],
            history=recipe["history"],
            horizon=horizon,
            split=recipe["split"],
            batch_size=recipe["batch"],
            train_stride=recipe["stride"],
        )
        dm.setup("fit")
        rcfg = {**recipe, "recurrent_horizon": horizon}
        tl_params = count_parameters(recurrent_net(rcfg, "tlstm", recipe["hidden"], dm.n_targets, 0))
        for cell, seed in todo:
            hidden = recipe["hidden"] if cell == "tlstm" else matched_hidden(cell, dm.n_targets, 0, tl_params, rcfg)
            torch.manual_seed(seed)
            net = recurrent_net(rcfg, cell, hidden, dm.n_targets, 0)
            count = count_parameters(net)
            _, record = fit_with_config(dm, net, seed, recipe, recipe.get("instance_norm"), 0)
            record.update(hidden=hidden, parameters=count)
            runs[f"{spec}/{cell}/{seed}"] = record
            print(f"[forecasting] selection {spec} {cell} seed {seed}: {record}", flush=True)
    table: dict[str, dict[str, float]] = {}
    for key, record in runs.items():
        spec, cell, _ = key.rsplit("/", 2)
        table.setdefault(spec, {}).setdefault(cell, []).append(record["best_val_mse"])  # type: ignore[attr-defined]
    result["validation_mse"] = {
        spec: {cell: sum(v) / len(v) for cell, v in by_cell.items()} for spec, by_cell in table.items()
    }
    scored = {spec: sum(v.values()) / len(v) for spec, v in result["validation_mse"].items()}
    if scored:
        result["chosen"] = min(scored, key=scored.__getitem__)
        result["chosen_by"] = (
            "lowest best validation MSE, averaged over the recurrent models and seeds run (no test window read)"
        )
    return result


def run_diagnosis(cfg: dict[str, Any], seeds: list[int], models: set[str], norms: list[str]) -> dict[str, Any]:
    """ETTh1 at the recurrent horizon: train vs validation curves of the recurrent models with each instance
    normalisation in ``norms`` (``none``, ``revin``, ``last``), beside Repeat and the closed-form ridge scored on
    the same training-probe / validation / test windows, so that a gap between the splits can be told from
    over-fitting: the probe is every ``train_probe_stride``-th training window (a subset of the windows trained on)."""
    from trinity_lightning.forecasting import (
        InstanceNorm,
        RecurrentForecastNet,
        Repeat,
        RidgeLast,
        TimeSeriesDataModule,
    )
    from trinity_lightning.forecasting import collate_windows as collate

    class Zero(torch.nn.Module):
        def forward(self, history: torch.Tensor, future_covariates: torch.Tensor, horizon: int) -> torch.Tensor:
            n_targets = history.shape[-1] - future_covariates.shape[-1]
            return history.new_zeros(history.shape[0], horizon, n_targets)

    horizon = cfg.get("recurrent_horizon", cfg["horizons"][-1])
    dm = TimeSeriesDataModule(
        cfg["source"],
        history=cfg["history"],
        horizon=horizon,
        split=cfg["split"],
        batch_size=cfg["batch"],
        train_stride=cfg["stride"],
    )
    dm.setup("fit")
    probe_stride = int(cfg.get("train_probe_stride", 64))
    loaders = {
        "train_probe": dm.windows("train", stride=probe_stride),
        "val": dm.windows("val", stride=cfg["val_stride"]),
        "test": dm.windows("test", stride=int(cfg.get("eval_stride", 1))),
    }
    loaders = {k: torch.utils.data.DataLoader(v, batch_size=512, collate_fn=collate) for k, v in loaders.items()}
    result: dict[str, Any] = {"horizon": horizon, "windows": {k: len(v.dataset) for k, v in loaders.items()}}
    ridge = RidgeLast(dm.n_targets, cfg["history"], horizon, alpha=1.0).fit(dm.train_dataloader())
    window_mean = InstanceNorm(Zero(), "revin")  # forecasts each window's own mean
    for label, baseline in (
        ("repeat", Repeat(dm.n_targets)),
        (f"ridge_last_{cfg['history']}", ridge),
        ("window_mean", window_mean),
    ):
        result[label] = {k: evaluate_mse(baseline, v, horizon) for k, v in loaders.items()}
    # each split's per-channel mean and std in the train-fitted normalised units (train: 0 and 1)
    values, borders = dm.values, (0, *dm.borders)
    result["split_statistics"] = {
        name: {
            "mean": [round(float(x), 3) for x in values[a:b].mean(0)],
            "std": [round(float(x), 3) for x in values[a:b].std(0)],
        }
        for name, a, b in zip(("train", "val", "test"), borders[:-1], borders[1:])
    }
    tl_params = count_parameters(RecurrentForecastNet(dm.n_targets, 0, "tlstm", cfg["hidden"], rank=cfg["rank"]))
    runs = result.setdefault("runs", {})
    for cell in [c for c in RECURRENT if c in models]:
        hidden = cfg["hidden"] if cell == "tlstm" else matched_hidden(cell, dm.n_targets, 0, tl_params)
        for norm in norms:
            for seed in seeds:
                torch.manual_seed(seed)
                net = RecurrentForecastNet(dm.n_targets, 0, cell, hidden, rank=cfg["rank"])
                norm_option = None if norm == "none" else norm
                model, record = fit_with_config(dm, net, seed, cfg, norm_option, probe_stride)
                record["best_weights"] = {k: evaluate_mse(model.network, v, horizon) for k, v in loaders.items()}
                runs[f"{cell}/{norm}/{seed}"] = record
                print(f"[forecasting] diagnosis {cell} {norm} seed {seed}: {record}", flush=True)
    return result


def evaluate_mse(network: Any, loader: Any, horizon: int) -> float:
    from trinity_lightning.forecasting import evaluate

    return round(evaluate(network, loader, horizon).summary()["mse"], 5)


def summarize_seeds(result: dict[str, Any], cell: str, horizons: list[int], longest: int) -> None:
    """``result['models'][cell]`` and ``result['curves'][cell]`` from the per-seed test curves (also after merging
    runs of single seeds, ``--seed-list``)."""
    by_seed = result["seed_curves"][cell]
    runs = [by_seed[k] for k in sorted(by_seed, key=int)]
    mean_curve = {k: [sum(r[k][i] for r in runs) / len(runs) for i in range(longest)] for k in ("mse", "mae")}
    result["curves"][cell] = mean_curve
    result["models"][cell] = {
        h: {
            **summarize_curve(mean_curve, h),
            "per_seed": [summarize_curve(r, h)["mse"] for r in runs],
            "seeds": sorted(int(k) for k in by_seed),
        }
        for h in horizons
        if h <= longest
    }


def run_genz(cfg: dict[str, Any], seeds: list[int]) -> dict[str, Any]:
    from trinity_lightning.forecasting import GenzDataModule, RecurrentForecastNet, Repeat, RidgeLast

    dm = GenzDataModule(
        n_sequences=cfg["n_sequences"],
        history=cfg["history"],
        horizon=cfg["horizon"],
        c=cfg["c"],
        batch_size=cfg["batch"],
        seed=0,
    )
    dm.setup("fit")
    h = cfg["horizon"]
    test = dm.test_dataloader()
    result: dict[str, Any] = {"horizons": list(range(1, h + 1)), "models": {}, "curves": {}, "parameters": {}}
    result["curves"]["repeat"] = curves_of(Repeat(1), test, h)
    ridge = RidgeLast(1, cfg["history"], h, alpha=1e-3).fit(dm.train_dataloader())
    result["curves"]["ridge"] = curves_of(ridge, test, h)
    tl_params = count_parameters(RecurrentForecastNet(1, 0, "tlstm", cfg["hidden"], rank=cfg["rank"]))
    sizes = {"tlstm": cfg["hidden"], **{c: matched_hidden(c, 1, 0, tl_params) for c in ("lstm", "mlstm")}}
    per_seed: dict[str, list[list[float]]] = {}
    for cell in RECURRENT:
        runs = []
        for seed in seeds:
            torch.manual_seed(seed)
            net = RecurrentForecastNet(1, 0, cell, sizes[cell], rank=cfg["rank"])
            result["parameters"][cell] = {"hidden": sizes[cell], "count": count_parameters(net)}
            model = fit_epochs(dm, net, cfg["epochs"], seed, lr=cfg["lr"])
            runs.append(curves_of(model.network, test, h))
        result["curves"][cell] = {k: [sum(r[k][i] for r in runs) / len(runs) for i in range(h)] for k in ("mse", "mae")}
        per_seed[cell] = [r["mse"] for r in runs]
    for model, curve in result["curves"].items():
        result["models"][model] = {
            "rmse_by_step": [math.sqrt(v) for v in curve["mse"]],
            "mse_last_step": curve["mse"][-1],
            "mse_last_step_per_seed": [r[-1] for r in per_seed.get(model, [curve["mse"]])],
        }
    return result


# -- plot and claims ----------------------------------------------------------------------------------------------
def plot(sections: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in ("genz", "etth1", "exchange", "elecdemand") if n in sections]
    if not names:
        return
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4))
    axes = [axes] if len(names) == 1 else list(axes)
    for ax, name in zip(axes, names):
        for model, curve in sections[name]["curves"].items():
            if model not in ALL_MODELS:  # "<model>_stop13", "<model>_ci": earlier or beside recipes (in the JSON)
                continue
            steps = range(1, len(curve["mse"]) + 1)
            ax.plot(steps, curve["mse"], label=model, lw=1.8 if model == "tlstm" else 1.0, color=COLORS.get(model))
        ax.set_title(name)
        ax.set_xlabel("forecast step")
        ax.set_ylabel("MSE (normalized)")
        ax.set_yscale("log")
    handles = {line.get_label(): line for ax in axes for line in ax.get_lines()}
    fig.suptitle("Error vs horizon (mean of seeds; each series' current recipe, details.config)", fontsize=9)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.legend(list(handles.values()), list(handles), loc="lower center", fontsize=8, ncol=len(handles))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def accuracy_claims(sections: dict[str, Any]) -> list[dict[str, Any]]:
    claims = []
    if "genz" in sections and {"tlstm", "lstm"} <= set(sections["genz"]["models"]):
        m = sections["genz"]["models"]
        h = len(sections["genz"]["curves"]["tlstm"]["mse"])
        claims.append(
            claim(
                "tlstm_vs_lstm_long_horizon_genz",
                f"Genz dynamics, RMSE at the longest horizon (step {h}), LSTM / TLSTM at matched parameter counts, "
                "mean of 3 seeds",
                ours=math.sqrt(m["tlstm"]["mse_last_step"]),
                anchor=math.sqrt(m["lstm"]["mse_last_step"]),
                unit="RMSE (normalized)",
                better="lower",
                target=1.05,
            )
        )
    if "etth1" in sections and {"tlstm", "lstm", "ridge"} <= set(sections["etth1"]["models"]):
        m = {name: {int(h): v for h, v in by_h.items()} for name, by_h in sections["etth1"]["models"].items()}
        last = sections["etth1"]["recurrent_horizon"]
        n_test = sections["etth1"].get("test_windows_recurrent")
        scope = f"standard split, every {sections['etth1'].get('eval_stride_recurrent', 1)}th test window ({n_test})"
        norm = sections["etth1"].get("instance_norm_recurrent")
        recipe = f"{norm} instance normalisation, " if norm else ""
        if sections["etth1"].get("channel_independent_recurrent"):
            recipe = "channel-independent (one univariate network shared by the 7 channels), " + recipe
        decoder = sections["etth1"].get("decoder_recurrent", "recurrent")
        decoders = {
            "recurrent": "free-running decoders",
            "segment": "segment-recurrent encoders with parallel multi-step decoding (SegRNN's ETTh1 recipe, CPU width)",
        }.get(decoder, f"{decoder} multi-step heads")
        history = sections["etth1"].get("history_recurrent", 96)
        if history != 96:
            recipe += f"{history}-step history, "
        if sections["etth1"].get("highway_recurrent"):
            window = sections["etth1"]["highway_recurrent"]
            recipe += f"a linear highway on the last {window} values (ridge warm start), "
        claims.append(
            claim(
                "tlstm_vs_lstm_long_horizon_etth1",
                f"ETTh1 MSE at horizon {last} ({scope}), LSTM / TLSTM at matched parameter counts, {decoders}, "
                f"{recipe}3 seeds, CPU-scaled training (see details.config)",
                ours=m["tlstm"][last]["mse"],
                anchor=m["lstm"][last]["mse"],
                unit="MSE (normalized)",
                better="lower",
                target=1.05,
            )
        )
        claims.append(
            claim(
                "tlstm_vs_ridge_etth1_720",
                f"ETTh1 MSE at horizon {last} ({scope}): closed-form channel-shared ridge on the last 336 values "
                f"/ TLSTM ({decoders}, {recipe}mean of 3 seeds)",
                ours=m["tlstm"][last]["mse"],
                anchor=m.get("ridge_subset", m["ridge"])[last]["mse"],
                unit="MSE (normalized)",
                better="lower",
                target=0.95,
            )
        )
    return claims


def markdown_tables(details: dict[str, Any]) -> str:
    """The docs page's tables: published numbers beside ours (MSE / MAE per horizon; Genz: RMSE per step)."""
    names = {
        "repeat": "Repeat",
        "ridge": "Ridge on the last L values (closed form)",
        "dlinear": "DLinear (L=336)",
        "tlstm": "TLSTM",
        "lstm": "LSTM",
        "mlstm": "MLSTM",
        "repeat_subset": "Repeat (recurrent's windows)",
        "ridge_subset": "Ridge (recurrent's windows)",
        "dlinear_stop13": "DLinear, previous recipe (2 epochs, lr 5e-3, batch 32)",
        "tlstm_stop13": "TLSTM, previous recipe (2 epochs, teacher forcing, no validation)",
        "lstm_stop13": "LSTM, previous recipe",
        "mlstm_stop13": "MLSTM, previous recipe",
        "tlstm_stop14": "TLSTM, stop-14 recipe (no highway, no instance normalisation)",
        "lstm_stop14": "LSTM, stop-14 recipe (no highway, no instance normalisation)",
        "tlstm_revin": "TLSTM, RevIN instance normalisation (stop 16)",
        "lstm_revin": "LSTM, RevIN instance normalisation (stop 16)",
        "tlstm_stop17": "TLSTM, linear highway on 96 values, recurrent decoder (stop 17; previous claims)",
        "lstm_stop17": "LSTM, linear highway on 96 values, recurrent decoder (stop 17; previous claims)",
        "mlstm_stop17": "MLSTM, linear highway on 96 values, recurrent decoder (stop 18)",
        "tlstm_ci": "TLSTM, channel-independent, 336-step history, highway on 336, direct head (stop 19)",
        "lstm_ci": "LSTM, channel-independent, 336-step history, highway on 336, direct head (stop 19)",
        "tlstm_ci96": "TLSTM, channel-independent, highway on 96, direct head (stop 19)",
        "lstm_ci96": "LSTM, channel-independent, highway on 96, direct head (stop 19)",
    }
    lines: list[str] = []
    for name, label in (("etth1", "ETTh1"), ("exchange", "Exchange rate"), ("elecdemand", "Electricity demand")):
        section = details["sections"].get(name)
        if not section:
            continue
        horizons = section["horizons"]
        lines += [
            f"**{label}** (MSE / MAE, normalized units)",
            "",
            "| model | " + " | ".join(map(str, horizons)) + " |",
            "|---" * (len(horizons) + 1) + "|",
        ]
        for model, by_h in PUBLISHED.get(name, {}).items():
            cells = [f"{by_h[h][0]:.3f} / {by_h[h][1]:.3f}" if h in by_h else "" for h in horizons]
            lines.append(f"| published: {model} | " + " | ".join(cells) + " |")
        for model, by_h in section["models"].items():
            cells = []
            for h in horizons:
                v = by_h.get(str(h), by_h.get(h))  # type: ignore[call-overload]
                cells.append(f"{v['mse']:.3f} / {v['mae']:.3f}" if v else "")
            lines.append(f"| ours: {names.get(model, model)} | " + " | ".join(cells) + " |")
        lines.append("")
    genz = details["sections"].get("genz")
    if genz:
        steps = [1, 5, 10, len(genz["curves"]["tlstm"]["mse"])]
        lines += [
            "**Genz dynamics** (RMSE per forecast step, normalized units)",
            "",
            "| model | " + " | ".join(f"step {k}" for k in steps) + " |",
            "|---" * (len(steps) + 1) + "|",
        ]
        for model, value in genz["models"].items():
            lines.append(
                f"| {names.get(model, model)} | "
                + " | ".join(f"{value['rmse_by_step'][k - 1]:.3f}" for k in steps)
                + " |"
            )
        lines.append("")
    return "\n".join(lines)


def significant(value: Any, digits: int = 6) -> Any:
    """``value`` with every float in its (nested) lists and dicts rounded to ``digits`` significant digits."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, list):
        return [significant(v, digits) for v in value]
    if isinstance(value, dict):
        return {k: significant(v, digits) for k, v in value.items()}
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(DEFAULT_SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed-list", default=None, help="comma-separated seeds (instead of 0..seeds-1)")
    parser.add_argument("--quick", action="store_true", help="toy sizes (a smoke run)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--table", action="store_true", help="print the docs page's Markdown tables")
    parser.add_argument("--models", default=",".join(ALL_MODELS), help=f"subset of {ALL_MODELS} (real series)")
    parser.add_argument(
        "--max-steps", type=int, default=None, help="the recurrent models' step budget (overrides the section's)"
    )
    parser.add_argument("--horizons", default=None, help="comma-separated horizons (overrides the section's)")
    parser.add_argument(
        "--recurrent-horizon", type=int, default=None, help="the horizon the recurrent models train at (overrides)"
    )
    parser.add_argument(
        "--val-stride", type=int, default=None, help="score every n-th validation window (recurrent; overrides)"
    )
    parser.add_argument(
        "--norms", default="none,revin", help="diagnosis: instance normalisations to compare (none, revin, last)"
    )
    parser.add_argument(
        "--instance-norm",
        default=None,
        help="the recurrent models' per-window normalisation (revin or last; overrides the section's)",
    )
    parser.add_argument(
        "--highway", type=int, default=None, help="the recurrent models' linear highway window (0: off; overrides)"
    )
    parser.add_argument("--highway-init", default=None, help="ridge (closed-form warm start, default) or zeros")
    parser.add_argument("--highway-lr", type=float, default=None, help="the highway's learning rate (0: frozen)")
    parser.add_argument("--history", type=int, default=None, help="the recurrent models' history (overrides)")
    parser.add_argument("--stride", type=int, default=None, help="the recurrent models' training-window stride")
    parser.add_argument("--hidden", type=int, default=None, help="TLSTM hidden size (others matched; overrides)")
    parser.add_argument(
        "--channel-independent",
        action="store_true",
        help="the recurrent models forecast every target channel with one shared univariate network",
    )
    parser.add_argument("--decoder", default=None, help="the recurrent models' decoder: recurrent (default) or direct")
    parser.add_argument(
        "--recipe",
        default=None,
        choices=["segrnn"],
        help="the recurrent models follow a named recipe (segrnn: SEGRNN_ETTH1, SegRNN's published ETTh1 one)",
    )
    parser.add_argument(
        "--highway-gate",
        action="store_true",
        help="scale the network inside the highway by a learnable scalar starting at 0 (step 0 = the ridge forecast)",
    )
    parser.add_argument(
        "--beside",
        default=None,
        help="comma-separated NAME=DIR single-seed etth1 runs stored in details.sections[--beside-section] (no claim)",
    )
    parser.add_argument("--beside-section", default="beside_runs", help="where --beside goes in details.sections")
    parser.add_argument("--beside-rule", default=None, help="a text file with the rule those runs followed")
    parser.add_argument(
        "--highway-fit-stride",
        type=int,
        default=None,
        help="fit the highway's ridge on every n-th training window (default: the training windows' stride)",
    )
    parser.add_argument(
        "--candidates",
        default="base,norm=last,hw=96,hw=96+norm=last",
        help="selection: comma-separated recipes, each 'base' or '+'-joined key=value overrides (parse_candidate)",
    )
    parser.add_argument(
        "--reuse-base",
        action="store_true",
        help="selection: the stored etth1 runs stand in for the 'base' candidate (when run at the same recipe)",
    )
    parser.add_argument("--results-dir", default=str(RESULTS_DIR))
    parser.add_argument("--plot", default=str(PLOT))
    parser.add_argument(
        "--merge",
        default=None,
        help="comma-separated forecasting.json files of parallel / partial runs whose sections are merged in",
    )
    args = parser.parse_args()
    quiet()
    torch.set_num_threads(args.threads)
    only = [s for s in args.only.split(",") if s and s != "none"]
    unknown = set(only) - set(SECTIONS)
    if unknown:
        parser.error(f"--only: unknown sections {sorted(unknown)}; expected some of {SECTIONS}")
    configs = {k: dict(v) for k, v in (QUICK if args.quick else FULL).items()}
    if args.recipe == "segrnn":  # first, so that the options below (--hidden ...) override the recipe's values
        for series in ("etth1", "exchange", "elecdemand"):  # SegRNN published ETTh1's; the others reuse it
            configs[series].update(SEGRNN_ETTH1 if not args.quick else SEGRNN_QUICK)
    for cfg in configs.values():
        if args.max_steps and "max_steps" in cfg:
            cfg["max_steps"] = args.max_steps
        if args.horizons and "horizons" in cfg:
            cfg["horizons"] = [int(h) for h in args.horizons.split(",")]
            if "recurrent_horizon" in cfg:
                cfg["recurrent_horizon"] = min(cfg["recurrent_horizon"], max(cfg["horizons"]))
        if args.recurrent_horizon and "horizons" in cfg:
            cfg["recurrent_horizon"] = args.recurrent_horizon
        if args.val_stride and "val_stride" in cfg:
            cfg["val_stride"] = args.val_stride
        if args.instance_norm and "horizons" in cfg:
            cfg["instance_norm"] = None if args.instance_norm == "none" else args.instance_norm
        for option, key in (("highway", "highway"), ("history", "history"), ("stride", "stride"), ("hidden", "hidden")):
            if getattr(args, option) is not None and "horizons" in cfg:
                cfg[key] = getattr(args, option) or None
        if args.highway_lr is not None and "horizons" in cfg:
            cfg["highway_lr"] = args.highway_lr
        if args.highway_init and "horizons" in cfg:
            cfg["highway_init"] = args.highway_init
        if args.channel_independent and "horizons" in cfg:
            cfg["channel_independent"] = True
        if args.highway_gate and "horizons" in cfg:
            cfg["highway_gate"] = True
        if args.highway_fit_stride and "horizons" in cfg:
            cfg["highway_fit_stride"] = args.highway_fit_stride
        if args.decoder and "horizons" in cfg:
            if args.decoder not in ("recurrent", "direct", "segment"):
                parser.error(f"--decoder: got {args.decoder!r}; expected recurrent, direct or segment")
            cfg["decoder"] = args.decoder
    models = {m for m in args.models.split(",") if m}
    results_dir = Path(args.results_dir)
    try:
        stored = read_results("forecasting", results_dir)
        details: dict[str, Any] = stored.get("details", {})
    except FileNotFoundError:
        details = {}
    details.setdefault("sections", {})
    details.setdefault("timing", {})
    seeds = [int(x) for x in args.seed_list.split(",")] if args.seed_list else list(range(args.seeds))

    def save() -> None:
        sections = details["sections"]
        for section in sections.values():  # per-step curves to 6 significant digits: the file stays < 1.5 MB
            for key in ("curves", "seed_curves"):
                if isinstance(section.get(key), dict):
                    section[key] = significant(section[key])
        claims = []
        if "memory" in sections:
            claims.append(sections["memory"]["claim"])
        claims.extend(accuracy_claims(sections))
        if "throughput" in sections:
            claims.append(sections["throughput"]["claim"])
        details["published"] = {
            k: {m: {str(h): v for h, v in hv.items()} for m, hv in d.items()} for k, d in PUBLISHED.items()
        }
        details["plot"] = os.path.relpath(args.plot, ROOT) if Path(args.plot).is_absolute() else args.plot
        # a merge's inputs are temporary partial runs: record the command's shape, not their paths
        command = "python benchmarks/forecasting.py --only none --merge RUN.json[,RUN.json...]" if args.merge else None
        write_results(
            "forecasting", claims, details=details, results_dir=results_dir, command=command, inline_number_lists=True
        )

    for merged in args.merge.split(",") if args.merge else []:
        other = json.loads(Path(merged).read_text())["details"]
        runs = details.setdefault("timing", {}).setdefault("merged_runs", [])
        runs.append({"sections": sorted(other.get("sections", {})), **other.get("timing", {})})
        for name, cfg in other.get("config", {}).items():  # a partial run's config is kept beside the section's
            details.setdefault("config", {}).setdefault(name, {}).setdefault("runs", []).append(cfg)
        for name, section in other.get("sections", {}).items():
            mine = details["sections"].setdefault(name, {})
            for key, value in section.items():
                if key in ("seed_curves", "training") and isinstance(mine.get(key), dict):
                    for model, per_seed in value.items():  # runs of different seeds of one model
                        if isinstance(per_seed, dict) and isinstance(mine[key].get(model), dict):
                            mine[key][model].update(per_seed)
                        else:
                            mine[key][model] = per_seed
                elif key == "models" and isinstance(mine.get(key), dict):
                    for model, by_h in value.items():  # per horizon: a --horizons run holds only its horizons
                        if model in RECURRENT or not isinstance(mine[key].get(model), dict):
                            mine[key][model] = by_h  # recurrent: recomputed below from the seed curves
                        else:
                            mine[key][model].update(by_h)
                elif key == "horizons" and isinstance(mine.get(key), list):
                    mine[key] = sorted({int(h) for h in (*mine[key], *value)})
                elif isinstance(value, dict) and isinstance(mine.get(key), dict):
                    mine[key].update(value)
                else:
                    mine[key] = value
            for cell in mine.get("seed_curves", {}):
                summarize_seeds(mine, cell, mine["horizons"], mine["recurrent_horizon"])
    if args.beside:
        rule = Path(args.beside_rule).read_text() if args.beside_rule else None
        details["sections"][args.beside_section] = beside_runs(args.beside.split(","), rule)
        save()
    for section in only:
        t0, c0 = time.perf_counter(), time.process_time()
        print(f"[forecasting] {section} ...", flush=True)
        if section == "memory":
            details["sections"]["memory"] = run_memory(args.quick)
        elif section == "throughput":
            details["sections"]["throughput"] = run_throughput(args.quick)
        elif section == "selection":
            stored_selection = details["sections"].get("selection", {})
            details["sections"]["selection"] = run_selection(
                configs["etth1"],
                seeds[:1] if not args.seed_list else seeds,
                models,
                args.candidates.split(","),
                stored_selection,
                details["sections"].get("etth1", {}).get("training") if args.reuse_base else None,
            )
        elif section == "diagnosis":
            details["sections"]["diagnosis"] = run_diagnosis(configs["etth1"], seeds, models, args.norms.split(","))
        elif section == "ridge_fits":
            details["sections"]["ridge_fits"] = run_ridge_fits(configs["etth1"])
        elif section == "genz":
            details["sections"]["genz"] = run_genz(configs["genz"], seeds)
        else:
            details["sections"][section] = run_series(section, configs[section], seeds, models)
        if section not in ("memory", "throughput", "diagnosis", "selection", "ridge_fits"):
            details.setdefault("config", {})[section] = configs[section]
        details["timing"][section] = {
            "wall_s": round(time.perf_counter() - t0, 1),
            "cpu_s": round(time.process_time() - c0, 1),
            "load_average_after": [round(v, 2) for v in os.getloadavg()],
            "seeds": len(seeds),
            "quick": args.quick,
            "threads": args.threads,
        }
        print(f"[forecasting] {section} done: {details['timing'][section]}", flush=True)
        save()
    plot(details["sections"], Path(args.plot))
    save()
    if args.table:
        print(markdown_tables(details))


if __name__ == "__main__":
    main()
