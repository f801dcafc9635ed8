"""The active-learning campaign as one Lightning callback: all rounds run inside a single ``trainer.fit``.

Why a callback and not a loop around ``trainer.fit``: Lightning 2 removed loop customization, and an
outer loop would need its own checkpointing of the model, the optimizer, the pool and the round. Inside
``fit`` everything is already in the Lightning checkpoint (model, optimizer, the DataModule's
``state_dict`` with the labelled set, this callback's ``state_dict`` with the round and the learning
curve), so ``trainer.fit(..., ckpt_path="last")`` resumes a killed campaign, and a user adds active
learning to an existing LightningModule with one callback and one DataModule.

Each round: train ``epochs_per_round`` epochs (at least ``min_steps_per_round`` steps) on the labelled
set, record the validation metric, score the pool (model in eval mode, inference mode, the precision
plugin's autocast, the pool split across ranks under DDP), query the top examples, ask the oracle,
grow the labelled set, optionally reset the weights, and go on until ``budget``.
"""

from __future__ import annotations

import copy
import csv
import io
import math
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from trinity_lightning.active.datamodule import ActiveLearningDataModule
from trinity_lightning.active.oracles import Oracle, SimulatedOracle
from trinity_lightning.active.scoring import Selection, find_mc_split, merge_selections, score_pool, select_by_budget
from trinity_lightning.active.strategies import QueryStrategy, get_strategy
from trinity_lightning.data.atomic import atomic_write_text

__all__ = ["ActiveLearning"]

_UNITS = ("examples", "tokens")


