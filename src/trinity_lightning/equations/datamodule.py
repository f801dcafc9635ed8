"""EquationDataModule: generate equations (or read JSONL) and split them by depth.

Two protocols (Arabshahi et al., ICLR 2018):

- ``split="depth"``: train (and validate) on symbolic equations of ``train_depths``, test on ``test_depths``
  (depth extrapolation: train 1-3, test 4);
- ``split="random"``: every depth in ``train_depths`` split at random into train / validation / test.

Function evaluations (``sin(2.5) = 0.6``) join the training and validation sets only when ``functions > 0`` (or
the JSONL file holds some); test sets hold symbolic equations. Batches are lists of
:class:`~.grammar.Equation`; :class:`~.module.EquationVerifier` collates them.

Example:
    >>> dm = EquationDataModule(per_depth=20, functions=10, max_depth=3, train_depths=[1, 2], test_depths=[3])
    >>> dm.setup("fit")
    >>> len(dm.train), len(dm.test), sorted({e.depth for e in dm.test})
    (45, 20, [3])
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import numpy as np
from torch.utils.data import DataLoader

from trinity_lightning.equations.generator import EquationGenerator, read_jsonl, write_jsonl
from trinity_lightning.equations.grammar import Equation

__all__ = ["EquationDataModule"]


def _as_list(batch: list[Equation]) -> list[Equation]:
    return batch


class EquationDataModule(pl.LightningDataModule):
    """Equations for :class:`~.module.EquationVerifier`.

    Args:
        path: a JSONL file (:func:`~.generator.read_jsonl`); ``None`` generates with :class:`EquationGenerator`.
        per_depth: symbolic equations per depth when generating (half true).
        functions: function evaluations when generating (half true); ``0`` for symbolic data only.
        max_depth: deepest equation generated.
        split: ``"depth"`` or ``"random"`` (see the module docstring).
        train_depths: depths to train on (and, for ``"random"``, to test on).
        test_depths: depths to test on with ``split="depth"``.
        val_fraction, test_fraction: held-out fractions (``test_fraction`` only for ``"random"``).
        batch_size: equations per batch.
        seed: generator and split seed.
        save_to: write the generated equations to this JSONL file.
    """

    def __init__(
        self,
        path: str | None = None,
        per_depth: int = 1000,
        functions: int = 2000,
        max_depth: int = 4,
        split: Literal["depth", "random"] = "depth",
        train_depths: Sequence[int] = (1, 2, 3),
        test_depths: Sequence[int] = (4,),
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        batch_size: int = 64,
        seed: int = 0,
        save_to: str | None = None,
    ) -> None:
        super().__init__()
        if split not in ("depth", "random"):
            raise ValueError(f"EquationDataModule: split={split!r}; expected 'depth' or 'random'")
        if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1:
            raise ValueError("EquationDataModule: val_fraction and test_fraction must lie in [0, 1)")
        self.save_hyperparameters()
        self.train: list[Equation] = []
        self.val: list[Equation] = []
        self.test: list[Equation] = []
        self.report: dict[str, int] = {}

    def equations(self) -> list[Equation]:
        """All equations: read from ``path`` or generated (deterministic for ``seed``)."""
        hp = self.hparams
        if hp["path"] is not None:
            return read_jsonl(hp["path"])
        depths = sorted({*hp["train_depths"], *hp["test_depths"], *range(1, hp["max_depth"] + 1)})
        gen = EquationGenerator(seed=hp["seed"], max_depth=max(depths))
        eqs = gen.generate(per_depth=dict.fromkeys(depths, hp["per_depth"]), functions=hp["functions"])
        self.report = dict(gen.report)
        if hp["save_to"]:
            write_jsonl(eqs, Path(hp["save_to"]))
        return eqs

    def setup(self, stage: str | None = None) -> None:
        if self.train:
            return
        hp = self.hparams
        eqs = self.equations()
        rng = np.random.default_rng(hp["seed"] + 1)
        train_depths, test_depths = set(hp["train_depths"]), set(hp["test_depths"])
        functions = [e for e in eqs if e.kind == "function"]
        symbolic = [e for e in eqs if e.kind == "symbolic"]
        inside = [e for e in symbolic if e.depth in train_depths]
        order = rng.permutation(len(inside))
        inside = [inside[int(i)] for i in order]
        if hp["split"] == "random":
            n_test = round(hp["test_fraction"] * len(inside))
            self.test, inside = inside[:n_test], inside[n_test:]
        else:
            self.test = [e for e in symbolic if e.depth in test_depths and e.depth not in train_depths]
        n_val = round(hp["val_fraction"] * len(inside))
        n_val_f = round(hp["val_fraction"] * len(functions))
        self.val = inside[:n_val] + functions[:n_val_f]
        self.train = inside[n_val:] + functions[n_val_f:]
        if not self.train:
            raise ValueError(
                f"EquationDataModule: no training equations of depths {sorted(train_depths)} "
                f"(generate more with per_depth, or check the JSONL file's depths)"
            )

    def _loader(self, data: list[Equation], shuffle: bool) -> DataLoader[Any]:
        return DataLoader(data, batch_size=self.hparams["batch_size"], shuffle=shuffle, collate_fn=_as_list)  # type: ignore[arg-type]

    def train_dataloader(self) -> DataLoader[Any]:
        return self._loader(self.train, shuffle=True)

    def val_dataloader(self) -> DataLoader[Any]:
        return self._loader(self.val or self.train[:1], shuffle=False)

    def test_dataloader(self) -> DataLoader[Any]:
        return self._loader(self.test, shuffle=False)

    def predict_dataloader(self) -> DataLoader[Any]:
        return self._loader(self.test, shuffle=False)
