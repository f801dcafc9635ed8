"""Deep ensembles as one LightningModule: N members trained together (or in turns), checkpointed as one model.

:class:`Ensemble` wraps N LightningModules of the same task (usually the same class, different seeds). Their
weights and optimizers are in the one Lightning checkpoint, so a killed campaign resumes exactly. For the query
heuristics the members are the samples: ``mc_logits(batch, n)`` returns the members' logits stacked in front,
``(M, N, ...)``, the shape MC-dropout samples have, so BALD (mutual information), vote entropy and every
heuristic that reads samples works on an ensemble unchanged (the heuristic's ``n_samples`` is ignored: there are
``M`` samples); ``pool_logits(batch)`` returns the log of the members' mean probability (and the padding mask of
a tagger), for the deterministic heuristics (entropy, margin, MNLP).

Training (manual optimization, each member with its own optimizer from its own ``configure_optimizers``):

* ``mode="together"``: every batch steps every member (each on its own loss);
* ``mode="sequence"``: one member per epoch, in turns (epoch ``e`` trains member ``e % M``): the memory of one
  member's gradients at a time.

Logging: a member's ``self.log("x", ...)`` is logged as ``member<i>/x``; the ensemble logs ``train_loss`` (the
members' mean) and, when a validation batch is ``(inputs, targets)`` with class (or tag) targets, ``val_loss`` and
``val_acc`` of its averaged prediction (over real tokens for a tagger).

Example:
    >>> import torch
    >>> from torch import nn
    >>> from trinity_lightning.models import Classifier
    >>> ens = Ensemble.from_factory(lambda: Classifier(model=nn.Linear(4, 3), num_classes=3), n_members=3)
    >>> ens.mc_logits(torch.randn(5, 4), n_samples=10)[0].shape  # members in front, like MC samples
    torch.Size([3, 5, 3])
    >>> ens.pool_logits(torch.randn(5, 4)).exp().sum(-1).allclose(torch.ones(5))
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

import lightning.pytorch as pl
import torch
from torch import nn

from trinity_lightning.active.scoring import model_logits

__all__ = ["Ensemble"]

_MODES = ("together", "sequence")


class Ensemble(pl.LightningModule):
    """N LightningModules trained and queried as one (see the module docstring).

    Args:
        members: at least two LightningModules (same inputs and classes).
        mode: ``"together"`` (every batch steps every member) or ``"sequence"`` (one member per epoch, in turns).

    Raises:
        ValueError: fewer than two members (``members``), an unknown ``mode``.
    """

    def __init__(self, members: Sequence[pl.LightningModule], mode: str = "together") -> None:
        super().__init__()
        members = list(members)
        if len(members) < 2:
            raise ValueError(
                f"members: an ensemble needs at least 2 members, got {len(members)}; with one model pass the model "
                "itself (MC dropout gives BALD its samples)"
            )
        bad = [type(m).__name__ for m in members if not isinstance(m, pl.LightningModule)]
        if bad:
            raise ValueError(f"members: every member must be a LightningModule, got {bad}")
        if mode not in _MODES:
            raise ValueError(f"mode: expected one of {_MODES}, got {mode!r}")
        self.members = nn.ModuleList(members)
        self.mode = mode
        self.automatic_optimization = False
        if all(callable(getattr(m, "pool_embeddings", None)) for m in members):
            self.pool_embeddings = self._pool_embeddings  # only when every member has the hook

    @classmethod
    def from_factory(
        cls, factory: Callable[[], pl.LightningModule], n_members: int = 5, seed: int = 0, mode: str = "together"
    ) -> Ensemble:
        """``n_members`` members built by ``factory()``, member ``i`` under ``torch.manual_seed(seed + i)``.

        Example:
            >>> from trinity_lightning.models import Classifier
            >>> ens = Ensemble.from_factory(lambda: Classifier(model=nn.Linear(2, 2), num_classes=2), 2)
            >>> bool((ens.members[0].model.weight != ens.members[1].model.weight).any())
            True
        """
        if isinstance(n_members, bool) or not isinstance(n_members, int):
            raise ValueError(f"n_members: expected an integer >= 2, got {n_members!r}")
        members = []
        for i in range(n_members):
            torch.manual_seed(seed + i)
            members.append(factory())
        return cls(members, mode=mode)

    def member(self, i: int) -> pl.LightningModule:
        """Member ``i``."""
        return cast(pl.LightningModule, self.members[i])

    # ---------------------------------------------------------------------------------- outputs
    def _member_logits(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        outs = [model_logits(m, batch) for m in self.members]
        return torch.stack([o[0].float() for o in outs]), outs[0][1]

    def mc_logits(self, batch: Any, n_samples: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The members' logits ``(M, N, ...)`` (and the first member's mask): the ensemble's "MC samples"."""
        return self._member_logits(batch)

    def pool_logits(self, batch: Any) -> Any:
        """Log of the members' mean probability, ``(N, C)`` or ``(N, T, C)`` (and the mask, when members give one)."""
        logits, mask = self._member_logits(batch)
        mean = torch.logsumexp(logits.log_softmax(-1), 0) - math.log(len(logits))
        return mean if mask is None else (mean, mask)

    def _pool_embeddings(self, batch: Any) -> torch.Tensor:
        """The members' ``pool_embeddings`` concatenated along the feature axis."""
        hooks: list[Any] = [self.member(i).pool_embeddings for i in range(len(self.members))]
        return torch.cat([hook(batch).flatten(1) for hook in hooks], 1)

    def forward(self, x: Any) -> torch.Tensor:
        """Log of the members' mean probability for inputs ``x``."""
        logits = torch.stack([m(x).float() for m in self.members])
        return torch.logsumexp(logits.log_softmax(-1), 0) - math.log(len(logits))

    # ---------------------------------------------------------------------------------- training
    @contextmanager
    def _as_member(self, i: int) -> Iterator[pl.LightningModule]:
        """Run member ``i``'s step: its logs go to ``member<i>/<name>`` through this module."""
        member = self.member(i)

        def log(name: str, value: Any, *args: Any, **kwargs: Any) -> None:
            self.log(f"member{i}/{name}", value, *args, **kwargs)

        member.log = log  # type: ignore[method-assign,assignment]
        try:
            yield member
        finally:
            del member.log

    def _active(self) -> list[int]:
        if self.mode == "sequence":
            return [self.current_epoch % len(self.members)]
        return list(range(len(self.members)))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        losses = []
        for i in self._active():
            optimizer = optimizers[i]
            optimizer.zero_grad()
            with self._as_member(i) as member:
                out = member.training_step(batch, batch_idx)
            loss = out["loss"] if isinstance(out, dict) else out
            if not isinstance(loss, torch.Tensor):
                raise ValueError(
                    f"members: member {i} ({type(member).__name__}).training_step must return the loss (a tensor or "
                    f"a dict with 'loss'), got {type(loss).__name__}"
                )
            self.manual_backward(loss)
            optimizer.step()
            losses.append(loss.detach())
        mean = torch.stack(losses).mean()
        self.log("train_loss", mean, prog_bar=True)
        return mean

    def configure_optimizers(self) -> list[Any]:
        optimizers = []
        for i in range(len(self.members)):
            member = self.member(i)
            config = member.configure_optimizers()
            if isinstance(config, dict) and set(config) == {"optimizer"}:
                config = config["optimizer"]
            if not isinstance(config, torch.optim.Optimizer):
                raise ValueError(
                    f"members: member {i} ({type(member).__name__}).configure_optimizers must return one optimizer "
                    f"for an Ensemble (learning-rate schedulers are not stepped), got {type(config).__name__}"
                )
            optimizers.append(config)
        return optimizers

    # ---------------------------------------------------------------------------------- evaluation
    def _evaluate(self, batch: Any, batch_idx: int, stage: str) -> None:
        for i, member in enumerate(self.members):
            step = getattr(member, f"{stage}_step", None)
            if callable(step):
                with self._as_member(i):
                    step(batch, batch_idx)
        target = batch[1] if isinstance(batch, (tuple, list)) and len(batch) >= 2 else None
        if not isinstance(target, torch.Tensor) or target.dtype not in (torch.int64, torch.int32):
            return
        out = self.pool_logits(batch)
        log_p, mask = out if isinstance(out, tuple) else (out, None)
        if log_p.shape[:-1] != target.shape:
            return
        keep = mask.bool() if mask is not None else target >= 0
        keep = keep & (target >= 0)
        n = int(keep.sum())
        if n == 0:
            return
        loss = nn.functional.nll_loss(log_p[keep], target[keep])
        acc = (log_p[keep].argmax(-1) == target[keep]).float().mean()
        prefix = "val" if stage == "validation" else stage
        self.log(f"{prefix}_loss", loss, prog_bar=True, batch_size=n, sync_dist=True)
        self.log(f"{prefix}_acc", acc, prog_bar=True, batch_size=n, sync_dist=True)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "validation")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "test")

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        out = self.pool_logits(batch)
        return (out[0] if isinstance(out, tuple) else out).exp()

    def __repr__(self) -> str:
        return f"Ensemble({len(self.members)} x {type(self.members[0]).__name__}, mode={self.mode!r})"
