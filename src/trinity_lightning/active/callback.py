"""The active-learning campaign as one Lightning callback: all rounds run inside a single ``trainer.fit``.

Why a callback and not a loop around ``trainer.fit``: Lightning 2 removed loop customization, and an
outer loop would need its own checkpointing of the model, the optimizer, the pool and the round. Inside
``fit`` everything is already in the Lightning checkpoint (model, optimizer, the DataModule's
``state_dict`` with the labelled set, this callback's ``state_dict`` with the round, its phase, the learning
curve and every rank's random states), so ``trainer.fit(..., ckpt_path="last")`` resumes a killed campaign
exactly, and a user adds active learning to an existing LightningModule with one callback and one DataModule.

It is a policy on the round engine (:mod:`trinity_lightning.rounds`). Each round: train ``epochs_per_round``
epochs (at least ``min_steps_per_round`` steps) on the labelled set, record the validation metrics, score
the pool with :func:`~trinity_lightning.rounds.predict_pool` (eval mode, inference mode, the precision
plugin, each rank its shard under DDP, a streaming global top-k), hand the best examples to the oracle (rank 0
writes the query file after a barrier), grow the labelled set, optionally reset the weights, and go on until
the budget or a stopping criterion says stop.
"""

from __future__ import annotations

import copy
import math
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from trinity_lightning.active.cold_start import ColdStart, get_cold_start
from trinity_lightning.active.datamodule import ActiveLearningDataModule
from trinity_lightning.active.oracles import Oracle, SimulatedOracle
from trinity_lightning.active.scoring import Selection, check_outputs, select_by_budget, select_pool
from trinity_lightning.active.strategies import QueryStrategy, get_heuristic
from trinity_lightning.rounds.curve import log_round, round_metrics, write_curve
from trinity_lightning.rounds.engine import RoundCallback
from trinity_lightning.rounds.inference import barrier, broadcast
from trinity_lightning.rounds.oracle import Answers
from trinity_lightning.rounds.schedule import (
    AtLeast,
    Schedule,
    StoppingCriterion,
    check_budget,
    ensure_reload_every_epoch,
    require_datamodule,
    resolve_budget,
    stop_reason,
)

__all__ = ["ActiveLearning"]

_UNITS = ("examples", "tokens")


