"""``SignSGDStrategy``: Lightning's DDP with the majority-vote hook, registered as ``ddp_signsgd``."""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

import lightning.pytorch as pl
import torch
import torch.distributed as dist
from lightning.fabric.strategies.registry import _StrategyRegistry
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn
from torch.nn.parallel import DistributedDataParallel

from trinity_lightning.distributed.hook import SignSGDState, register_signsgd_hook
from trinity_lightning.distributed.signum import Signum

__all__ = ["CHECKPOINT_KEY", "SignSGDStrategy", "pytorch_lightning_strategy", "register_strategies"]

CHECKPOINT_KEY = "signsgd"

# the methods live in a mixin so that the same code also subclasses ``pytorch_lightning``'s DDPStrategy
if TYPE_CHECKING:
    _DDPBase = DDPStrategy
else:
    _DDPBase = object


class _SignSGDMixin(_DDPBase):
    """The signSGD methods of :class:`SignSGDStrategy`, shared by its ``pytorch_lightning`` twin."""

    strategy_name = "ddp_signsgd"

    def __init__(
        self,
        momentum: float | None = None,
        error_feedback: bool = False,
        nonfinite: Literal["abstain", "raise"] = "abstain",
        communication: Literal["auto", "alltoall", "allgather"] = "auto",
        timeout: timedelta = timedelta(minutes=10),
        vote_timeout: timedelta | None = None,
        **kwargs: Any,
    ) -> None:
        for taken in ("ddp_comm_state", "ddp_comm_hook", "ddp_comm_wrapper", "model_averaging_period"):
            if kwargs.get(taken) is not None:
                raise MisconfigurationException(
                    f"SignSGDStrategy: {taken} is set by the strategy itself; "
                    "use DDPStrategy for another communication hook"
                )
        # validate early with the same rules the hook applies
        SignSGDState(
            momentum=momentum or 0.0,
            error_feedback=error_feedback,
            nonfinite=nonfinite,
            communication=communication,
            timeout=vote_timeout if vote_timeout is not None else timeout,
        )
        super().__init__(timeout=timeout, **kwargs)
        self._signsgd_kwargs: dict[str, Any] = {
            "momentum": momentum,
            "error_feedback": error_feedback,
            "nonfinite": nonfinite,
            "communication": communication,
            "timeout": vote_timeout if vote_timeout is not None else timeout,
        }
        self.signsgd_state: SignSGDState | None = None
        self._pending_state: dict[str, Any] | None = None

    @classmethod
    def register_strategies(cls, strategy_registry: _StrategyRegistry) -> None:
        """Register ``ddp_signsgd`` (subprocess launcher), ``ddp_signsgd_spawn`` and ``ddp_signsgd_ef``."""
        entries: tuple[tuple[str, str, dict[str, Any]], ...] = (
            ("ddp_signsgd", "Signum majority vote over DDP (1-bit packed signs)", {"start_method": "popen"}),
            (
                "ddp_signsgd_spawn",
                "Signum majority vote over DDP, processes started with spawn",
                {"start_method": "spawn"},
            ),
            (
                "ddp_signsgd_ef",
                "EF-signSGD (scaled sign, error feedback) majority vote over DDP",
                {"start_method": "popen", "error_feedback": True},
            ),
        )
        for name, description, params in entries:
            if name not in strategy_registry:
                strategy_registry.register(name, cls, description=description, **params)

    def _register_ddp_hooks(self) -> None:
        if not isinstance(self.model, DistributedDataParallel):
            raise MisconfigurationException("SignSGDStrategy: the model was not wrapped in DistributedDataParallel")
        kwargs = dict(self._signsgd_kwargs)
        kwargs["momentum"] = kwargs["momentum"] or 0.0
        self.signsgd_state = register_signsgd_hook(self.model, SignSGDState(**kwargs))
        if self._pending_state is not None:
            self.signsgd_state.load_state_dict(self._pending_state)
            self._pending_state = None

    def setup(self, trainer: pl.Trainer) -> None:
        super().setup(trainer)
        if self.signsgd_state is not None and trainer.training:
            self._check_optimizers()

    def _check_optimizers(self) -> None:
        assert self.signsgd_state is not None
        wanted = self._signsgd_kwargs["momentum"]
        for optimizer in self.optimizers:
            inner = getattr(optimizer, "_optimizer", optimizer)
            groups = inner.param_groups
            if isinstance(inner, Signum):
                betas = {group["momentum"] for group in groups}
                if self.signsgd_state.error_feedback:
                    raise MisconfigurationException(
                        "SignSGDStrategy(error_feedback=True) returns scaled votes that Signum would re-sign; "
                        "use torch.optim.SGD(params, lr, momentum=0) as the optimizer"
                    )
                if betas != {0.0} and wanted is not None:
                    raise MisconfigurationException(
                        f"SignSGDStrategy(momentum={wanted}) keeps the momentum in the hook but the Signum "
                        f"optimizer has momentum {sorted(betas)}: set Signum(momentum=0) or SignSGDStrategy("
                        "momentum=None) to adopt the optimizer's"
                    )
                if wanted is None and betas != {0.0}:
                    if len(betas) > 1:
                        raise MisconfigurationException(
                            f"SignSGDStrategy: the Signum parameter groups use "
                            f"different momenta {sorted(betas)}; use one value"
                        )
                    self.signsgd_state.momentum = betas.pop()
                    for group in groups:
                        group["momentum"] = 0.0
                    rank_zero_info(
                        f"SignSGDStrategy: local momentum {self.signsgd_state.momentum} moved from "
                        "Signum into the majority-vote hook"
                    )
            elif isinstance(inner, torch.optim.SGD) and all(g["momentum"] == 0 for g in groups):
                continue
            else:
                rank_zero_warn(
                    f"SignSGDStrategy: the optimizer {type(inner).__name__} is not Signum or SGD "
                    "without momentum, so the update is not `x -= lr * vote`"
                )

    def save_checkpoint(self, checkpoint: dict[str, Any], filepath: _PATH, storage_options: Any | None = None) -> None:
        """Gather every rank's momentum/error buffers into ``checkpoint["signsgd"]`` before rank 0 saves."""
        if self.signsgd_state is not None:
            local = self.signsgd_state.state_dict()
            if dist.is_available() and dist.is_initialized() and self.world_size > 1:
                gathered: list[Any] | None = [None] * self.world_size if self.is_global_zero else None
                dist.gather_object(local, gathered, dst=0)
            else:
                gathered = [local]
            if self.is_global_zero:
                checkpoint[CHECKPOINT_KEY] = {"world_size": self.world_size, "ranks": gathered}
        super().save_checkpoint(checkpoint, filepath, storage_options=storage_options)

    def _fitting(self) -> bool:
        module = self.lightning_module
        trainer = getattr(module, "_trainer", None) if module is not None else None
        return trainer is None or getattr(trainer.state.fn, "value", trainer.state.fn) == "fit"

    def load_checkpoint(self, checkpoint_path: _PATH, weights_only: bool | None = None) -> dict[str, Any]:
        """Load the checkpoint and keep this rank's signSGD state for the hook."""
        checkpoint = super().load_checkpoint(checkpoint_path, weights_only=weights_only)
        saved = checkpoint.get(CHECKPOINT_KEY)
        if saved is None:
            if self._fitting():
                rank_zero_warn(
                    f"SignSGDStrategy: the checkpoint {checkpoint_path} holds no signSGD state (it was not saved by "
                    "SignSGDStrategy, e.g. a `ddp` run): each worker's local momentum restarts from zero"
                )
            return checkpoint
        if saved.get("world_size") != self.world_size:
            rank_zero_warn(
                f"SignSGDStrategy: the checkpoint holds signSGD state of {saved.get('world_size')} "
                f"workers but this run has {self.world_size}; local momentum restarts from zero"
            )
            return checkpoint
        state = saved["ranks"][self.global_rank]
        if self.signsgd_state is not None:
            self.signsgd_state.load_state_dict(state)
        else:
            self._pending_state = state
        return checkpoint


