"""Aggregators that weigh each worker's vote by a skill: Wawa, ZeroBasedSkill and gold majority vote
(crowd-kit's ``Wawa``, ``ZeroBasedSkill`` and ``GoldMajorityVote``), vectorized over the annotation list.

Every one is a weighted :class:`~trinity_lightning.crowd.majority_vote.MajorityVote` whose weights come from
agreement: with majority vote (Wawa), with its own previous answer (ZeroBasedSkill) or with gold labels (gold MV).
"""

from __future__ import annotations

from typing import Any

import torch

from trinity_lightning.crowd._gold import gold_tensor
from trinity_lightning.crowd.base import Aggregator
from trinity_lightning.crowd.majority_vote import MajorityVote, MissingSkill, TieBreak, agreement
from trinity_lightning.crowd.table import AnnotationTable


class _SkillVote(Aggregator):
    """A weighted vote with skills found by :meth:`_skills`."""

    def __init__(
        self,
        tie_break: TieBreak = "smallest",
        seed: int = 0,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str = torch.float64,
    ) -> None:
        super().__init__(device, dtype)
        self._vote = MajorityVote(tie_break=tie_break, seed=seed, device=device, dtype=dtype)
        self.tie_break, self.seed = tie_break, seed

    skills_: torch.Tensor

    def _skills(self, table: AnnotationTable) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _weighted(self, table: AnnotationTable, skills: torch.Tensor) -> MajorityVote:
        return self._vote.fit(table, skills=skills.to("cpu", torch.float64))

    def _fit(self, table: AnnotationTable) -> None:
        skills = self._skills(table)
        vote = self._weighted(table, skills)
        self.probas_, self.skills_ = vote.probas_, skills
        self._labels_from_vote = vote.labels_

    def _labels(self) -> torch.Tensor:
        return self._labels_from_vote


class Wawa(_SkillVote):
    """Worker Agreement with Aggregate: majority vote weighted by each worker's agreement with majority vote.

    Wawa is crowd-kit's name (the method is from Appen's documentation). ``skills_`` is the fraction of a worker's
    labels equal to the (unweighted) majority vote.

    Args:
        tie_break: tie rule of both votes (``"smallest"``: crowd-kit's first-column rule on sorted labels).
        seed: seed of the random tie rule.
        device: where to compute.
        dtype: floating dtype.

    Example:
        >>> frame = {"task": [1, 1, 1, 2, 2, 2], "worker": ["a", "b", "c"] * 2, "label": [0, 0, 1, 1, 1, 0]}
        >>> w = Wawa().fit(frame)
        >>> w.labels_.tolist(), [round(float(s), 2) for s in w.skills_]
        ([0, 1], [1.0, 1.0, 0.0])
    """

    def _skills(self, table: AnnotationTable) -> torch.Tensor:
        first = MajorityVote(tie_break=self.tie_break, seed=self.seed, device=self.device, dtype=self.dtype)
        return agreement(table, first.fit(table).labels_)


class ZeroBasedSkill(_SkillVote):
    """Zero-based skill: skills start at ``1/K + eps`` and move toward each worker's agreement with the weighted
    vote, ``skill += lr * (agreement - skill)``, with the learning rate halved every ``lr_steps_to_reduce`` steps.

    crowd-kit 1.4.2's ``ZeroBasedSkill`` (same arguments and schedule).

    Args:
        n_iter: number of updates.
        lr_init: initial learning rate.
        lr_steps_to_reduce: the rate is multiplied by ``lr_reduce_factor`` every this many steps.
        lr_reduce_factor: see above.
        eps: added to the starting skill ``1/K``.
        tie_break: tie rule of the votes.
        seed: seed of the random tie rule.
        device: where to compute.
        dtype: floating dtype.

    Example:
        >>> frame = {"task": [1, 1, 1, 2, 2, 2], "worker": ["a", "b", "c"] * 2, "label": [0, 0, 1, 1, 1, 0]}
        >>> ZeroBasedSkill(n_iter=10).fit(frame).labels_.tolist()
        [0, 1]
    """

    def __init__(
        self,
        n_iter: int = 100,
        lr_init: float = 1.0,
        lr_steps_to_reduce: int = 20,
        lr_reduce_factor: float = 0.5,
        eps: float = 1e-5,
        tie_break: TieBreak = "smallest",
        seed: int = 0,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str = torch.float64,
    ) -> None:
        super().__init__(tie_break, seed, device, dtype)
        if n_iter < 1:
            raise ValueError(f"n_iter: expected a positive integer, got {n_iter}")
        if lr_steps_to_reduce < 1:
            raise ValueError(f"lr_steps_to_reduce: expected a positive integer, got {lr_steps_to_reduce}")
        self.n_iter, self.lr_init, self.lr_steps_to_reduce = n_iter, lr_init, lr_steps_to_reduce
        self.lr_reduce_factor, self.eps = lr_reduce_factor, eps

    def _skills(self, table: AnnotationTable) -> torch.Tensor:
        used = int(torch.unique(table.labels).numel())
        skills = torch.full((table.num_workers,), 1 / used + self.eps, dtype=torch.float64)
        lr = self.lr_init
        for iteration in range(1, self.n_iter + 1):
            if iteration % self.lr_steps_to_reduce == 0:
                lr *= self.lr_reduce_factor
            labels = self._weighted(table, skills).labels_
            skills = skills + lr * (agreement(table, labels).cpu() - skills)
        return skills


