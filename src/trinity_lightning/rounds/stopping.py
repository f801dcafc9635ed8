"""Stopping criteria that read the model, not only the learning curve: low uncertainty, stable predictions, ΔF.

A round callback stops when one of its criteria says so (:func:`~trinity_lightning.rounds.schedule.stop_reason`).
The criteria of :mod:`~trinity_lightning.rounds.schedule` read only the curve; the ones here first *measure*
something at every round and write it into the curve row as ``stop/<name>`` columns, then decide from the
curve alone. So where a criterion would have stopped can be read back from any recorded curve
(:func:`where_stops`), and a resumed campaign decides exactly as an uninterrupted one (the measures are in the
curve, the little state a criterion keeps, e.g. the previous round's predictions, is in its ``state_dict``,
which the callback saves in its checkpoint entry).

* :class:`LowUncertainty` (Zhu et al. 2008): the mean uncertainty of the model on (a fixed-size random sample
  of) the unlabelled pool falls below ``threshold`` (column ``stop/uncertainty``). For a tagger the mean over
  tokens is dominated by the easy majority tag ("O"); ``reduce="max"`` (the most uncertain token of each
  sentence) or ``reduce="mnlp"`` (the length-normalised sequence probability) measure per sentence instead
  (columns ``stop/uncertainty_max``, ``stop/uncertainty_mnlp``).
* :class:`StabilizingPredictions` (Bloodgood & Vijay-Shanker 2009): Cohen's kappa between the predictions of
  two successive rounds on a fixed *stop set* stays above ``threshold`` for ``window`` rounds (``stop/kappa``).
* :class:`DeltaF` (Laws & Schütze 2008, Altschuler & Bloodgood 2019): the validation metric ``monitor``
  changes by less than ``threshold`` between successive rounds, ``window`` times in a row (``stop/delta``).
* :class:`Budget`: the labelled count (or cost, ``unit="tokens"``) reaches ``value``.

The measuring hook is ``measure(trainer, pl_module, datamodule) -> dict``; the datamodule needs
``pool_indices`` and ``pool_dataloader(indices)`` (an
:class:`~trinity_lightning.active.ActiveLearningDataModule` has both). Model outputs come from
``pl_module.pool_logits(batch)`` (``logits`` or ``(logits, mask)``; an ensemble or a tagger adapter defines it)
or else ``pl_module(x)``.

Example:
    >>> rows = [{"labelled": n, "val_f1": f} for n, f in [(10, 0.5), (20, 0.7), (30, 0.705), (40, 0.706)]]
    >>> where_stops([DeltaF("val_f1", threshold=0.01, window=2), Budget(30)], rows)
    {'DeltaF': 3, 'Budget': 2}
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torchmetrics.functional.classification import multiclass_cohen_kappa

from trinity_lightning.rounds.curve import round_metrics
from trinity_lightning.rounds.inference import batch_input, predict_pool
from trinity_lightning.rounds.schedule import AtLeast, StoppingCriterion

__all__ = [
    "Budget",
    "DeltaF",
    "LowUncertainty",
    "MeasuredCriterion",
    "StabilizingPredictions",
    "cohen_kappa",
    "where_stops",
]

_UNCERTAINTY = ("least_confidence", "entropy", "margin")
_REDUCE = ("token", "max", "mnlp")


def _logits(model: Any, batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``pool_logits(batch)`` when the module defines it, else ``model(x)``; as ``(logits, mask or None)``."""
    hook = getattr(model, "pool_logits", None)
    out = hook(batch) if callable(hook) else model(batch_input(batch))
    if isinstance(out, (tuple, list)):
        return out[0], out[1]
    return out, None


