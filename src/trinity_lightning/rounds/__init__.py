"""The round engine: the shared floor under every "score the pool, ask someone, retrain" callback.

``ActiveLearning``, ``PartialFeedback`` and ``CrowdEM`` are policies on top of it (what to score, what to
do with the scores). It holds, and imports no idea package:

* :mod:`~trinity_lightning.rounds.inference`: :func:`predict_pool`, the one way to run a model over a pool
  (trainer device transfer, precision plugin, eval mode restored, sharded across ranks, full outputs or
  a streaming top-k);
* :mod:`~trinity_lightning.rounds.oracle`: the oracle protocol (``query(round, items)`` /
  ``collect(round) -> answers | None``) and its one JSONL schema (class, tag sequence, yes/no, ``worker``);
* :mod:`~trinity_lightning.rounds.schedule`: the schedule, budgets (counts or fractions of the pool's cost),
  stopping criteria, the dataloader-reload rule and the wrong-DataModule error;
* :mod:`~trinity_lightning.rounds.stopping`: criteria that measure the model each round (low uncertainty,
  stabilizing predictions by Cohen's kappa, ΔF on the validation split, budget) and replay on a curve;
* :mod:`~trinity_lightning.rounds.curve`: the learning curve (atomic CSV, ``<namespace>/<name>`` metrics,
  the monitored metric found or refused);
* :mod:`~trinity_lightning.rounds.engine`: exact resume (RNG states of every rank in the checkpoint);
* :mod:`~trinity_lightning.rounds.registry`: one name -> class registry with errors that list the names.

Names are imported lazily, so ``from trinity_lightning.rounds.registry import Registry`` needs neither
Lightning nor torch.
"""

from __future__ import annotations

from typing import Any

from trinity_lightning._lazy import lazy_exports

_LAZY = {
    "Registry": "registry",
    "Selection": "inference",
    "TopK": "inference",
    "predict_pool": "inference",
    "merge_selections": "inference",
    "batch_input": "inference",
    "softmax_forward": "inference",
    "Answers": "oracle",
    "FileOracle": "oracle",
    "Oracle": "oracle",
    "Query": "oracle",
    "read_answer_file": "oracle",
    "validate_answer": "oracle",
    "AtLeast": "schedule",
    "MaxRounds": "schedule",
    "MetricPlateau": "schedule",
    "Schedule": "schedule",
    "StoppingCriterion": "schedule",
    "WrongDataModuleError": "schedule",
    "resolve_budget": "schedule",
    **dict.fromkeys(["Budget", "DeltaF", "LowUncertainty", "StabilizingPredictions", "where_stops"], "stopping"),
    "write_curve": "curve",
    "round_metrics": "curve",
    "RoundCallback": "engine",
    "capture_rng": "engine",
    "restore_rng": "engine",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(
    __name__, {name: f"trinity_lightning.rounds.{module}" for name, module in _LAZY.items()}
)