class GoldMajorityVote(_SkillVote):
    """Majority vote weighted by each worker's accuracy on the items with gold labels (crowd-kit's
    ``GoldMajorityVote``).

    ``fit(annotations, true_labels)`` estimates ``skills_`` on the gold items and votes on every item. A worker
    who labelled no gold item has no skill: ``on_missing_skill`` decides (crowd-kit: ``"error"``).

    Args:
        on_missing_skill: ``"error"``, ``"ignore"`` or ``"value"`` (then ``default_skill``), as in
            :class:`~trinity_lightning.crowd.majority_vote.MajorityVote`.
        default_skill: skill of workers without gold items when ``on_missing_skill="value"``.
        tie_break: tie rule of the vote.
        seed: seed of the random tie rule.
        device: where to compute.
        dtype: floating dtype.

    Example:
        >>> frame = {"task": [1, 1, 2, 2], "worker": ["a", "b", "a", "b"], "label": [0, 1, 1, 0]}
        >>> g = GoldMajorityVote().fit(frame, {1: 0})
        >>> g.labels_.tolist(), g.skills_.tolist()
        ([0, 1], [1.0, 0.0])
    """

    def __init__(
        self,
        on_missing_skill: MissingSkill = "error",
        default_skill: float | None = None,
        tie_break: TieBreak = "smallest",
        seed: int = 0,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str = torch.float64,
    ) -> None:
        super().__init__(tie_break, seed, device, dtype)
        self._vote = MajorityVote(
            tie_break=tie_break,
            seed=seed,
            device=device,
            dtype=dtype,
            on_missing_skill=on_missing_skill,
            default_skill=default_skill,
        )
        self.on_missing_skill, self.default_skill = on_missing_skill, default_skill
        self._true_labels: Any = None

    def fit(self, annotations: Any, true_labels: Any = None, **read_kwargs: Any) -> GoldMajorityVote:  # type: ignore[override]
        """Skills from the gold items, then the weighted vote on every item.

        Args:
            annotations: the table or anything :meth:`AnnotationTable.read` accepts.
            true_labels: gold labels: a Series / mapping from item to label, or ``(num_items,)`` class ids with
                ``-1`` for no gold (see :meth:`DawidSkene.fit`).
            **read_kwargs: passed to :meth:`AnnotationTable.read`.

        Returns:
            self.
        """
        if true_labels is None:
            raise ValueError("true_labels: GoldMajorityVote needs gold labels for some items, got None")
        self._true_labels = true_labels
        return super().fit(annotations, **read_kwargs)

    def _skills(self, table: AnnotationTable) -> torch.Tensor:
        items, labels, _ = gold_tensor(table, self._true_labels)
        if not len(items):
            raise ValueError("true_labels: none of the gold items is in the annotation table")
        gold = torch.full((table.num_items,), -1, dtype=torch.int64)
        gold[items] = labels
        on_gold = gold[table.items] >= 0
        hits = (gold[table.items] == table.labels) & on_gold
        seen = torch.bincount(table.workers[on_gold], minlength=table.num_workers)
        right = torch.bincount(table.workers[hits], minlength=table.num_workers)
        skills = right.to(torch.float64) / seen.clamp_min(1)
        return torch.where(seen > 0, skills, torch.full_like(skills, float("nan")))

    def _weighted(self, table: AnnotationTable, skills: torch.Tensor) -> MajorityVote:
        import pandas as pd

        series = pd.Series(skills.numpy(), index=table.worker_ids)  # NaN: no gold item, follows on_missing_skill
        return self._vote.fit(table, skills=series)
