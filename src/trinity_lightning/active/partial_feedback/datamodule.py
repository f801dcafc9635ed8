"""A pool DataModule whose state holds partial labels (candidate sets) on top of the labelled/pool split."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, Dataset

from trinity_lightning.active.datamodule import ActiveLearningDataModule
from trinity_lightning.active.partial_feedback.hierarchy import ClassHierarchy
from trinity_lightning.active.partial_feedback.state import PartialLabels
from trinity_lightning.data import DataFormatError


class _CandidateView(Dataset):
    """``(x, candidate mask)`` items for the informative examples of a pool (the mask at ``label_field``)."""

    def __init__(
        self, dataset: Dataset, indices: Sequence[int], candidates: torch.Tensor, label_field: int | str
    ) -> None:
        self.dataset, self.indices, self.candidates, self.label_field = dataset, list(indices), candidates, label_field

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> Any:
        index = self.indices[position]
        item = self.dataset[index]
        if isinstance(item, dict):
            return {**item, self.label_field: self.candidates[index]}
        values = list(item)
        values[self.label_field] = self.candidates[index]  # type: ignore[index]
        return tuple(values)


class PartialFeedbackDataModule(ActiveLearningDataModule):
    """:class:`~trinity_lightning.active.ActiveLearningDataModule` plus a candidate mask per example.

    An example is *labelled* (in the parent's sense: :attr:`labelled_indices`) once a single candidate is
    left; until then it stays in the pool, possibly with a partial label. :meth:`train_dataloader`
    yields ``(x, candidates)`` with a boolean ``(B, C)`` mask for every example that carries any
    information (train with :func:`~trinity_lightning.active.partial_feedback.partial_label_loss`).
    Every :meth:`answer` call rewrites ``partial_path`` atomically; at :meth:`setup` the state is
    restored from it (and from ``labels_path``), so a stopped campaign loses no answer.

    Args:
        dataset: map-style pool whose items are tuples ``(x, y)`` (``y`` at ``label_field``; used only by
            the simulated oracle and for exact seed labels).
        hierarchy: the class hierarchy; :attr:`question_masks` come from it.
        partial_path: ``.npz`` file holding the candidate masks and the answer log (``None``: in memory).
        binarize: binarize the hierarchy (balanced yes/no splits) before building questions.
        **kwargs: everything else goes to :class:`~trinity_lightning.active.ActiveLearningDataModule`
            (``val``, ``test``, ``initial_labelled``, ``batch_size``, ``labels_path``, ``seed``, ...).

    Example:
        >>> from trinity_lightning.data import ArrayDataset
        >>> h = ClassHierarchy.from_nested({"animal": ["cat", "dog"], "car": None})
        >>> dm = PartialFeedbackDataModule(ArrayDataset(torch.randn(6, 2), torch.tensor([0, 1, 2, 0, 1, 2])), h)
        >>> dm.setup("fit")
        >>> dm.answer([0, 1], [0, 0], [True, True])   # question 0 = "animal"
        >>> dm.partial.candidates[0].tolist(), dm.n_labelled
        ([True, True, False], 0)
    """

    def __init__(
        self,
        dataset: Dataset | None = None,
        hierarchy: ClassHierarchy | None = None,
        partial_path: str | None = None,
        binarize: bool = True,
        **kwargs: Any,
    ) -> None:
        if hierarchy is None:
            raise ValueError("hierarchy: a ClassHierarchy is required")
        kwargs.setdefault("num_classes", hierarchy.num_classes)
        super().__init__(dataset, **kwargs)
        self.hierarchy = hierarchy.binarized() if binarize and not hierarchy.is_binary() else hierarchy
        self.question_names = self.hierarchy.questions
        self.question_masks = self.hierarchy.question_masks()
        self.partial_path = Path(partial_path) if partial_path else None
        self.partial: PartialLabels | None = None

    # ------------------------------------------------------------------ setup & state
    def setup(self, stage: str | None = None) -> None:
        if self.dataset is not None:
            return
        super().setup(stage)
        self._ensure_partial()
        if self.partial_path is not None and self.partial_path.exists() and self.resume_labels:
            self._merge(PartialLabels.load(self.partial_path).state_dict())
        self._sync_from_labelled()

    def _pool(self) -> Dataset:
        if self.dataset is None:
            raise RuntimeError(f"{type(self).__name__}: call setup() first (Lightning does it in fit/test)")
        return self.dataset

    def _ensure_partial(self) -> PartialLabels:
        if self.partial is None:
            n = len(self._pool())  # type: ignore[arg-type]
            self.partial = PartialLabels(n, self.hierarchy.num_classes)
        return self.partial

    def gold_labels(self) -> torch.Tensor:
        """``(N,)`` the labels stored in the dataset (what a simulated oracle reveals)."""
        dataset = self._pool()
        labels = getattr(dataset, "labels", None)
        if isinstance(labels, torch.Tensor) and labels.ndim == 1 and len(labels) == len(dataset):  # type: ignore
            return labels.to(torch.int64)
        field_ = self.label_field
        return torch.as_tensor(
            [int(dataset[i][field_]) for i in range(len(dataset))],  # type: ignore[arg-type,index]
            dtype=torch.int64,
        )

    def _sync_from_labelled(self) -> None:
        """Examples labelled in the parent's state (seed labels, labels file) get a single candidate."""
        partial = self._ensure_partial()
        labelled = np.flatnonzero(self.labelled_mask)
        missing = [i for i in labelled.tolist() if not bool(partial.fully_labelled[i])]
        if missing:
            gold, given = self.gold_labels(), self.annotations
            labels = [int(given.get(i, gold[i])) for i in missing]
            partial.set_labels(missing, labels)

    def label(self, indices: Sequence[int], labels: Sequence[Any] | None = None, advance_round: bool = True) -> None:
        """Exact labels (parent behaviour) also collapse the candidate sets to the given class."""
        super().label(indices, labels, advance_round)
        if self.partial is not None and len(indices):
            idx = [int(i) for i in (indices.tolist() if hasattr(indices, "tolist") else indices)]  # type: ignore
            values = [int(v) for v in labels] if labels is not None else self.gold_labels()[idx].tolist()
            self.partial.set_labels(idx, values)
            self._save_partial()

    def answer(self, examples: Any, questions: Any, answers: Any) -> None:
        """Apply yes/no answers to questions (ids into :attr:`question_names`) and persist them.

        Examples left with one candidate move to the labelled set (and the labels file).
        """
        partial = self._ensure_partial()
        ex = torch.as_tensor(examples, dtype=torch.int64).reshape(-1)
        qs = torch.as_tensor(questions, dtype=torch.int64).reshape(-1)
        if qs.numel() and (int(qs.min()) < 0 or int(qs.max()) >= len(self.question_names)):
            raise ValueError(
                f"questions: ids must lie in [0, {len(self.question_names)}), got [{int(qs.min())}, {int(qs.max())}]"
            )
        before = partial.fully_labelled.clone()
        partial.answer(ex, self.question_masks[qs], answers, qs)
        done = torch.nonzero(partial.fully_labelled & ~before & torch.from_numpy(~self.labelled_mask))
        done = done.flatten()
        if done.numel():
            labels = partial.candidates[done].float().argmax(dim=1).tolist()
            super().label(done.tolist(), labels, advance_round=False)  # the parent's: the candidates are set
        self._save_partial()

    def _save_partial(self) -> None:
        if self.partial_path is not None and self.partial is not None:
            self.partial.save(self.partial_path)

    def _merge(self, state: dict[str, Any]) -> None:
        """Combine a saved state with the current one: answers only shrink candidate sets, so AND them."""
        partial = self._ensure_partial()
        other = PartialLabels(partial.num_examples, partial.num_classes)
        other.load_state_dict(state)
        if other.num_questions >= partial.num_questions:
            merged_candidates = other.candidates & partial.candidates
            partial.load_state_dict({**other.state_dict(), "candidates": merged_candidates})
        else:
            partial.candidates &= other.candidates
        if bool((~partial.candidates.any(dim=1)).any()):
            raise ValueError(
                f"partial_path: {self.partial_path} contradicts the checkpoint (an example has no "
                "candidate left); remove one of them"
            )

    def state_dict(self) -> dict[str, Any]:
        """The parent's plain-Python state plus the partial-label tensors."""
        state = super().state_dict()
        if self.partial is not None:
            state["partial"] = self.partial.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore from a checkpoint: the checkpoint's candidate sets win over ``partial_path``.

        Answers saved after the checkpoint was written are replayed by the campaign (the same questions, the
        simulated oracle's or a person's answers read again from the round's answers file) and applied once;
        applying them now would change the replayed epochs.
        """
        super().load_state_dict(state_dict)
        partial = self._ensure_partial()
        if "partial" in state_dict:
            partial.load_state_dict(state_dict["partial"])
        if self.partial_path is not None and self.partial_path.exists():
            try:
                newer = PartialLabels.load(self.partial_path).num_questions - partial.num_questions
            except DataFormatError:
                newer = 0
            if newer > 0:
                rank_zero_info(
                    f"partial_path: {newer} answers in {self.partial_path} are newer than the checkpoint; "
                    "their round is replayed and they are applied once"
                )
        self._sync_from_labelled()

    # ------------------------------------------------------------------ loaders
    @property
    def informative_indices(self) -> list[int]:
        """Examples with at least one class ruled out (they train the model), ascending."""
        return torch.nonzero(self._ensure_partial().informative).flatten().tolist()

    def train_dataloader(self) -> DataLoader:
        """Shuffled ``(x, candidates)`` batches over every informative example."""
        dataset = self._pool()
        chosen = self.informative_indices
        trainer = getattr(self, "trainer", None)
        if not chosen and trainer is not None and trainer.should_stop:  # stopped for answers before any training
            return self._loader(_CandidateView(dataset, [], self._ensure_partial().candidates, -1), False, 1)
        if not chosen:
            raise RuntimeError(
                "train_dataloader: no example has an answer yet; ask questions (or set "
                "initial_labelled=...) before training"
            )
        view = _CandidateView(dataset, chosen, self._ensure_partial().candidates, self.label_field)
        return self._loader(view, True, self.batch_size, self._train_seed())


class ImagePartialFeedbackDataModule(PartialFeedbackDataModule):
    """:class:`PartialFeedbackDataModule` over a ready image set: scikit-learn ``digits`` (offline), or the shared
    ``fashion_mnist`` / ``cifar10`` with their default hierarchies.

    Args:
        dataset: ``"digits"``, ``"fashion_mnist"`` or ``"cifar10"``.
        tree: nested-dict hierarchy over the class names (required for ``digits``, whose classes are
            ``"0"`` ... ``"9"``); default for the shared sets: the Fashion-MNIST coarse grouping and CIFAR-10 in
            WordNet.
        train_limit: keep a seeded random subset of this many training images as the pool.
        test_limit: likewise for the test set.
        val_fraction: share of the training images held out (fully labelled) for validation.
        **kwargs: passed on to :class:`PartialFeedbackDataModule` (``batch_size``, ``partial_path``, ...).

    Example:
        >>> dm = ImagePartialFeedbackDataModule("digits", tree={"even": ["0", "2", "4", "6", "8"],
        ...                                                     "odd": ["1", "3", "5", "7", "9"]})
        >>> dm.setup("fit"); len(dm.dataset), dm.question_names[0], len(dm.question_names)
        (1294, 'even', 18)
    """

    def __init__(
        self,
        dataset: str = "digits",
        tree: dict[str, Any] | None = None,
        train_limit: int | None = None,
        test_limit: int | None = None,
        val_fraction: float = 0.1,
        **kwargs: Any,
    ) -> None:
        from trinity_lightning.active.partial_feedback.wordnet import cifar10_hierarchy, fashion_mnist_hierarchy

        if dataset not in ("digits", "fashion_mnist", "cifar10"):
            raise ValueError(f"dataset: expected 'digits', 'fashion_mnist' or 'cifar10', got {dataset!r}")
        if tree is not None:
            from trinity_lightning.data import CIFAR10_CLASSES, FASHION_MNIST_CLASSES

            names = {
                "digits": [str(d) for d in range(10)],
                "fashion_mnist": FASHION_MNIST_CLASSES,
                "cifar10": CIFAR10_CLASSES,
            }[dataset]
            hierarchy = ClassHierarchy.from_nested(tree, names)
        elif dataset == "digits":
            raise ValueError("tree: the digits dataset has no default hierarchy; pass tree={...} over '0'..'9'")
        else:
            hierarchy = cifar10_hierarchy() if dataset == "cifar10" else fashion_mnist_hierarchy()
        super().__init__(None, hierarchy, **kwargs)
        self.source, self.train_limit, self.test_limit, self.val_fraction = (
            dataset,
            train_limit,
            test_limit,
            val_fraction,
        )

    def load(self) -> tuple[Dataset, Dataset | None, Dataset | None, Dataset | None]:
        from trinity_lightning.data import ArrayDataset, DigitsDataModule, SharedImageDataModule, split_indices

        if self.source == "digits":
            train, _, test = DigitsDataModule(val_fraction=0.0, seed=self.seed).load()
        else:
            train, _, test = SharedImageDataModule(
                self.source, val_fraction=0.0, train_limit=self.train_limit, test_limit=self.test_limit, seed=self.seed
            ).load()
        assert isinstance(train, ArrayDataset)
        pool, held = split_indices(len(train), self.val_fraction, self.seed)
        features, labels = train.features, train.labels
        val = ArrayDataset(features[held], labels[held]) if len(held) else None  # type: ignore[index]
        return ArrayDataset(features[pool], labels[pool]), val, test, None  # type: ignore[index]