class ActiveLearning(RoundCallback):
    """Run an active-learning campaign inside ``trainer.fit`` (see the module docstring).

    The trainer's DataModule must be an :class:`ActiveLearningDataModule`. Set ``max_epochs: -1`` (the
    callback stops the run when the budget is spent); the train loader is rebuilt every epoch (the callback
    sets ``reload_dataloaders_every_n_epochs=1`` when unset and refuses another value).

    Metrics: the curve and the loggers get ``active/labelled``, ``active/labelled_tokens`` and
    ``active/round``; the curve also copies the module's validation metrics: ``monitor`` when given (a name
    or a list; refused at the first round, with the logged names, when the module does not log it), else
    every metric named ``val_*``, ``val/*``, ``valid_*`` or ``validation_*``.

    Args:
        strategy: the query heuristic: a registered name (``random``, ``least_confidence``, ``margin``,
            ``entropy``, ``mnlp``, ``bald``, ``vote_entropy``, ``kl_disagreement``, ``egl``, ``stochastic``, and
            the batch-aware ``batchbald``, ``epig``, ``coreset``, ``badge``, ``kmeans``,
            ``information_density``) or a :class:`QueryStrategy`. The round engine computes only the outputs it
            ``requires`` (logits, MC samples, embeddings, the labelled set's embeddings).
        query_size: examples (or tokens, see ``unit``) added per round; a float in ``(0, 1]`` is a fraction
            of the pool's total cost.
        budget: stop once this many examples (or tokens) are labelled and trained on; a float in ``(0, 1]``
            is a fraction of the pool's total cost; ``None``: until the pool is empty.
        unit: ``"examples"`` or ``"tokens"`` (cost from the DataModule's ``cost_fn``, e.g. words).
        epochs_per_round: training epochs between two queries.
        min_steps_per_round: keep training a round until at least this many optimizer steps ran.
        oracle: who labels; default :class:`SimulatedOracle` (the dataset's own labels).
        reset_weights: re-initialize the model (and clear the optimizer state) after each query, instead of
            continuing to train it (warm start, the default, as in Shen et al. 2018).
        pool_subset: score only a random subset of the pool each round: a count, or a fraction in ``(0, 1]``.
        monitor: the metric(s) recorded per round (default: every validation metric, see above).
        curve_path: CSV learning curve, rewritten atomically each round (default:
            ``<log_dir>/active_learning_curve.csv``).
        strategy_kwargs: arguments of the heuristic when given by name (e.g. ``{"n_samples": 10}``).
        sort_pool_by_cost: score the pool in order of cost (sentence length) so batches pad little.
        seed: seed of random heuristics and pool subsets.
        stopping: extra stopping criteria, each ``should_stop(curve) -> bool`` (e.g.
            :class:`~trinity_lightning.rounds.MetricPlateau`); the budget is always one. Criteria with a
            ``measure(trainer, module, datamodule)`` hook (:mod:`trinity_lightning.rounds.stopping`) add their
            ``stop/*`` columns to each round's row; their ``state_dict`` is kept in the checkpoint.
        cold_start: how the first batch is chosen when nothing is labelled yet (a
            :class:`~trinity_lightning.active.cold_start.ColdStart` or ``random``/``balanced``/``kmeans``;
            default: the untrained model's ranking).

    Example:
        >>> al = ActiveLearning("bald", query_size=32, budget=256, strategy_kwargs={"n_samples": 5})
        >>> al.strategy
        BALD(n_samples=5, mode='mutual_information', reduction='mean')
    """

    def __init__(
        self,
        strategy: str | QueryStrategy = "entropy",
        query_size: int | float = 100,
        budget: int | float | None = None,
        unit: str = "examples",
        epochs_per_round: int = 1,
        min_steps_per_round: int = 0,
        oracle: Oracle | None = None,
        reset_weights: bool = False,
        pool_subset: int | float | None = None,
        monitor: str | list[str] | None = None,
        curve_path: str | None = None,
        strategy_kwargs: dict[str, Any] | None = None,
        sort_pool_by_cost: bool = True,
        seed: int = 0,
        stopping: Sequence[StoppingCriterion] | None = None,
        cold_start: str | ColdStart | None = None,
    ) -> None:
        super().__init__()
        check_budget(query_size, "query_size", allow_none=False)
        check_budget(budget, "budget")
        if unit not in _UNITS:
            raise ValueError(f"unit: expected one of {_UNITS}, got {unit!r}")
        if pool_subset is not None and (pool_subset <= 0 or (isinstance(pool_subset, float) and pool_subset > 1)):
            raise ValueError(f"pool_subset: expected a count > 0 or a fraction in (0, 1], got {pool_subset}")
        self.schedule = Schedule(epochs_per_round, min_steps_per_round)
        self.strategy = get_heuristic(strategy, "strategy", **(strategy_kwargs or {}))
        self.query_size, self.budget, self.unit = query_size, budget, unit
        self.epochs_per_round, self.min_steps_per_round = epochs_per_round, min_steps_per_round
        self.oracle = oracle if oracle is not None else SimulatedOracle()
        self.reset_weights, self.pool_subset = reset_weights, pool_subset
        self.monitor, self.curve_path = monitor, curve_path
        self.sort_pool_by_cost, self.seed = sort_pool_by_cost, seed
        self.stopping = list(stopping or [])
        self.cold_start = get_cold_start(cold_start) if cold_start is not None else None
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
        self._query_units: int | None = None
        self._budget_units: int | None = None

    # ------------------------------------------------------------------------------------ helpers
    @property
    def heuristic(self) -> QueryStrategy:
        """The query heuristic (``strategy`` is its older name)."""
        return self.strategy

    @property
    def phase(self) -> str:
        """``"train"``, ``"waiting"`` (for answers) or ``"finished"``."""
        return "finished" if self.finished else "waiting" if self.waiting else "train"

    @property
    def state_key(self) -> str:
        return self._generate_state_key(strategy=type(self.strategy).__name__, unit=self.unit)

    @staticmethod
    def _datamodule(trainer: pl.Trainer) -> ActiveLearningDataModule:
        dm: ActiveLearningDataModule = require_datamodule(trainer, ActiveLearningDataModule, "ActiveLearning")
        return dm

    def _labelled(self, dm: ActiveLearningDataModule) -> int:
        return dm.labelled_cost if self.unit == "tokens" else dm.n_labelled

    def _pool_size(self, dm: ActiveLearningDataModule) -> int:
        return int(dm.costs(dm.pool_indices).sum()) if self.unit == "tokens" else dm.n_pool

    def _total(self, dm: ActiveLearningDataModule) -> int:
        return int(dm.costs().sum()) if self.unit == "tokens" else len(dm.labelled_mask)

    # -------------------------------------------------------------------------------------- hooks
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self._datamodule(trainer)
        ensure_reload_every_epoch(trainer, "ActiveLearning")
        check_outputs(pl_module, self.strategy)  # embeddings hook, dropout: refused before any training

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        dm = self._datamodule(trainer)
        total = self._total(dm)
        self._query_units = resolve_budget(self.query_size, total)
        self._budget_units = resolve_budget(self.budget, total)
        if self.reset_weights and self.initial_weights is None:
            self.initial_weights = copy.deepcopy({k: v.detach().cpu() for k, v in pl_module.state_dict().items()})
        if not self.finished and not self.waiting and self.round == 0 and self.epochs_in_round == 0:
            pool = self._pool_size(dm)
            if pool == 0:
                raise ValueError("datamodule: the pool is empty; there is nothing to query")
            assert self._query_units is not None
            if self._query_units > pool:
                raise ValueError(
                    f"query_size: {self._query_units} {self.unit} per round but the pool holds only {pool}"
                )
        if dm.n_labelled == 0 and not self.waiting and not self.finished and self.round == 0:
            self._cold_start(trainer, pl_module, dm)

    def _cold_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, dm: ActiveLearningDataModule) -> None:
        """Nothing labelled yet (new text labelled from zero): the first round is asked before any training.

        The untrained model ranks the pool (as good as random for uncertainty heuristics, and the same batch
        again when the run is repeated with the same seed). With a person answering, the fit ends at once
        (there is nothing to train on); label the round and run the same command again: the oracle hands out
        the same batch and reads its answers.
        """
        rank_zero_info("active learning: nothing is labelled yet; asking the first round before training")
        initial = None if self.cold_start is None else self.cold_start.select(dm, self._query_units, pl_module, trainer)
        self._query_round(trainer, pl_module, dm, initial)
        dm.awaiting_first_answers = self.waiting
        if self.waiting:
            rank_zero_info(
                "active learning: label the first round (trinity label ...) and run the same command again "
                "(no checkpoint exists yet: there was nothing to train on)"
            )

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.restore_rng_states(trainer)
        if self.finished:
            trainer.should_stop = True
            return
        if self.waiting:  # resumed while an annotator had a batch: the same batch goes to the (new) oracle
            dm = self._datamodule(trainer)
            pending = self.oracle.pending_indices(self.round + 1)
            self._ask(trainer, dm, self.round + 1, pending if pending is not None else self.last_query)
            if not self._collect(trainer, pl_module, dm, self.round + 1):
                trainer.should_stop = True
                rank_zero_info(
                    f"active learning: the answers of round {self.round + 1} are still incomplete; finish "
                    "labelling (trinity label ...) and resume with ckpt_path=last"
                )

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.finished or self.waiting:
            return
        self.epochs_in_round += 1
        if not self.schedule.due(self.epochs_in_round, trainer.global_step - self.steps_at_round_start):
            return
        dm = self._datamodule(trainer)
        self._record(trainer, pl_module, dm)
        labelled = self._labelled(dm)
        criteria: list[StoppingCriterion] = list(self.stopping)
        if self._budget_units is not None:
            criteria.insert(0, AtLeast("labelled_tokens" if self.unit == "tokens" else "labelled", self._budget_units))
        reason = "the pool is empty" if dm.n_pool == 0 else stop_reason(criteria, self.curve)
        if reason is not None:
            self.finished = True
            trainer.should_stop = True
            rank_zero_info(f"active learning: stopping ({reason}; {labelled} {self.unit} labelled)")
            return
        self._query_round(trainer, pl_module, dm)

    # ------------------------------------------------------------------------------------- rounds
    def _record(self, trainer: pl.Trainer, pl_module: pl.LightningModule, dm: ActiveLearningDataModule) -> None:
        metrics = round_metrics(trainer, self.monitor, "ActiveLearning", check=True)
        if self.monitor is None and not metrics and not self.curve:
            rank_zero_warn(
                "monitor: no validation metric (val_*, val/*, valid_*) was logged, so the learning curve has no "
                f"metric column; logged: {sorted(trainer.callback_metrics)}. Set ActiveLearning(monitor=...)"
            )
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
        for criterion in self.stopping:  # criteria that measure the model add their stop/* columns
            row.update(getattr(criterion, "measure", lambda *_: {})(trainer, pl_module, dm))
        self.curve.append(row)
        log_round(trainer, pl_module, "active", {k: row[k] for k in ("labelled", "labelled_tokens", "round")})
        # every rank resolves the path: trainer.log_dir is a collective (a broadcast) under DDP
        path = self._curve_file(trainer)
        if trainer.is_global_zero:
            write_curve(path, self.curve)

    def _curve_file(self, trainer: pl.Trainer) -> Path:
        if self.curve_path:
            return Path(self.curve_path)
        return Path(trainer.log_dir or trainer.default_root_dir) / "active_learning_curve.csv"

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
        """Score the pool (each rank its shard under DDP) and return the batch to query next (same on every rank)."""
        if self._query_units is None:
            total = self._total(dm)
            self._query_units, self._budget_units = (
                resolve_budget(self.query_size, total),
                resolve_budget(self.budget, total),
            )
        remaining = int(self._query_units or 1)
        if self._budget_units is not None:
            remaining = min(remaining, self._budget_units - self._labelled(dm))
        candidates = self._candidates(dm)
        k = min(max(remaining, 1), len(candidates))  # in tokens: every sentence costs at least one
        self.strategy.begin(self.seed * 1_000_003 + self.round)
        chosen = select_pool(
            pl_module,
            candidates,
            dm.pool_dataloader,
            self.strategy,
            k,
            labelled_indices=dm.labelled_indices,
            trainer=trainer,
        )
        if self.unit == "tokens":
            chosen = select_by_budget(chosen, dm.costs(chosen.indices).tolist(), max(remaining, 1))
        return chosen

    def _ask(self, trainer: pl.Trainer, dm: ActiveLearningDataModule, round_: int, indices: Sequence[int]) -> None:
        """Hand the batch to the oracle: rank 0 first (it writes any file), then, after a barrier, the others."""
        items = [int(i) for i in indices]  # the oracle renders them from the DataModule (tokens, features)
        if trainer.is_global_zero:
            self.oracle.query(round_, items, dm)
        barrier(trainer, "active-query")
        if not trainer.is_global_zero:
            self.oracle.query(round_, items, dm)

    def _query_round(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, dm: ActiveLearningDataModule, initial: Any = None
    ) -> None:
        started = time.perf_counter()
        next_round = self.round + 1
        chosen = initial if initial is not None else self.select(trainer, pl_module, dm).indices  # replay: same draws
        pending = self.oracle.pending_indices(next_round)  # handed out before a kill: the person may be halfway
        if pending is not None and sorted(pending) != sorted(chosen):
            rank_zero_warn(
                f"active learning: round {next_round} was already asked ({len(pending)} examples) and the replayed "
                "scoring chose others; keeping the batch already handed out"
            )
        indices = pending if pending is not None else chosen
        self.last_query = list(indices)
        self._ask(trainer, dm, next_round, indices)
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
        local = self.oracle.collect(next_round)  # every rank: in-memory oracles forget the batch they hand back
        answers: Answers | None = broadcast(local, trainer)  # rank 0's view decides (a human may be mid-file)
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
            "phase": self.phase,
            "epochs_in_round": self.epochs_in_round,
            "steps_at_round_start": self.steps_at_round_start,
            "curve": copy.deepcopy(self.curve),
            "waiting": self.waiting,
            "finished": self.finished,
            "last_query": list(self.last_query),
            "initial_weights": self.initial_weights,
            "stopping": [getattr(c, "state_dict", dict)() for c in self.stopping],
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
        for criterion, state in zip(self.stopping, state_dict.get("stopping", [])):
            getattr(criterion, "load_state_dict", lambda _: None)(state)
        self.load_rng(state_dict)