class ActiveLearning(Callback):
    """Run an active-learning campaign inside ``trainer.fit`` (see the module docstring).

    The trainer's DataModule must be an :class:`ActiveLearningDataModule`. Set ``max_epochs: -1`` (the
    callback stops the run when the budget is spent); the train loader is rebuilt every epoch (this
    callback sets ``reload_dataloaders_every_n_epochs=1``).

    Args:
        strategy: a registered strategy name (``random``, ``least_confidence``, ``margin``, ``entropy``,
            ``mnlp``, ``bald``) or a :class:`QueryStrategy`.
        query_size: examples (or tokens, see ``unit``) added per round.
        budget: stop once this many examples (or tokens) are labelled and trained on; ``None``: until the
            pool is empty.
        unit: ``"examples"`` or ``"tokens"`` (cost from the DataModule's ``cost_fn``, e.g. words).
        epochs_per_round: training epochs between two queries.
        min_steps_per_round: keep training a round until at least this many optimizer steps ran.
        oracle: who labels; default :class:`SimulatedOracle` (the dataset's own labels).
        reset_weights: re-initialize the model (and clear the optimizer state) after each query, instead of
            continuing to train it (warm start, the default, as in Shen et al. 2018).
        pool_subset: score only a random subset of the pool each round: a count, or a fraction in ``(0, 1]``.
        monitor: the metric recorded per round (default: every ``val_*`` metric).
        curve_path: CSV learning curve, rewritten atomically each round (default:
            ``<log_dir>/active_learning_curve.csv``).
        strategy_kwargs: arguments of the strategy when given by name (e.g. ``{"n_samples": 10}``).
        sort_pool_by_cost: score the pool in order of cost (sentence length) so batches pad little.
        seed: seed of random strategies and pool subsets.

    Example:
        >>> al = ActiveLearning("bald", query_size=32, budget=256, strategy_kwargs={"n_samples": 5})
        >>> al.strategy
        BALD(n_samples=5, mode='mutual_information', reduction='mean')
    """

    def __init__(
        self,
        strategy: str | QueryStrategy = "entropy",
        query_size: int = 100,
        budget: int | None = None,
        unit: str = "examples",
        epochs_per_round: int = 1,
        min_steps_per_round: int = 0,
        oracle: Oracle | None = None,
        reset_weights: bool = False,
        pool_subset: int | float | None = None,
        monitor: str | None = None,
        curve_path: str | None = None,
        strategy_kwargs: dict[str, Any] | None = None,
        sort_pool_by_cost: bool = True,
        seed: int = 0,
    ) -> None:
        if not isinstance(query_size, int) or query_size < 1:
            raise ValueError(f"query_size: expected a positive integer, got {query_size!r}")
        if budget is not None and budget < 1:
            raise ValueError(f"budget: expected a positive integer or None, got {budget!r}")
        if unit not in _UNITS:
            raise ValueError(f"unit: expected one of {_UNITS}, got {unit!r}")
        if epochs_per_round < 1:
            raise ValueError(f"epochs_per_round: expected at least 1, got {epochs_per_round}")
        if pool_subset is not None and (pool_subset <= 0 or (isinstance(pool_subset, float) and pool_subset > 1)):
            raise ValueError(f"pool_subset: expected a count > 0 or a fraction in (0, 1], got {pool_subset}")
        self.strategy = get_strategy(strategy, **(strategy_kwargs or {}))
        self.query_size, self.budget, self.unit = query_size, budget, unit
        self.epochs_per_round, self.min_steps_per_round = epochs_per_round, min_steps_per_round
        self.oracle = oracle if oracle is not None else SimulatedOracle()
        self.reset_weights, self.pool_subset = reset_weights, pool_subset
        self.monitor, self.curve_path = monitor, curve_path
        self.sort_pool_by_cost, self.seed = sort_pool_by_cost, seed
        # state (saved in checkpoints)
        self.round = 0
        self.epochs_in_round = 0
        self.steps_at_round_start = 0
        self.curve: list[dict[str, Any]] = []
        self.waiting = False
        self.finished = False
        self.initial_weights: dict[str, torch.Tensor] | None = None
        self.last_query: list[int] = []
        self._query_seconds = 0.0

    # ------------------------------------------------------------------------------------ helpers
    @property
    def state_key(self) -> str:
        return self._generate_state_key(strategy=type(self.strategy).__name__, unit=self.unit)

    @staticmethod
    def _datamodule(trainer: pl.Trainer) -> ActiveLearningDataModule:
        dm = getattr(trainer, "datamodule", None)
        if not isinstance(dm, ActiveLearningDataModule):
            raise TypeError(f"datamodule: ActiveLearning needs an ActiveLearningDataModule, got {type(dm).__name__}")
        return dm

    def _labelled(self, dm: ActiveLearningDataModule) -> int:
        return dm.labelled_cost if self.unit == "tokens" else dm.n_labelled

    def _pool_size(self, dm: ActiveLearningDataModule) -> int:
        return int(dm.costs(dm.pool_indices).sum()) if self.unit == "tokens" else dm.n_pool

    # -------------------------------------------------------------------------------------- hooks
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self._datamodule(trainer)
        if not getattr(trainer, "reload_dataloaders_every_n_epochs", 0):
            trainer.reload_dataloaders_every_n_epochs = 1  # type: ignore[attr-defined]  # the labelled set grows
        if (
            self.strategy.stochastic
            and not callable(getattr(pl_module, "mc_logits", None))
            and find_mc_split(pl_module) is None
            and not any("Dropout" in type(m).__name__ for m in pl_module.modules())
        ):
            raise ValueError(
                f"strategy: {type(self.strategy).__name__} samples MC dropout, but "
                f"{type(pl_module).__name__} has no dropout layer; add one or pick another strategy"
            )

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        dm = self._datamodule(trainer)
        if dm.n_labelled == 0:
            raise ValueError("datamodule: no labelled examples to start from; set initial_labelled=...")
        if self.reset_weights and self.initial_weights is None:
            self.initial_weights = copy.deepcopy({k: v.detach().cpu() for k, v in pl_module.state_dict().items()})
        if not self.finished and not self.waiting and self.round == 0 and self.epochs_in_round == 0:
            pool = self._pool_size(dm)
            if pool == 0:
                raise ValueError("datamodule: the pool is empty; there is nothing to query")
            if self.query_size > pool:
                raise ValueError(f"query_size: {self.query_size} {self.unit} per round but the pool holds only {pool}")

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.finished:
            trainer.should_stop = True
            return
        if self.waiting:  # resumed while an annotator had a batch
            dm = self._datamodule(trainer)
            # hand the same batch to the (new) oracle object: a file oracle finds its file and learns the label
            # names from the DataModule, an in-memory one gets its batch back
            pending = self.oracle.pending_indices(self.round + 1)
            self.oracle.query(self.round + 1, pending if pending is not None else self.last_query, dm)
            if not self._collect(trainer, pl_module, dm, self.round + 1):
                raise RuntimeError(
                    f"the answers of round {self.round + 1} are incomplete; finish labelling "
                    f"(trinity label ...) and resume with ckpt_path=last"
                )

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.finished or self.waiting:
            return
        self.epochs_in_round += 1
        steps = trainer.global_step - self.steps_at_round_start
        if self.epochs_in_round < self.epochs_per_round or steps < self.min_steps_per_round:
            return
        dm = self._datamodule(trainer)
        self._record(trainer, pl_module, dm)
        labelled = self._labelled(dm)
        if (self.budget is not None and labelled >= self.budget) or dm.n_pool == 0:
            self.finished = True
            trainer.should_stop = True
            rank_zero_info(f"active learning: budget reached ({labelled} {self.unit} labelled); stopping")
            return
        self._query_round(trainer, pl_module, dm)

    # ------------------------------------------------------------------------------------- rounds
    def _record(self, trainer: pl.Trainer, pl_module: pl.LightningModule, dm: ActiveLearningDataModule) -> None:
        metrics = {
            k: float(v)
            for k, v in trainer.callback_metrics.items()
            if (k == self.monitor if self.monitor else k.startswith("val_")) and torch.as_tensor(v).numel() == 1
        }
        if self.monitor and self.monitor not in metrics:
            rank_zero_warn(f"monitor: {self.monitor!r} was not logged; available: {sorted(trainer.callback_metrics)}")
        total = int(dm.costs().sum())
        row: dict[str, Any] = {
            "round": self.round,
            "epoch": trainer.current_epoch,
            "step": trainer.global_step,
            "labelled": dm.n_labelled,
            "labelled_tokens": dm.labelled_cost,
            "fraction": round(dm.labelled_cost / max(total, 1), 6),
            "query_seconds": round(self._query_seconds, 4),
            **metrics,
        }
        self.curve.append(row)
        for name in ("labelled", "labelled_tokens", "round"):
            pl_module.log(f"active/{name}", float(row[name]), sync_dist=False)
        # every rank resolves the path: trainer.log_dir is a collective (a broadcast) under DDP
        path = (
            Path(self.curve_path)
            if self.curve_path
            else Path(trainer.log_dir or trainer.default_root_dir) / "active_learning_curve.csv"
        )
        if trainer.is_global_zero:
            self._write_curve(path)

    def _write_curve(self, path: Path) -> None:
        fields: list[str] = []
        for row in self.curve:
            fields += [k for k in row if k not in fields]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=fields)
        writer.writeheader()
        writer.writerows(self.curve)
        atomic_write_text(path, buffer.getvalue())

    def _candidates(self, dm: ActiveLearningDataModule) -> list[int]:
        pool = np.asarray(dm.pool_indices, dtype=np.int64)
        if self.pool_subset is not None:
            size = self.pool_subset if isinstance(self.pool_subset, int) else math.ceil(self.pool_subset * len(pool))
            if size < len(pool):
                rng = np.random.default_rng([self.seed, self.round, 17])
                pool = np.sort(rng.choice(pool, size=size, replace=False))
        if self.sort_pool_by_cost:
            pool = pool[np.argsort(dm.costs(pool.tolist()), kind="stable")]
        return pool.tolist()

    def select(self, trainer: pl.Trainer, pl_module: pl.LightningModule, dm: ActiveLearningDataModule) -> Selection:
        """Score the pool (this rank's share under DDP) and return the batch to query next."""
        remaining = self.query_size
        if self.budget is not None:
            remaining = min(remaining, self.budget - self._labelled(dm))
        candidates = self._candidates(dm)
        k = min(max(remaining, 1), len(candidates))  # in tokens: every sentence costs at least one
        rank, world = trainer.global_rank, trainer.world_size
        shard = candidates[rank::world]
        self.strategy.begin(self.seed * 1_000_003 + self.round)
        local = (
            score_pool(
                pl_module,
                dm.pool_dataloader(shard),
                self.strategy,
                k,
                shard,
                to_device=lambda b: trainer.strategy.batch_to_device(b),
                forward_context=trainer.precision_plugin.forward_context,
            )
            if shard
            else Selection([], [])
        )
        if world > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            parts: list[Any] = [None] * world
            torch.distributed.all_gather_object(parts, local)
            local = merge_selections(parts, k)
        if self.unit == "tokens":
            local = select_by_budget(local, dm.costs(local.indices).tolist(), max(remaining, 1))
        return local

    def _query_round(self, trainer: pl.Trainer, pl_module: pl.LightningModule, dm: ActiveLearningDataModule) -> None:
        started = time.perf_counter()
        next_round = self.round + 1
        pending = self.oracle.pending_indices(next_round)
        indices = pending if pending is not None else self.select(trainer, pl_module, dm).indices
        self.last_query = list(indices)
        self.oracle.query(next_round, indices, dm)
        self._query_seconds = time.perf_counter() - started
        if not self._collect(trainer, pl_module, dm, next_round):
            self.waiting = True
            trainer.should_stop = True
            rank_zero_info(
                f"active learning: waiting for the answers of round {next_round}; label them and "
                "resume with ckpt_path=last"
            )

    def _collect(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, dm: ActiveLearningDataModule, next_round: int
    ) -> bool:
        started = time.perf_counter()
        answers = self.oracle.collect(next_round)
        if answers is None:
            return False
        dm.label(answers.indices, answers.labels)
        self.round = next_round
        self.waiting = False
        self.epochs_in_round = 0
        self.steps_at_round_start = trainer.global_step
        if self.reset_weights and self.initial_weights is not None:
            pl_module.load_state_dict(self.initial_weights)
            for optimizer in trainer.optimizers:
                optimizer.state = defaultdict(dict)
        self._query_seconds += time.perf_counter() - started
        return True

    # -------------------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "epochs_in_round": self.epochs_in_round,
            "steps_at_round_start": self.steps_at_round_start,
            "curve": copy.deepcopy(self.curve),
            "waiting": self.waiting,
            "finished": self.finished,
            "last_query": list(self.last_query),
            "initial_weights": self.initial_weights,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.round = int(state_dict["round"])
        self.epochs_in_round = int(state_dict["epochs_in_round"])
        self.steps_at_round_start = int(state_dict["steps_at_round_start"])
        self.curve = list(state_dict["curve"])
        self.waiting = bool(state_dict["waiting"])
        self.finished = bool(state_dict["finished"])
        self.last_query = list(state_dict["last_query"])
        self.initial_weights = state_dict.get("initial_weights")