class SignSGDStrategy(_SignSGDMixin, DDPStrategy):
    """DDP whose gradients are replaced by the majority vote of the workers' signs (signSGD / Signum MV).

    Differences from ``DDPStrategy``:

    * the hook is registered on every device, CPU/gloo included (Lightning registers comm hooks on CUDA only);
    * each worker's momentum (and error-feedback residual) lives in the hook and is saved in the checkpoint
      under ``checkpoint["signsgd"]`` (one entry per rank), then restored on resume;
    * ``momentum=None`` takes the momentum of the model's :class:`Signum` optimizer and sets the optimizer's own
      momentum to 0 (the optimizer then applies ``x -= lr * (vote + weight_decay * x)``).

    Args:
        momentum: local momentum ``beta``; ``None`` adopts the Signum optimizer's (0 for any other optimizer).
        error_feedback: EF-signSGD with scaled sign (use ``torch.optim.SGD(momentum=0)`` as the optimizer).
        nonfinite: ``"abstain"`` or ``"raise"`` for a worker with NaN/inf gradients.
        communication: ``"auto"``, ``"alltoall"`` or ``"allgather"``.
        timeout: the process-group timeout (Lightning's ``DDPStrategy(timeout=...)``): how long start-up waits for
            every worker to join (the rendezvous) and the default of ``vote_timeout``. Keep it generous: under load
            the workers can take minutes to start.
        vote_timeout: how long each collective of the vote waits before raising
            :class:`~trinity_lightning.distributed.WorkerFailureError` (a dead or stalled worker). ``None``: the
            same as ``timeout``. Set it short to fail fast when a worker dies without slowing start-up.
        **kwargs: passed to ``DDPStrategy`` (``start_method``, ``find_unused_parameters``, ``bucket_cap_mb``...).

    Example:
        >>> import lightning.pytorch as pl
        >>> import trinity_lightning.distributed  # registers "ddp_signsgd"
        >>> pl.Trainer(strategy="ddp_signsgd", accelerator="cpu", devices=1, logger=False).strategy.__class__.__name__
        'SignSGDStrategy'
    """