def _tokens(logits: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-item log-probabilities ``(N, T, C)`` and a mask ``(N, T)`` (classification: ``T = 1``)."""
    log_p = logits.float().log_softmax(-1)
    if log_p.ndim == 2:
        log_p = log_p.unsqueeze(1)
    if mask is None:
        mask = torch.ones(log_p.shape[:2], dtype=torch.bool, device=log_p.device)
    return log_p, mask.to(device=log_p.device, dtype=torch.bool)


def _run(model: Any, datamodule: Any, indices: Sequence[int], trainer: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(log-probabilities, mask)`` of every batch of ``indices``, in order, on CPU (every rank runs all)."""
    batches: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(module: Any, batch: Any) -> torch.Tensor:
        log_p, mask = _tokens(*_logits(module, batch))
        batches.append((log_p.cpu(), mask.cpu()))
        return torch.zeros(len(log_p))

    predict_pool(model, list(indices), datamodule.pool_dataloader, forward, trainer=trainer, shard=False)
    return batches


def cohen_kappa(a: torch.Tensor, b: torch.Tensor, num_classes: int) -> float:
    """Cohen's kappa between two label vectors (torchmetrics); identical vectors give 1 even with one class.

    Example:
        >>> cohen_kappa(torch.tensor([0, 1, 1, 0]), torch.tensor([0, 1, 0, 0]), 2)
        0.5
    """
    if torch.equal(a, b):
        return 1.0
    value = float(multiclass_cohen_kappa(a, b, num_classes=max(num_classes, 2)))
    return 0.0 if math.isnan(value) else round(value, 6)


class MeasuredCriterion(StoppingCriterion):
    """A criterion that measures at every round (``measure``) and keeps state for checkpoints.

    Subclasses return their curve columns from :meth:`measure` and decide in ``should_stop(history)`` from
    those columns only; ``state_dict``/``load_state_dict`` hold whatever else a resumed run needs.
    """

    def measure(self, trainer: Any, pl_module: Any, datamodule: Any) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    def __repr__(self) -> str:  # the settings, not the state (stop set, predictions)
        settings = {k: v for k, v in vars(self).items() if not k.startswith("_") and isinstance(v, (str, int, float))}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in settings.items())})"

    def _column(self, history: Sequence[dict[str, Any]], column: str) -> list[float]:
        return [float(row[column]) for row in history if column in row and not _missing(row[column])]


