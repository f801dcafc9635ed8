"""signSGD with majority vote: Signum, packed 1-bit votes, the DDP comm hook and the Lightning strategy.

The strategy names ``ddp_signsgd``, ``ddp_signsgd_spawn`` and ``ddp_signsgd_ef`` are registered in Lightning's
``StrategyRegistry`` (and ``pytorch_lightning``'s) whatever the import order: ``import trinity_lightning`` installs
a hook that registers them as soon as Lightning is imported (see :func:`register_strategies`). Docs:
``docs/signsgd.md``.
"""

from __future__ import annotations

from trinity_lightning.distributed.hook import SignSGDState, WorkerFailureError, register_signsgd_hook, signsgd_hook
from trinity_lightning.distributed.packing import majority_vote_packed, pack_signs, packed_size, unpack_signs
from trinity_lightning.distributed.signum import Signum
from trinity_lightning.distributed.strategy import SignSGDStrategy, register_strategies

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
