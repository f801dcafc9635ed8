"""Majority vote over the annotation list, with an explicit, reproducible tie rule."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from trinity_lightning.crowd.base import Aggregator
from trinity_lightning.crowd.table import AnnotationTable

TieBreak = Literal["random", "smallest"]
TIE_RULES = ("random", "smallest")
MissingSkill = Literal["error", "ignore", "value"]
MISSING_SKILL_RULES = ("error", "ignore", "value")


def agreement(table: AnnotationTable, labels: torch.Tensor) -> torch.Tensor:
    """``(workers,)`` fraction of each worker's labels equal to ``labels[item]`` (crowd-kit's ``get_accuracy``).

    Example:
        >>> t = AnnotationTable.read({"task": [1, 1, 2], "worker": ["a", "b", "a"], "label": [0, 1, 1]})
        >>> agreement(t, torch.tensor([0, 1])).tolist()
        [1.0, 0.0]
    """
    items, workers = table.items.to(labels.device), table.workers.to(labels.device)
    hits = (labels[items] == table.labels.to(labels.device)).to(torch.float64)
    total = torch.zeros(table.num_workers, dtype=torch.float64, device=labels.device).index_add_(0, workers, hits)
    return total / torch.bincount(workers, minlength=table.num_workers).clamp_min(1)


class MajorityVote(Aggregator):
    """(Weighted) majority vote: each item takes the class with the largest (weighted) vote count.

    ``probas_`` are the vote fractions (soft majority vote), the usual initialisation of EM.
    Votes are one ``index_add_`` over the flat index ``item * K + label``.

    Args:
        tie_break: how to pick among classes with equal votes: ``"random"`` (uniformly, from a
            generator seeded with ``seed``: reproducible) or ``"smallest"`` (the smallest class id; it
            biases results towards class 0). crowd-kit 1.4.2 sends ties to the first column of its vote
            table, which is not always the smallest label (on ``crowd_rte`` all 65 ties go to label 1).
        seed: seed of the random tie rule.
        on_missing_skill: a worker without a skill in ``skills``: ``"error"`` (crowd-kit's default), ``"ignore"``
            (drop their labels; an item left without labels is an error) or ``"value"`` (use ``default_skill``).
        default_skill: the skill of workers without one when ``on_missing_skill="value"``.
        device: where to compute.
        dtype: floating dtype.

    Attributes:
        ties_: number of items whose label was chosen by the tie rule.
        skills_: ``(workers,)`` agreement of each worker with the aggregated labels (crowd-kit's ``skills_``);
            NaN for workers whose labels were ignored.

    Example:
        >>> frame = pd.DataFrame({"task": [1, 1, 1, 2, 2], "worker": ["a", "b", "c", "a", "b"],
        ...                       "label": [0, 0, 1, 0, 1]})
        >>> mv = MajorityVote(tie_break="smallest").fit(frame)
        >>> mv.labels_.tolist(), mv.ties_
        ([0, 0], 1)
        >>> MajorityVote().fit(frame, weights={"a": 1.0, "b": 2.0, "c": 1.0}).labels_.tolist()
        [0, 1]
    """

    def __init__(
        self,
        tie_break: TieBreak = "random",
        seed: int = 0,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str = torch.float64,
        on_missing_skill: MissingSkill = "error",
        default_skill: float | None = None,
    ) -> None:
        super().__init__(device, dtype)
        if tie_break not in TIE_RULES:
            raise ValueError(f"tie_break: expected one of {TIE_RULES}, got {tie_break!r}")
        if on_missing_skill not in MISSING_SKILL_RULES:
            raise ValueError(f"on_missing_skill: expected one of {MISSING_SKILL_RULES}, got {on_missing_skill!r}")
        if on_missing_skill == "value" and default_skill is None:
            raise ValueError('default_skill: needed when on_missing_skill="value", got None')
        if on_missing_skill != "value" and default_skill is not None:
            raise ValueError(f'default_skill: used only with on_missing_skill="value", got {on_missing_skill!r}')
        self.on_missing_skill, self.default_skill = on_missing_skill, default_skill
        self.tie_break = tie_break
        self.seed = seed
        self._weights: Any = None
        self._ignored: torch.Tensor | None = None

    def fit(
        self,
        annotations: Any,
        skills: Mapping[Any, float] | pd.Series | torch.Tensor | None = None,
        *,
        weights: Mapping[Any, float] | pd.Series | torch.Tensor | None = None,
        **read_kwargs: Any,
    ) -> MajorityVote:
        """Count the votes.

        Args:
            annotations: an :class:`AnnotationTable` or anything it reads.
            skills: optional non-negative weight of each worker's vote (crowd-kit's ``skills``): a mapping or
                Series from the original worker id, or a tensor in ``table_.worker_ids`` order; workers missing
                from it follow ``on_missing_skill``.
            weights: the same as ``skills`` (our earlier name).
            **read_kwargs: passed to :meth:`AnnotationTable.read`.

        Returns:
            self.
        """
        if skills is not None and weights is not None:
            raise ValueError("skills: pass skills or weights (the same thing), not both")
        self._weights = skills if skills is not None else weights
        return super().fit(annotations, **read_kwargs)

    def _worker_weights(self, table: AnnotationTable) -> torch.Tensor | None:
        weights = self._weights
        if weights is None:
            return None
        if isinstance(weights, torch.Tensor):
            if weights.shape != (table.num_workers,):
                raise ValueError(
                    f"weights: expected a tensor of shape ({table.num_workers},) in worker_ids order, "
                    f"got {tuple(weights.shape)}"
                )
            values = weights.detach().to("cpu", torch.float64)
        else:
            series = pd.Series(weights, dtype=np.float64) if not isinstance(weights, pd.Series) else weights
            aligned = series.reindex(table.worker_ids)
            if aligned.isna().any():
                if self.on_missing_skill == "error":
                    missing = table.worker_ids[aligned.isna().to_numpy()][0]
                    raise ValueError(
                        f"skills: no (finite) skill for worker {missing!r} (on_missing_skill='error'; use 'ignore' or "
                        "'value' with default_skill)"
                    )
                aligned = aligned.fillna(self.default_skill if self.on_missing_skill == "value" else np.nan)
            values = torch.tensor(aligned.to_numpy(dtype=np.float64))
            self._ignored = torch.isnan(values)
            values = torch.nan_to_num(values, nan=0.0)
        if not torch.isfinite(values).all() or (values < 0).any():
            raise ValueError("skills: worker skills (weights) must be finite and non-negative")
        return values

    def _fit(self, table: AnnotationTable) -> None:
        self._ignored = None
        n, K = table.num_items, table.num_classes
        items, labels = table.items.to(self.device), table.labels.to(self.device)
        weights = self._worker_weights(table)
        votes_flat = torch.zeros(n * K, dtype=self.dtype, device=self.device)
        if weights is None:
            votes_flat.index_add_(0, items * K + labels, torch.ones(len(items), dtype=self.dtype, device=self.device))
        else:
            w = weights.to(self.device, self.dtype)[table.workers.to(self.device)]
            votes_flat.index_add_(0, items * K + labels, w)
        votes = votes_flat.view(n, K)
        total = votes.sum(dim=1, keepdim=True)
        if (total <= 0).any():
            item = table.item_ids[int(torch.nonzero(total.squeeze(1) <= 0)[0])]
            raise ValueError(f"skills: every vote on item {item!r} has skill 0 or was ignored (no known skill)")
        self.votes_ = votes
        self.probas_ = votes / total

    def _labels(self) -> torch.Tensor:
        votes = self.votes_
        top = votes.max(dim=1, keepdim=True).values
        tied = votes == top
        self.ties_ = int((tied.sum(dim=1) > 1).sum())
        if self.tie_break == "smallest":
            return votes.argmax(dim=1)  # first maximum = smallest class id
        generator = torch.Generator(device="cpu").manual_seed(self.seed)
        noise = torch.rand(votes.shape, generator=generator, dtype=torch.float64).to(votes.device)
        return torch.where(tied, noise, torch.full_like(noise, -1.0)).argmax(dim=1)

    def _finish(self) -> None:
        super()._finish()
        self.skills_ = agreement(self.table_, self.labels_)
        if self._ignored is not None:
            self.skills_[self._ignored.to(self.skills_.device)] = float("nan")