_PL_STRATEGY: dict[str, type] = {}


def pytorch_lightning_strategy() -> type:
    """``SignSGDStrategy`` built on the ``pytorch_lightning`` package's ``DDPStrategy`` (for ``import
    pytorch_lightning`` users; the two packages' classes are distinct). Needs ``pytorch_lightning`` installed.

    Example:
        >>> pytorch_lightning_strategy().__name__  # doctest: +SKIP
        'SignSGDStrategy'
    """
    if "class" not in _PL_STRATEGY:
        from pytorch_lightning.strategies import DDPStrategy as PLDDPStrategy

        # named SignSGDStrategy for people, found by pickle (ddp_spawn) under its own module attribute
        _PL_STRATEGY["class"] = type(
            "SignSGDStrategy",
            (_SignSGDMixin, PLDDPStrategy),
            {"__doc__": SignSGDStrategy.__doc__, "__module__": __name__, "__qualname__": _PL_NAME},
        )
    return _PL_STRATEGY["class"]


_PL_NAME = "PytorchLightningSignSGDStrategy"


def __getattr__(name: str) -> Any:
    if name == _PL_NAME:  # built on first use, also when a spawned worker unpickles the strategy
        return pytorch_lightning_strategy()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def register_strategies() -> None:
    """Register ``ddp_signsgd``, ``ddp_signsgd_spawn`` and ``ddp_signsgd_ef`` in Lightning's ``StrategyRegistry``,
    and in ``pytorch_lightning``'s when that package is imported (idempotent).

    Example:
        >>> from lightning.pytorch.strategies import StrategyRegistry
        >>> register_strategies(); "ddp_signsgd" in StrategyRegistry
        True
    """
    from lightning.pytorch.strategies import StrategyRegistry

    SignSGDStrategy.register_strategies(StrategyRegistry)
    pl_strategies = sys.modules.get("pytorch_lightning.strategies")
    registry = getattr(pl_strategies, "StrategyRegistry", None)
    if registry is not None:
        pytorch_lightning_strategy().register_strategies(registry)  # type: ignore[attr-defined]


register_strategies()
