"""The benchmarks' one train/evaluate harness: training goes through a Lightning ``Trainer``, evaluation through
:func:`predict` / :func:`accuracy`, so a benchmark measures the library's components, not a loop of its own.

- :func:`trainer`: a ``pl.Trainer`` without logger, checkpoints, progress bar, model summary or sanity check.
- :class:`FixedSteps` / :func:`step_loader`: ``steps`` random batches drawn with replacement from a seeded
  generator (a step budget that does not grow with the labelled set, as an active-learning round needs).
- :class:`Supervised`: any ``nn.Module`` + loss + optimizer (+ per-step learning-rate factor, + batch
  augmentation) as a ``LightningModule``; logs ``train_loss`` and, with a validation loader, ``val_acc``.
- :func:`predict` (softmax probabilities) and :func:`accuracy`: eval mode, no gradient, mode restored.

Example::

    import torch
    from _harness import Supervised, accuracy, step_loader, trainer

    data = torch.utils.data.TensorDataset(torch.randn(64, 3), torch.randint(0, 2, (64,)))
    module = Supervised(torch.nn.Linear(3, 2), lambda params: torch.optim.SGD(params, lr=0.1))
    trainer(max_steps=20).fit(module, step_loader(data, steps=20, batch_size=16, seed=0))
    accuracy(module.net, *data.tensors)
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

__all__ = ["FixedSteps", "Supervised", "accuracy", "predict", "quiet", "step_loader", "trainer"]

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]


def quiet() -> None:
    """Keep benchmark logs to the figures: no Lightning info lines, no warnings."""
    warnings.filterwarnings("ignore")
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)


def trainer(**overrides: Any) -> pl.Trainer:
    """A ``pl.Trainer`` for benchmarks: no logger, checkpointing, progress bar, model summary or sanity check.

    Every keyword goes to ``pl.Trainer`` and wins over these defaults (``max_steps``, ``strategy``, ``callbacks``,
    ``accelerator`` ...).
    """
    kwargs: dict[str, Any] = {
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
    }
    kwargs.update(overrides)
    return pl.Trainer(**kwargs)


class FixedSteps(Sampler[list[int]]):
    """``steps`` batches of ``min(batch_size, n)`` indices drawn with replacement (``torch.randint``).

    The generator is seeded with ``seed`` (an int, or a callable read when iteration starts, so that a loader
    built before a round can take the round's seed).
    """

    def __init__(self, n: int, steps: int, batch_size: int, seed: int | Callable[[], int]) -> None:
        if n < 1 or steps < 1 or batch_size < 1:
            raise ValueError(f"FixedSteps: n, steps and batch_size must be positive, got {n}, {steps}, {batch_size}")
        self.n, self.steps, self.batch_size, self.seed = n, steps, batch_size, seed

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[int]]:
        seed = self.seed() if callable(self.seed) else self.seed
        generator = torch.Generator().manual_seed(int(seed))
        for _ in range(self.steps):
            yield torch.randint(0, self.n, (min(self.batch_size, self.n),), generator=generator).tolist()


def step_loader(
    dataset: Dataset,
    steps: int,
    batch_size: int,
    seed: int | Callable[[], int],
    collate_fn: Callable[[list[Any]], Any] | None = None,
) -> DataLoader:
    """A loader of ``steps`` random batches (with replacement) over ``dataset``; see :class:`FixedSteps`."""
    sampler = FixedSteps(len(dataset), steps, batch_size, seed)  # type: ignore[arg-type]
    # a generator of its own: the loader's worker seed is not drawn from torch's global RNG (dropout's)
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_fn, generator=torch.Generator())


class Supervised(pl.LightningModule):
    """``net`` trained on ``(x, y)`` batches with ``loss`` and the optimizer ``optimizer(params)`` builds.

    Args:
        net: the model; ``self.net``.
        optimizer: ``params -> torch.optim.Optimizer``.
        loss: ``(logits, y) -> loss`` (default cross-entropy).
        lr_factor: ``step -> factor`` of the base learning rate, applied before every optimizer step (a
            ``LambdaLR`` stepped per batch), e.g. a cosine decay.
        augment: ``x -> x`` applied to every training batch.

    ``val_acc`` (fraction correct over the validation epoch) is logged and appended to :attr:`val_curve`.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = nn.functional.cross_entropy,
        lr_factor: Callable[[int], float] | None = None,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        self.net, self.make_optimizer, self.loss = net, optimizer, loss
        self.lr_factor, self.augment = lr_factor, augment
        self.val_curve: list[float] = []
        self._correct = self._seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # type: ignore[no-any-return]

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch[0], batch[1]
        if self.augment is not None:
            x = self.augment(x)
        loss = self.loss(self(x), y)
        self.log("train_loss", loss, prog_bar=False)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._correct = self._seen = 0

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch[0], batch[1]
        self._correct += int((self(x).argmax(-1) == y).sum())
        self._seen += len(y)

    def on_validation_epoch_end(self) -> None:
        value = self._correct / max(1, self._seen)
        self.val_curve.append(value)
        self.log("val_acc", value)

    def configure_optimizers(self) -> Any:
        optimizer = self.make_optimizer(self.parameters())
        if self.lr_factor is None:
            return optimizer
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, self.lr_factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 8192) -> torch.Tensor:
    """``(N, C)`` softmax probabilities of ``model`` on ``x`` (on the CPU), in eval mode, training mode restored.

    Each batch goes to the model's device first: after ``Trainer.fit`` on a GPU, Lightning hands the model back on
    the CPU while data kept on the GPU stays there (the 2026-12-04 device run of tensor_compression failed on it).
    """
    was_training = model.training
    device = next((p.device for p in model.parameters()), x.device)
    model.eval()
    try:
        with torch.no_grad():
            return torch.cat(
                [
                    model(x[s : s + batch_size].to(device)).float().softmax(-1).cpu()
                    for s in range(0, len(x), batch_size)
                ]
            )
    finally:
        model.train(was_training)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 8192) -> float:
    """Fraction of ``x`` whose argmax prediction equals ``y``."""
    return int((predict(model, x, batch_size).argmax(-1) == y.cpu()).sum()) / max(1, len(y))
