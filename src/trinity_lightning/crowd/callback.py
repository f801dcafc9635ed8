"""The CrowdEM callback: train any classifier on posterior soft labels, re-estimating the workers by MBEM."""

from __future__ import annotations

import warnings
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_warn

from trinity_lightning.crowd.dawid_skene import DawidSkene
from trinity_lightning.crowd.heldout import (
    aggregate_log_likelihood,
    heldout_log_likelihood,
    worker_marginal_log_likelihood,
)
from trinity_lightning.crowd.majority_vote import MajorityVote
from trinity_lightning.crowd.mbem import MBEM, PRIORS
from trinity_lightning.crowd.quality import LabelQuality, label_quality
from trinity_lightning.crowd.table import AnnotationTable
from trinity_lightning.rounds.curve import log_round, write_curve
from trinity_lightning.rounds.engine import RoundCallback
from trinity_lightning.rounds.inference import predict_pool, subset_loader
from trinity_lightning.rounds.schedule import require_datamodule


def soft_target_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``-sum_k q(k) log softmax(logits)_k`` (``targets`` are class probabilities).

    Identical to ``F.cross_entropy(logits, targets)`` with probability targets; spelled out so a
    custom ``training_step`` can weight it.

    Example:
        >>> logits = torch.tensor([[2.0, 0.0]]); q = torch.tensor([[0.75, 0.25]])
        >>> bool(torch.isclose(soft_target_cross_entropy(logits, q), torch.nn.functional.cross_entropy(logits, q)))
        True
    """
    return -(targets * torch.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


class CrowdEM(RoundCallback):
    """Model-bootstrapped EM around any classifier's training (Khetan, Lipton & Anandkumar, ICLR 2018).

    Use it with a :class:`~trinity_lightning.crowd.datamodule.CrowdDataModule`: training batches are
    ``(x, y)`` with ``y`` a class id drawn from each item's posterior every epoch (so an ordinary
    ``training_step`` with ``F.cross_entropy(logits, y)`` and torchmetrics on ``y`` works unchanged and
    learns the soft labels in expectation), or the posterior itself with ``soft_targets=True`` on the
    DataModule. Every ``epochs_per_round`` epochs the callback

    1. predicts the annotated items with the model (``forward`` must return logits),
    2. re-estimates every worker's confusion matrix and the class prior from those predictions and
       recomputes the posteriors (:class:`~trinity_lightning.crowd.mbem.MBEM`),
    3. checks, without gold labels, that the model explains the annotations better than the
       annotation-only aggregate (``guard``, below); if not, it keeps the aggregate's posteriors and warns,
    4. hands the posteriors to the DataModule (:meth:`CrowdDataModule.set_targets`).

    The guard: the mean held-out log-likelihood of the annotations (each answer scored from the worker
    confusions and item posteriors estimated on the other answers, 5 folds; see
    :mod:`trinity_lightning.crowd.heldout`) with the model's predictions as the guess must beat both the
    annotation-only aggregate (the DataModule's ``init``, refitted per fold) and each worker's own label
    frequencies (what a model that learned nothing scores). A model that did not learn (say, a wrong
    input scale) otherwise turns MBEM into a collapse towards its favourite classes.

    It logs ``crowd/round``, ``crowd/worker_accuracy_mean``/``_min`` (estimated), ``crowd/label_change``
    (share of items whose label moved), ``crowd/heldout_ll_model`` / ``crowd/heldout_ll_baseline`` and
    ``crowd/bootstrap_used`` (1 when the model's posteriors were taken, 0 when the guard kept the aggregate)
    and, when the DataModule knows the truth (simulations),
    ``crowd/label_acc`` (and, at the first round, ``crowd/label_acc_initial``: the accuracy of the labels it
    started from, e.g. majority vote). Its state (round, posteriors, confusions, prior, history) is saved in the
    checkpoint and restored on resume, so a resumed run continues exactly.

    Args:
        epochs_per_round: epochs of training between two MBEM rounds.
        max_rounds: stop re-estimating after this many rounds (``None``: every ``epochs_per_round``).
        hard: estimate the workers from the model's hard predictions (the official code) or its probabilities.
        prior: the prior of each item's truth in the posterior: ``"model"`` (the model's prediction for
            that item), ``"class"`` (the class frequencies, the paper) or ``"none"`` (uniform, the official
            code); see :class:`MBEM`.
        smoothing: Laplace pseudo-count of the confusion estimates.
        n_iter: E-steps per round (1 = MBEM; more continue with Dawid-Skene EM from the model's guess);
            crowd-kit's name. ``em_iter`` is its deprecated alias (one more release).
        guard: refuse a round whose model explains the annotations no better than the gold-free baselines
            (see above); ``False`` always takes the model's posteriors.
        guard_folds: folds of the held-out likelihood.
        curve_path: also write the per-round numbers (the ``history``) as a CSV, atomically, after every round.
        quality_path: also write CROWDLAB's quality tables (:meth:`label_quality`) after every round, atomically:
            the items to this CSV, the annotators beside it (``quality.csv`` -> ``quality.annotators.csv``).

    Metrics it reads: none of the module's (it needs only ``forward`` returning logits); its own are logged as
    ``crowd/<name>`` like every round callback's (``active/...``, ``alpf/...``). It is a policy on the round
    engine (:mod:`trinity_lightning.rounds`): predictions through ``predict_pool`` (precision plugin, DDP
    shards), the random states of every rank in the checkpoint, and the same
    :class:`~trinity_lightning.rounds.WrongDataModuleError` as the other callbacks.

    Attributes:
        round: rounds done.
        posteriors: the latest ``(num_items, K)`` posteriors (``None`` before the first round).
        confusions: the latest ``(num_workers, K, K)`` worker confusions.
        history: one dict of plain numbers per round (also in the checkpoint).
        predictions: the model's ``(num_items, K)`` probabilities of the latest round (also in the checkpoint).

    Example:
        >>> cb = CrowdEM(epochs_per_round=2)
        >>> cb.state_key
        "CrowdEM{'epochs_per_round': 2, 'prior': 'model', 'smoothing': 0.1}"
    """

    def __init__(
        self,
        epochs_per_round: int = 5,
        max_rounds: int | None = None,
        hard: bool = True,
        prior: Literal["model", "class", "none"] = "model",
        smoothing: float = 0.1,
        n_iter: int = 1,
        guard: bool = True,
        guard_folds: int = 5,
        em_iter: int | None = None,
        curve_path: str | None = None,
        quality_path: str | None = None,
    ) -> None:
        super().__init__()
        if em_iter is not None:
            warnings.warn("CrowdEM(em_iter=...) is deprecated; use n_iter=...", DeprecationWarning, stacklevel=2)
            n_iter = em_iter
        if n_iter < 1:
            raise ValueError(f"n_iter: expected a positive integer, got {n_iter}")
        if epochs_per_round < 1:
            raise ValueError(f"epochs_per_round: expected a positive integer, got {epochs_per_round}")
        if max_rounds is not None and max_rounds < 0:
            raise ValueError(f"max_rounds: expected a non-negative integer or None, got {max_rounds}")
        self.epochs_per_round, self.max_rounds = epochs_per_round, max_rounds
        if prior not in PRIORS:
            raise ValueError(f"prior: expected one of {', '.join(map(repr, PRIORS))}, got {prior!r}")
        if guard_folds < 2:
            raise ValueError(f"guard_folds: expected at least 2, got {guard_folds}")
        self.hard, self.prior, self.smoothing, self.n_iter = hard, prior, smoothing, n_iter
        self.guard, self.guard_folds = guard, guard_folds
        self.curve_path, self.quality_path = curve_path, quality_path
        self.predictions: torch.Tensor | None = None
        self.table: AnnotationTable | None = None  # the annotations of the latest round
        self.baseline_ll: float | None = None  # the gold-free baseline of the guard (annotations only: fixed)
        self.round = 0
        self.posteriors: torch.Tensor | None = None
        self.confusions: torch.Tensor | None = None
        self.priors: torch.Tensor | None = None
        self.history: list[dict[str, float]] = []

    @property
    def state_key(self) -> str:
        return self._generate_state_key(
            epochs_per_round=self.epochs_per_round, prior=self.prior, smoothing=self.smoothing
        )

    # ------------------------------------------------------------------ hooks
    @staticmethod
    def _datamodule(trainer: pl.Trainer) -> Any:
        return require_datamodule(
            trainer,
            ("annotation_table", "set_targets", "annotated_dataloader"),
            "CrowdEM",
            needs="a CrowdDataModule (or a DataModule with annotation_table, set_targets() and annotated_dataloader())",
        )

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._datamodule(trainer)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.restore_rng_states(trainer)
        if self.posteriors is not None:  # resumed: the restored posteriors replace the initial targets
            self._datamodule(trainer).set_targets(self.posteriors)
        if self.predictions is not None:
            self.table = self._datamodule(trainer).annotation_table

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # the labels drawn for this epoch; the sampler does it too, but not under DDP (Lightning wraps it)
        set_epoch = getattr(self._datamodule(trainer), "set_epoch", None)
        if callable(set_epoch):
            set_epoch(trainer.current_epoch)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.epochs_per_round:
            return
        if self.max_rounds is not None and self.round >= self.max_rounds:
            return
        self.run_round(trainer, pl_module)

    # ------------------------------------------------------------------ the round
    def predict(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> torch.Tensor:
        """Softmax of the model on the annotated items, ``(num_items, K)`` in table order, on CPU.

        Runs through :func:`~trinity_lightning.rounds.predict_pool`: the trainer's device transfer and precision
        plugin, eval mode restored afterwards, each rank its shard of the items under DDP (gathered, so every rank
        re-estimates the workers from the same predictions).
        """
        loader = self._datamodule(trainer).annotated_dataloader()
        items = list(range(len(loader.dataset)))
        out: torch.Tensor = predict_pool(pl_module, items, subset_loader(loader), trainer=trainer)
        return out

    def run_round(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, float]:
        """One MBEM round: predict, re-estimate the workers, replace the targets; returns the logged numbers."""
        dm = self._datamodule(trainer)
        table = dm.annotation_table
        predictions = self.predict(trainer, pl_module)
        self.predictions, self.table = predictions.detach().to("cpu", torch.float32), table
        previous = dm.targets.argmax(dim=1) if getattr(dm, "targets", None) is not None else None
        mbem = MBEM(n_iter=self.n_iter, hard=self.hard, prior=self.prior, smoothing=self.smoothing)
        mbem.fit(table, predictions)
        posteriors = mbem.probas_.detach().to("cpu", torch.float32)
        guard: dict[str, float] = {}
        if self.guard:
            guard = self._guard(table, predictions, getattr(dm, "aggregator", None))
            if not guard["bootstrap_used"]:
                posteriors = self._baseline_posteriors(dm, table)
                rank_zero_warn(
                    f"CrowdEM round {self.round + 1}: the model explains the annotations no better than the "
                    f"annotation-only baseline (held-out log-likelihood {guard['heldout_ll_model']:.4f} vs "
                    f"{guard['heldout_ll_baseline']:.4f} per annotation), so its posteriors were not used and "
                    "the labels stay the aggregate's. Is the model learning (input scale, learning rate)?",
                    category=UserWarning,
                )
        dm.set_targets(posteriors)
        self.round += 1
        self.posteriors, self.priors = posteriors, mbem.priors_.detach().cpu().float()
        self.confusions = mbem.errors_.transpose(1, 2).detach().cpu().float()
        accuracy = mbem.worker_accuracy_.cpu()
        record = {
            "round": float(self.round),
            "epoch": float(trainer.current_epoch),
            "worker_accuracy_mean": float(accuracy.mean()),
            "worker_accuracy_min": float(accuracy.min()),
            "label_change": float((posteriors.argmax(1) != previous).float().mean()) if previous is not None else 0.0,
            **guard,
        }
        gold = getattr(dm, "gold", None)
        if gold is not None:
            record["label_acc"] = float((posteriors.argmax(1) == gold).float().mean())
            if previous is not None and self.round == 1:  # what the first round started from (e.g. majority vote)
                record["label_acc_initial"] = float((previous == gold).float().mean())
        self.history.append(record)
        log_round(trainer, pl_module, "crowd", {k: v for k, v in record.items() if k != "epoch"})
        if self.curve_path is not None and trainer.is_global_zero:
            write_curve(self.curve_path, self.history)
        if self.quality_path is not None and trainer.is_global_zero:
            self.label_quality().save(self.quality_path)
        return record

    def label_quality(self, annotations: Any = None, **kwargs: Any) -> LabelQuality:
        """CROWDLAB's quality tables (:func:`~trinity_lightning.crowd.quality.label_quality`) of the annotations,
        with the model's predictions of the latest round as ``pred_probs``: each item's consensus label and
        ``consensus_quality_score``, each annotator's ``annotator_quality``, ``agreement_with_consensus`` and
        ``worst_class``, as DataFrames indexed by the item and annotator ids of the annotation table.

        The model was trained on these items, so its predictions are in-sample (CROWDLAB prefers out-of-sample
        ones): its weight against the annotators may come out higher than a held-out model's would.

        Args:
            annotations: the annotation table (default: the one of the latest round, i.e. the DataModule's).
            **kwargs: passed to :func:`~trinity_lightning.crowd.quality.label_quality` (``calibrate=True``, ...).

        Example:
            >>> CrowdEM().label_quality()
            Traceback (most recent call last):
            ...
            RuntimeError: CrowdEM.label_quality: no round has run yet (no model predictions); fit first
        """
        table = annotations if annotations is not None else self.table
        if self.predictions is None or table is None:
            raise RuntimeError("CrowdEM.label_quality: no round has run yet (no model predictions); fit first")
        return label_quality(table, self.predictions.to(torch.float64), **kwargs)

    def _guard(self, table: AnnotationTable, predictions: torch.Tensor, aggregator: Any) -> dict[str, float]:
        """The gold-free check of a round: held-out log-likelihood of the model vs the baselines."""
        folds, smoothing = self.guard_folds, self.smoothing
        if self.baseline_ll is None:  # depends on the annotations only: computed once, kept in the checkpoint
            refit = DawidSkene if isinstance(aggregator, DawidSkene) else MajorityVote
            self.baseline_ll = max(
                worker_marginal_log_likelihood(table, folds=folds, smoothing=smoothing),
                aggregate_log_likelihood(table, lambda t: refit().fit(t).probas_, folds=folds, smoothing=smoothing),
            )
        model_ll = heldout_log_likelihood(table, predictions, folds=folds, smoothing=smoothing, hard=self.hard)
        return {
            "heldout_ll_model": model_ll,
            "heldout_ll_baseline": self.baseline_ll,
            "bootstrap_used": float(model_ll > self.baseline_ll),
        }

    @staticmethod
    def _baseline_posteriors(dm: Any, table: AnnotationTable) -> torch.Tensor:
        """The annotation-only posteriors the guard falls back to (the DataModule's own aggregate)."""
        aggregator = getattr(dm, "aggregator", None)
        if aggregator is None or not hasattr(aggregator, "probas_"):
            aggregator = MajorityVote().fit(table)
        return aggregator.probas_.detach().to("cpu", torch.float32).clone()

    # ------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict[str, Any]:
        return {
            "baseline_ll": self.baseline_ll,
            "round": self.round,
            "posteriors": self.posteriors,
            "confusions": self.confusions,
            "priors": self.priors,
            "history": [dict(h) for h in self.history],
            "predictions": self.predictions,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.round = int(state_dict["round"])
        self.posteriors, self.confusions = state_dict["posteriors"], state_dict["confusions"]
        self.priors = state_dict.get("priors")
        self.baseline_ll = state_dict.get("baseline_ll")
        self.history = [dict(h) for h in state_dict.get("history", [])]
        self.predictions = state_dict.get("predictions")
        self.load_rng(state_dict)
