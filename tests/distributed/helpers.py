"""A callback the recipe/resume tests load by class_path inside the Lightning worker processes."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import torch


class DumpSignSGDState(pl.Callback):
    """Write each rank's signSGD hook state at train start and end to ``<folder>/<when>_rank<r>.pt``."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)

    def _dump(self, trainer: pl.Trainer, when: str) -> None:
        state = trainer.strategy.signsgd_state  # type: ignore[attr-defined]
        self.folder.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "state": state.state_dict(),
                "momentum": state.momentum,
                "comm_hook": trainer.strategy.model._get_ddp_logging_data().get("comm_hook"),
            },
            self.folder / f"{when}_rank{trainer.global_rank}.pt",
        )

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._dump(trainer, "start")

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._dump(trainer, "end")
