"""signSGD with majority vote: Signum, packed 1-bit votes, the DDP comm hook and the Lightning strategy.

Importing this package registers ``ddp_signsgd``, ``ddp_signsgd_spawn`` and ``ddp_signsgd_ef`` in Lightning's
``StrategyRegistry`` (see :func:`register_strategies`). Docs: ``docs/signsgd.md``.
"""

from __future__ import annotations

from lightning.pytorch.strategies import StrategyRegistry

from trinity_lightning.distributed.hook import SignSGDState, WorkerFailureError, register_signsgd_hook, signsgd_hook
from trinity_lightning.distributed.packing import majority_vote_packed, pack_signs, packed_size, unpack_signs
from trinity_lightning.distributed.signum import Signum
from trinity_lightning.distributed.strategy import SignSGDStrategy

__all__ = [
    "SignSGDState",
    "SignSGDStrategy",
    "Signum",
    "WorkerFailureError",
    "majority_vote_packed",
    "pack_signs",
    "packed_size",
    "register_signsgd_hook",
    "register_strategies",
    "signsgd_hook",
    "unpack_signs",
]


def register_strategies() -> None:
    """Register the signSGD strategies in Lightning's ``StrategyRegistry`` (idempotent)."""
    SignSGDStrategy.register_strategies(StrategyRegistry)


register_strategies()
