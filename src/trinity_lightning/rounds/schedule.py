"""When a round happens, how much it may spend, when the campaign stops, and what the trainer must allow.

One place for what the three round callbacks used to decide each their own way:

* :class:`Schedule`: a round every ``every_n_epochs`` epochs, once at least ``min_steps`` optimizer steps ran;
* :func:`resolve_budget`: a budget as a count (examples, questions, cost units such as words) or, as a float
  in ``(0, 1]``, a fraction of the pool's total cost;
* :class:`StoppingCriterion`: pluggable ``should_stop(history) -> bool`` (baal-style); :class:`MaxRounds`,
  :class:`AtLeast` (a budget is one of them) and :class:`MetricPlateau` ship;
* :func:`ensure_reload_every_epoch`: the training set grows every round, so the train loader is rebuilt
  every epoch (set when unset, refused when set to something else);
* :func:`require_datamodule`: the same error, :class:`WrongDataModuleError`, from every callback.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "AtLeast",
    "MaxRounds",
    "MetricPlateau",
    "Schedule",
    "StoppingCriterion",
    "WrongDataModuleError",
    "check_budget",
    "ensure_reload_every_epoch",
    "require_datamodule",
    "resolve_budget",
    "stop_reason",
]


class WrongDataModuleError(TypeError, ValueError):
    """The trainer's DataModule is not the kind a round callback needs (a ``TypeError`` and a ``ValueError``)."""


def require_datamodule(
    trainer: Any, expected: type | Sequence[str], owner: str, hint: str = "", needs: str | None = None
) -> Any:
    """The trainer's DataModule, checked by class or by the methods it must have (``needs`` words the need).

    Raises:
        WrongDataModuleError: naming the callback, what it needs and what it got.
    """
    dm = getattr(trainer, "datamodule", None)
    if isinstance(expected, type):
        ok, needs = isinstance(dm, expected), needs or f"a {expected.__name__}"
    else:
        ok = dm is not None and all(hasattr(dm, name) for name in expected)
        needs = needs or "a DataModule with " + ", ".join(expected)
    if not ok:
        raise WrongDataModuleError(
            f"datamodule: {owner} needs {needs}, got {type(dm).__name__ if dm is not None else 'none'}; "
            f"pass it as trainer.fit(model, datamodule=...){'. ' + hint if hint else ''}"
        )
    return dm


def ensure_reload_every_epoch(trainer: Any, owner: str) -> None:
    """Rebuild the train loader every epoch (the labelled set grows); refuse another explicit setting."""
    value = getattr(trainer, "reload_dataloaders_every_n_epochs", 0)
    if not value:
        trainer.reload_dataloaders_every_n_epochs = 1
    elif value != 1:
        raise ValueError(
            f"trainer.reload_dataloaders_every_n_epochs: {owner} grows the training set every round and needs "
            f"the train loader rebuilt every epoch; set it to 1 or leave it unset, got {value}"
        )


@dataclass
class Schedule:
    """A round is due after ``every_n_epochs`` epochs of the round and at least ``min_steps`` optimizer steps.

    Example:
        >>> Schedule(every_n_epochs=2, min_steps=10).due(epochs=2, steps=12), Schedule(2).due(epochs=1, steps=99)
        (True, False)
    """

    every_n_epochs: int = 1
    min_steps: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.every_n_epochs, int) or self.every_n_epochs < 1:
            raise ValueError(f"epochs_per_round: expected a positive integer, got {self.every_n_epochs!r}")
        if not isinstance(self.min_steps, int) or self.min_steps < 0:
            raise ValueError(f"min_steps_per_round: expected an integer >= 0, got {self.min_steps!r}")

    def due(self, epochs: int, steps: int) -> bool:
        return epochs >= self.every_n_epochs and steps >= self.min_steps


def check_budget(value: Any, argument: str, allow_none: bool = True) -> None:
    """A budget is a positive count, or a float in ``(0, 1]`` (a fraction of the total cost).

    Raises:
        ValueError: naming ``argument``.
    """
    if value is None and allow_none:
        return
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and value > 0
    if ok and isinstance(value, float) and value > 1.0 and not value.is_integer():
        ok = False
    if not ok:
        raise ValueError(
            f"{argument}: expected a positive count or a fraction of the total cost in (0, 1], got {value!r}"
        )


def resolve_budget(value: int | float | None, total: float) -> int | None:
    """A count as is; a float in ``(0, 1]`` as that fraction of ``total`` (at least 1).

    Example:
        >>> resolve_budget(50, 1000), resolve_budget(0.25, 1000), resolve_budget(1.0, 7), resolve_budget(None, 9)
        (50, 250, 7, None)
    """
    if value is None:
        return None
    if isinstance(value, float) and value <= 1.0:
        return max(1, math.ceil(value * total - 1e-9))
    return int(value)


class StoppingCriterion:
    """Stop the campaign when :meth:`should_stop` says so; ``history`` is the learning curve (a list of dicts)."""

    def should_stop(self, history: Sequence[dict[str, Any]]) -> bool:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"


class MaxRounds(StoppingCriterion):
    """Stop after ``rounds`` query rounds (the curve's ``round`` column).

    Example:
        >>> MaxRounds(2).should_stop([{"round": 0}, {"round": 1}]), MaxRounds(2).should_stop([{"round": 2}])
        (False, True)
    """

    def __init__(self, rounds: int) -> None:
        self.rounds = rounds

    def should_stop(self, history: Sequence[dict[str, Any]]) -> bool:
        return bool(history) and int(history[-1].get("round", 0)) >= self.rounds


class AtLeast(StoppingCriterion):
    """Stop once ``column`` of the last row reaches ``value`` (a budget: ``AtLeast("labelled", 300)``).

    Example:
        >>> AtLeast("labelled", 30).should_stop([{"labelled": 32}])
        True
    """

    def __init__(self, column: str, value: float) -> None:
        self.column, self.value = column, value

    def should_stop(self, history: Sequence[dict[str, Any]]) -> bool:
        return bool(history) and float(history[-1].get(self.column, -math.inf)) >= self.value


class MetricPlateau(StoppingCriterion):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` rounds.

    Example:
        >>> rows = [{"val_acc": a} for a in (0.5, 0.7, 0.7, 0.69)]
        >>> MetricPlateau("val_acc", patience=2).should_stop(rows)
        True
    """

    def __init__(self, monitor: str, patience: int = 3, min_delta: float = 0.0, mode: str = "max") -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"mode: expected 'min' or 'max', got {mode!r}")
        self.monitor, self.patience, self.min_delta, self.mode = monitor, patience, min_delta, mode

    def should_stop(self, history: Sequence[dict[str, Any]]) -> bool:
        values = [float(row[self.monitor]) for row in history if self.monitor in row]
        if len(values) <= self.patience:
            return False
        sign = 1.0 if self.mode == "max" else -1.0
        best_before = max(sign * v for v in values[: -self.patience])
        return all(sign * v <= best_before + self.min_delta for v in values[-self.patience :])


def stop_reason(criteria: Sequence[StoppingCriterion], history: Sequence[dict[str, Any]]) -> str | None:
    """The first criterion that says stop, as text, else ``None``."""
    for criterion in criteria:
        if criterion.should_stop(history):
            return repr(criterion)
    return None