def _missing(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


def _check_unit_interval(value: float, argument: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{argument}: expected a number in [0, 1], got {value!r}")


def _check_positive(value: int, argument: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{argument}: expected a positive integer, got {value!r}")


class LowUncertainty(MeasuredCriterion):
    """Stop when the model's mean uncertainty on the unlabelled pool falls below ``threshold``.

    Each round it scores a random sample of at most ``sample`` pool items and records the mean as a curve
    column. ``reduce`` says what is averaged (for a classifier, one item = one token, and all three agree):

    * ``"token"``: every real token's uncertainty (``kind``), pooled over the sample (column
      ``stop/uncertainty``). On a tagger this mean is dominated by the many easy "O" tokens and falls early.
    * ``"max"``: per sentence, its most uncertain real token; the mean over sentences
      (``stop/uncertainty_max``): a sentence counts as certain only when all of its tokens are.
    * ``"mnlp"``: per sentence, ``1 - exp(mean_t log max_c p(c | t))``, one minus the length-normalised
      probability of the most likely tag sequence (the MNLP score of Shen et al. 2018, as a least confidence in
      [0, 1)); the mean over sentences (``stop/uncertainty_mnlp``). Needs ``kind="least_confidence"``.

    Args:
        threshold: stop once the mean uncertainty is at most this.
        kind: ``"least_confidence"`` (``1 - max p``, in [0, 1)), ``"margin"`` (``1 - (p1 - p2)``) or
            ``"entropy"`` (nats).
        sample: how many pool items to score each round (``None``: the whole pool).
        seed: seed of the sample.
        reduce: ``"token"``, ``"max"`` or ``"mnlp"`` (above).

    Example:
        >>> LowUncertainty(0.05).should_stop([{"stop/uncertainty": 0.2}, {"stop/uncertainty": 0.04}])
        True
        >>> probs = torch.tensor([[[0.99, 0.01], [0.99, 0.01], [0.6, 0.4]]])  # one sentence, 3 tokens
        >>> mask = torch.ones(1, 3, dtype=torch.bool)
        >>> [round(LowUncertainty(reduce=r).sentence_scores(probs.log(), mask).item(), 3) for r in ("max", "mnlp")]
        [0.4, 0.162]
    """

    column = "stop/uncertainty"

    def __init__(
        self,
        threshold: float = 0.05,
        kind: str = "least_confidence",
        sample: int | None = 2000,
        seed: int = 0,
        reduce: str = "token",
    ) -> None:
        if kind not in _UNCERTAINTY:
            raise ValueError(f"kind: expected one of {_UNCERTAINTY}, got {kind!r}")
        if reduce not in _REDUCE:
            raise ValueError(f"reduce: expected one of {_REDUCE}, got {reduce!r}")
        if reduce == "mnlp" and kind != "least_confidence":
            raise ValueError(
                f"kind: reduce='mnlp' scores the top tag's probability; use kind='least_confidence', got {kind!r}"
            )
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or threshold < 0:
            raise ValueError(f"threshold: expected a number >= 0, got {threshold!r}")
        if sample is not None:
            _check_positive(sample, "sample")
        self.threshold, self.kind, self.sample, self.seed, self.reduce = threshold, kind, sample, seed, reduce
        if reduce != "token":
            self.column = f"stop/uncertainty_{reduce}"
        self._rounds = 0

    def uncertainty(self, log_p: torch.Tensor) -> torch.Tensor:
        """Per-token uncertainty of log-probabilities ``(..., C)``."""
        if self.kind == "entropy":
            return -(log_p.exp() * log_p).sum(-1)
        p = log_p.exp()
        if self.kind == "margin":
            top = p.topk(min(2, p.shape[-1]), dim=-1).values
            second = top[..., 1] if top.shape[-1] > 1 else torch.zeros_like(top[..., 0])
            return 1.0 - (top[..., 0] - second)
        return 1.0 - p.amax(-1)

    def sentence_scores(self, log_p: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """One uncertainty per sequence ``(N,)`` of log-probabilities ``(N, T, C)`` over its real tokens ``mask``.

        ``reduce="max"``: the most uncertain token; ``"mnlp"``: ``1 - exp(mean log max p)``; ``"token"``: the
        mean token uncertainty. A sequence without real tokens scores 0.
        """
        mask = mask.bool()
        lengths = mask.sum(-1)
        if self.reduce == "mnlp":
            mean_log = (log_p.amax(-1) * mask).sum(-1) / lengths.clamp(min=1)
            return torch.where(lengths > 0, 1.0 - mean_log.exp(), torch.zeros_like(mean_log))
        scores = self.uncertainty(log_p)
        if self.reduce == "max":
            return scores.masked_fill(~mask, float("-inf")).amax(-1).clamp(min=0.0).where(lengths > 0, 0.0)
        return (scores * mask).sum(-1) / lengths.clamp(min=1)

    def measure(self, trainer: Any, pl_module: Any, datamodule: Any) -> dict[str, float]:
        pool = list(datamodule.pool_indices)
        if not pool:
            return {self.column: 0.0}
        if self.sample is not None and len(pool) > self.sample:
            rng = np.random.default_rng([self.seed, self._rounds, 29])
            pool = np.sort(rng.choice(np.asarray(pool), size=self.sample, replace=False)).tolist()
        self._rounds += 1
        total, count = 0.0, 0
        for log_p, mask in _run(pl_module, datamodule, pool, trainer):
            if self.reduce == "token":
                total += float((self.uncertainty(log_p) * mask).sum())
                count += int(mask.sum())
            else:
                total += float(self.sentence_scores(log_p, mask).sum())
                count += len(log_p)
        return {self.column: round(total / max(count, 1), 6)}

    def should_stop(self, history: Sequence[dict[str, Any]]) -> bool:
        values = self._column(history, self.column)
        return bool(values) and values[-1] <= self.threshold

    def state_dict(self) -> dict[str, Any]:
        return {"rounds": self._rounds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._rounds = int(state.get("rounds", 0))


class StabilizingPredictions(MeasuredCriterion):
    """Stop when successive rounds agree on a fixed stop set: Cohen's kappa >= ``threshold`` ``window`` times.

    At the first round it draws a *stop set* of ``size`` unlabelled items (it never changes afterwards, also
    when some of them get labelled) and keeps the model's predictions on it; each later round records the
    kappa between the new and the previous predictions (over real tokens for a tagger) as ``stop/kappa``.

    Args:
        threshold: agreement needed (Bloodgood & Vijay-Shanker use 0.99).
        window: how many successive kappas must all reach ``threshold`` (they use 3).
        size: stop set size.
        seed: seed of the stop set.

    Example:
        >>> rows = [{"stop/kappa": k} for k in (float("nan"), 0.8, 0.995, 0.991, 0.999)]
        >>> StabilizingPredictions(0.99, window=3).should_stop(rows)
        True
    """

    column = "stop/kappa"

    def __init__(self, threshold: float = 0.99, window: int = 3, size: int = 1000, seed: int = 0) -> None:
        _check_unit_interval(threshold, "threshold")
        _check_positive(window, "window")
        _check_positive(size, "size")
        self.threshold, self.window, self.size, self.seed = threshold, window, size, seed
        self.stop_set: list[int] | None = None
        self.previous: torch.Tensor | None = None

    def measure(self, trainer: Any, pl_module: Any, datamodule: Any) -> dict[str, float]:
        if self.stop_set is None:
            pool = np.asarray(datamodule.pool_indices, dtype=np.int64)
            if len(pool) == 0:
                raise ValueError("StabilizingPredictions: the pool is empty; there is no stop set to draw")
            size = min(self.size, len(pool))
            self.stop_set = np.sort(np.random.default_rng(self.seed).choice(pool, size, replace=False)).tolist()
        predictions, num_classes = [], 2
        for log_p, mask in _run(pl_module, datamodule, self.stop_set, trainer):
            predictions.append(log_p.argmax(-1)[mask])
            num_classes = max(num_classes, log_p.shape[-1])
        current = torch.cat(predictions)
        previous, self.previous = self.previous, current
        if previous is None or len(previous) != len(current):
            return {self.column: float("nan")}
        return {self.column: cohen_kappa(current, previous, num_classes)}

    def should_stop(self, history: Sequence[dict[str, Any]]) -> bool:
        values = self._column(history, self.column)
        return len(values) >= self.window and all(v >= self.threshold for v in values[-self.window :])

    def state_dict(self) -> dict[str, Any]:
        return {"stop_set": self.stop_set, "previous": self.previous}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stop_set = state.get("stop_set")
        self.previous = state.get("previous")


class DeltaF(MeasuredCriterion):
    """Stop when the validation metric ``monitor`` moves by less than ``threshold``, ``window`` rounds in a row.

    ``monitor`` is read from what the module logged (``self.log("val_f1", ...)`` in ``validation_step``) and
    copied into the curve; the absolute change from the previous round is recorded as ``stop/delta``.

    Args:
        monitor: the validation metric (e.g. ``"val_f1"``, ``"val_acc"``).
        threshold: largest change counted as "no change" (in the metric's units).
        window: successive small changes needed.

    Raises:
        ValueError: ``monitor`` missing or empty; at the first round, ``monitor`` was not logged (the message
            lists what was).

    Example:
        >>> rows = [{"val_f1": f} for f in (0.5, 0.7, 0.705, 0.706)]
        >>> DeltaF("val_f1", threshold=0.01, window=2).should_stop(rows)
        True
    """

    def __init__(self, monitor: str, threshold: float = 0.005, window: int = 2) -> None:
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(
                f"monitor: DeltaF needs the name of a validation metric the module logs (e.g. 'val_f1'), "
                f"got {monitor!r}"
            )
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or threshold < 0:
            raise ValueError(f"threshold: expected a number >= 0, got {threshold!r}")
        _check_positive(window, "window")
        self.monitor, self.threshold, self.window = monitor, threshold, window

    def measure(self, trainer: Any, pl_module: Any, datamodule: Any) -> dict[str, float]:
        logged = sorted(trainer.callback_metrics)
        if self.monitor not in logged:
            raise ValueError(
                f"monitor: DeltaF(monitor={self.monitor!r}) needs a validation metric, but the module logged "
                f"{logged or 'no metric'}; give the trainer a validation split and self.log({self.monitor!r}, ...) in "
                "validation_step, or name one of the logged metrics"
            )
        return round_metrics(trainer, self.monitor, "DeltaF")

    def should_stop(self, history: Sequence[dict[str, Any]]) -> bool:
        if history and not any(self.monitor in row for row in history):
            columns = sorted({k for row in history for k in row})
            raise ValueError(
                f"monitor: DeltaF reads {self.monitor!r} but the learning curve has only {columns}; log it in "
                "validation_step (and give the trainer a validation split) or name one of those columns"
            )
        values = self._column(history, self.monitor)
        deltas = [abs(b - a) for a, b in itertools.pairwise(values)]
        return len(deltas) >= self.window and all(d < self.threshold for d in deltas[-self.window :])


class Budget(AtLeast):
    """Stop once ``value`` examples (``unit="examples"``) or cost units (``unit="tokens"``) are labelled.

    Example:
        >>> Budget(100, unit="tokens").should_stop([{"labelled": 9, "labelled_tokens": 120}])
        True
    """

    def __init__(self, value: float, unit: str = "examples") -> None:
        if unit not in ("examples", "tokens"):
            raise ValueError(f"unit: expected 'examples' or 'tokens', got {unit!r}")
        super().__init__("labelled_tokens" if unit == "tokens" else "labelled", value)


def where_stops(criteria: Sequence[StoppingCriterion], curve: Sequence[dict[str, Any]]) -> dict[str, int | None]:
    """The first row of a recorded ``curve`` at which each criterion says stop (``None``: never), by class name.

    Replays the decision round by round (each criterion sees the rows up to that round), so it answers "where
    would this campaign have stopped" from a curve recorded with the criteria's ``stop/*`` columns.
    """
    out: dict[str, int | None] = {}
    for criterion in criteria:
        name = type(criterion).__name__
        at = next((i for i in range(len(curve)) if criterion.should_stop(curve[: i + 1])), None)
        out[name if name not in out else repr(criterion)] = at
    return out
