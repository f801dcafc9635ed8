"""Partial labels: per example, the set of atomic classes still possible, narrowed by yes/no answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from trinity_lightning.data import DataFormatError, atomic_open


class PartialLabels:
    """A boolean candidate mask ``(N, C)`` plus the log of every answered question.

    An answer "yes" to question mask ``q`` keeps ``candidates[i] & q``; "no" keeps ``candidates[i] & ~q``.
    An example is *fully labelled* when one candidate remains and *informative* (usable for training)
    as soon as at least one class has been ruled out. Every question asked is counted, "no" answers
    included.

    Args:
        num_examples: pool size ``N``.
        num_classes: number of atomic classes ``C``.

    Example:
        >>> state = PartialLabels(3, 4)
        >>> state.answer([0], torch.tensor([[True, True, False, False]]), [True])
        >>> state.candidates[0].tolist(), state.num_questions, state.fully_labelled.tolist()
        ([True, True, False, False], 1, [False, False, False])
    """

    def __init__(self, num_examples: int, num_classes: int) -> None:
        if num_examples < 0:
            raise ValueError(f"num_examples: expected a non-negative integer, got {num_examples}")
        if num_classes < 2:
            raise ValueError(f"num_classes: expected at least 2 classes, got {num_classes}")
        self.candidates = torch.ones(num_examples, num_classes, dtype=torch.bool)
        self.asked = torch.zeros(num_examples, dtype=torch.int32)
        self._log_example: list[torch.Tensor] = []
        self._log_question: list[torch.Tensor] = []
        self._log_answer: list[torch.Tensor] = []

    # ------------------------------------------------------------------ queries
    @property
    def num_examples(self) -> int:
        """Pool size ``N``."""
        return self.candidates.shape[0]

    @property
    def num_classes(self) -> int:
        """Number of atomic classes ``C``."""
        return self.candidates.shape[1]

    @property
    def num_candidates(self) -> torch.Tensor:
        """``(N,)`` number of classes still possible per example."""
        return self.candidates.sum(dim=1)

    @property
    def fully_labelled(self) -> torch.Tensor:
        """``(N,)`` True where exactly one candidate remains."""
        return self.num_candidates == 1

    @property
    def informative(self) -> torch.Tensor:
        """``(N,)`` True where at least one class was ruled out (the example carries a training signal)."""
        return self.num_candidates < self.num_classes

    @property
    def num_questions(self) -> int:
        """Total questions answered so far ("no" answers count)."""
        return int(self.asked.sum())

    def labels(self) -> torch.Tensor:
        """``(N,)`` the class of fully labelled examples, ``-1`` elsewhere."""
        out = self.candidates.float().argmax(dim=1)
        out[~self.fully_labelled] = -1
        return out

    def history(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every answer in order: ``(example, question id or -1, answer)``."""
        if not self._log_example:
            return (
                torch.zeros(0, dtype=torch.int64),
                torch.zeros(0, dtype=torch.int64),
                torch.zeros(0, dtype=torch.bool),
            )
        return torch.cat(self._log_example), torch.cat(self._log_question), torch.cat(self._log_answer)

    # ------------------------------------------------------------------ updates
    def answer(self, indices: Any, question_masks: torch.Tensor, answers: Any, question_ids: Any = None) -> None:
        """Apply yes/no answers.

        Args:
            indices: ``(B,)`` example indices (one entry per question; an example may repeat).
            question_masks: ``(B, C)`` boolean, the classes under each question.
            answers: ``(B,)`` booleans ("is this a <composite>?" -> yes/no).
            question_ids: optional ``(B,)`` question ids recorded in :meth:`history`.

        Raises:
            ValueError: on shape mismatches, out-of-range indices, or an answer that contradicts earlier
                ones (it would leave an example with no candidate); nothing is applied then.
        """
        idx = torch.as_tensor(indices, dtype=torch.int64).reshape(-1)
        masks = torch.as_tensor(question_masks, dtype=torch.bool)
        ans = torch.as_tensor(answers, dtype=torch.bool).reshape(-1)
        if masks.ndim != 2 or masks.shape != (idx.numel(), self.num_classes):
            raise ValueError(
                f"question_masks: expected shape ({idx.numel()}, {self.num_classes}), got {tuple(masks.shape)}"
            )
        if ans.numel() != idx.numel():
            raise ValueError(f"answers: expected {idx.numel()} answers, got {ans.numel()}")
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.num_examples):
            raise ValueError(
                f"indices: expected values in [0, {self.num_examples}), got [{int(idx.min())}, {int(idx.max())}]"
            )
        qids = (
            torch.full_like(idx, -1)
            if question_ids is None
            else torch.as_tensor(question_ids, dtype=torch.int64).reshape(-1)
        )
        if qids.numel() != idx.numel():
            raise ValueError(f"question_ids: expected {idx.numel()} ids, got {qids.numel()}")
        keep = torch.where(ans[:, None], masks, ~masks)
        # fold repeated examples: the product (AND) of all their answers
        unique, inverse = torch.unique(idx, return_inverse=True)
        ruled_out = torch.zeros(unique.numel(), self.num_classes, dtype=torch.int32)
        ruled_out.index_add_(0, inverse, (~keep).int())
        combined = self.candidates[unique] & (ruled_out == 0)
        empty = ~combined.any(dim=1)
        if bool(empty.any()):
            bad = unique[empty].tolist()[:5]
            raise ValueError(
                f"answers: contradict earlier answers for examples {bad} (no class would remain); check the oracle"
            )
        self.candidates[unique] = combined
        self.asked.index_add_(0, idx, torch.ones_like(idx, dtype=torch.int32))
        self._log_example.append(idx.clone())
        self._log_question.append(qids.clone())
        self._log_answer.append(ans.clone())

    def set_labels(self, indices: Any, labels: Any) -> None:
        """Set exact labels (e.g. from a seed set); counts no questions."""
        idx = torch.as_tensor(indices, dtype=torch.int64).reshape(-1)
        lab = torch.as_tensor(labels, dtype=torch.int64).reshape(-1)
        if lab.numel() != idx.numel():
            raise ValueError(f"labels: expected {idx.numel()} labels, got {lab.numel()}")
        if lab.numel() and (int(lab.min()) < 0 or int(lab.max()) >= self.num_classes):
            raise ValueError(
                f"labels: expected values in [0, {self.num_classes}), got [{int(lab.min())}, {int(lab.max())}]"
            )
        self.candidates[idx] = False
        self.candidates[idx, lab] = True

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        """Plain tensors only, so a Lightning checkpoint loads with ``weights_only=True``."""
        example, question, answer = self.history()
        return {
            "candidates": self.candidates.clone(),
            "asked": self.asked.clone(),
            "log_example": example,
            "log_question": question,
            "log_answer": answer,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`; the shape must match this pool."""
        candidates = torch.as_tensor(state["candidates"], dtype=torch.bool)
        if tuple(candidates.shape) != tuple(self.candidates.shape):
            raise ValueError(
                f"state: candidates of shape {tuple(candidates.shape)} do not fit a pool of shape "
                f"{tuple(self.candidates.shape)}"
            )
        self.candidates = candidates.clone()
        self.asked = torch.as_tensor(state["asked"], dtype=torch.int32).clone()
        self._log_example = [torch.as_tensor(state["log_example"], dtype=torch.int64)]
        self._log_question = [torch.as_tensor(state["log_question"], dtype=torch.int64)]
        self._log_answer = [torch.as_tensor(state["log_answer"], dtype=torch.bool)]

    def save(self, path: str | Path) -> None:
        """Write the state to an ``.npz`` file atomically (temp file, fsync, rename)."""
        arrays = {k: v.numpy() for k, v in self.state_dict().items()}
        arrays["candidates"] = np.packbits(arrays["candidates"], axis=1)
        arrays["num_classes"] = np.array(self.num_classes)
        with atomic_open(path, "wb") as handle:
            np.savez_compressed(handle, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> PartialLabels:
        """Read a file written by :meth:`save`."""
        path = Path(path)
        try:
            with np.load(path) as data:
                num_classes = int(data["num_classes"])
                candidates = np.unpackbits(data["candidates"], axis=1, count=num_classes).astype(bool)
                arrays = {
                    k: torch.from_numpy(np.array(data[k]))
                    for k in ("asked", "log_example", "log_question", "log_answer")
                }
        except (KeyError, ValueError, OSError) as err:
            raise DataFormatError(f"not a partial-label state file ({err})", source=path) from err
        state = cls(candidates.shape[0], num_classes)
        state.load_state_dict({"candidates": torch.from_numpy(candidates), **arrays})
        return state

    def __repr__(self) -> str:
        return (
            f"PartialLabels(N={self.num_examples}, C={self.num_classes}, questions={self.num_questions}, "
            f"fully_labelled={int(self.fully_labelled.sum())}, informative={int(self.informative.sum())})"
        )
