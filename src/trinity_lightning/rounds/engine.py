"""The base of the round callbacks: exact resume (RNG states per rank, the round's phase) and shared checks.

A checkpoint written by Lightning holds the model, the optimizer, the DataModule's state and each callback's
``state_dict``, but not the random number generators. :class:`RoundCallback` adds them: at every checkpoint
it gathers the Python, NumPy, torch and CUDA generator states of every rank into its own state, and on
resume it puts them back (each rank its own) just before training restarts, so dropout masks, shuffles
and MC-dropout scoring continue exactly as in an uninterrupted run.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn

from trinity_lightning.rounds.inference import gather

__all__ = ["PHASES", "RoundCallback", "capture_rng", "restore_rng"]

PHASES = ("train", "waiting", "finished")


def capture_rng() -> dict[str, Any]:
    """This process's generator states as plain types and tensors (loadable with ``weights_only=True``).

    Example:
        >>> state = capture_rng(); a = torch.rand(1); restore_rng(state); bool(torch.rand(1) == a)
        True
    """
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 - the global state itself
    version, internal, gauss = random.getstate()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    return {
        "python": [version, list(internal), gauss],
        "numpy": [
            str(kind),
            torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            int(pos),
            int(has_gauss),
            float(cached),
        ],
        "torch": torch.get_rng_state(),
        "cuda": list(cuda),
    }


def restore_rng(state: dict[str, Any]) -> None:
    """Put back what :func:`capture_rng` returned."""
    version, internal, gauss = state["python"]
    random.setstate((int(version), tuple(int(v) for v in internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), int(pos), int(has_gauss), float(cached)))  # noqa: NPY002
    torch.set_rng_state(torch.as_tensor(state["torch"], dtype=torch.uint8))
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.as_tensor(s, dtype=torch.uint8) for s in cuda])


class RoundCallback(Callback):
    """A Lightning callback whose checkpoints resume exactly (subclass it and call the two helpers).

    Subclasses add ``"rng"`` handling for free: :meth:`on_save_checkpoint` stores every rank's generator
    states in the callback's checkpoint entry, :meth:`load_rng` (call it from ``load_state_dict``) keeps them,
    and :meth:`restore_rng_states` (call it first thing in ``on_train_start``) puts them back.
    """

    def __init__(self) -> None:
        self._rng_to_restore: list[dict[str, Any]] | None = None

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        states = gather(capture_rng(), trainer)  # every rank dumps the checkpoint; rank 0 writes it
        entry = checkpoint.setdefault("callbacks", {}).setdefault(self.state_key, {})
        entry["rng"] = states

    def load_rng(self, state_dict: dict[str, Any]) -> None:
        self._rng_to_restore = state_dict.get("rng")

    def restore_rng_states(self, trainer: Any) -> None:
        states, self._rng_to_restore = self._rng_to_restore, None
        if not states:
            return
        rank = int(getattr(trainer, "global_rank", 0))
        if len(states) != int(getattr(trainer, "world_size", 1)):
            rank_zero_warn(
                f"{type(self).__name__}: the checkpoint holds the random states of {len(states)} processes, this run "
                f"has {trainer.world_size}; each rank takes rank % {len(states)} (the run will not be bit-identical)"
            )
        restore_rng(states[rank % len(states)])
