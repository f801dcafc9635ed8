"""The ``Tensorize`` callback: tensorize a LightningModule at fit start or at a chosen epoch, then fine-tune."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info

from trinity_lightning.tensor._backend import import_tltorch
from trinity_lightning.tensor.checkpoint import mark_for_plain_reload, tensorized_checkpoints
from trinity_lightning.tensor.layers import TENSORIZED_LAYERS
from trinity_lightning.tensor.ranks import Rank
from trinity_lightning.tensor.regularization import (
    LASSO_KEY,
    UNSUPPORTED_CP,
    RankLasso,
    fold_lasso_state,
    fold_rank_lasso,
)
from trinity_lightning.tensor.selection import check_arguments, plan_tensorize
from trinity_lightning.tensor.tensorize import (
    SPEC_KEY,
    TensorizeReport,
    apply_tensorized_spec,
    detensorize,
    tensorize,
    tensorized_spec,
)


class _RestoreThenLoad:
    """Wraps ``LightningModule.on_load_checkpoint``: rebuild the tensorized structure before the weights load.

    Lightning calls the module's ``on_load_checkpoint`` right before ``load_state_dict`` (and before callbacks see
    the checkpoint), so this is the one place where a fresh dense model can take the factorized layers' shape.
    A checkpoint without tensorized layers (saved before tensorization, e.g. the best epoch of the dense phase
    tested with ``ckpt_path="best"``) turns the factorized layers back into dense ones so it loads; during ``fit``
    the callback then tensorizes the loaded weights again at its epoch.
    """

    def __init__(self, callback: Tensorize, pl_module: pl.LightningModule, original: Any) -> None:
        self.callback, self.pl_module, self.original = callback, pl_module, original

    def __call__(self, checkpoint: dict[str, Any]) -> None:
        spec = checkpoint.get(SPEC_KEY)
        if spec:
            apply_tensorized_spec(self.pl_module, spec, replace=True)
            self.callback._mark_done(self.pl_module)
        elif any(isinstance(m, TENSORIZED_LAYERS) for m in self.pl_module.modules()):
            detensorize(self.pl_module, heads=False)
            self.callback.done = False
        state = checkpoint.get("state_dict")
        if isinstance(state, dict):
            self._match_lasso(state)
        self.original(checkpoint)

    def _match_lasso(self, state: dict[str, Any]) -> None:
        """A checkpoint saved with(out) rank regularization loaded under a callback without (with) it."""
        marker = f".{LASSO_KEY}."
        saved = any(marker in key for key in state)
        wanted = {k: v for k, v in self.pl_module.state_dict().items() if marker in k}
        if saved == bool(wanted):
            return
        trainer = self.pl_module._trainer
        if trainer is not None and trainer.state.fn == TrainerFn.FITTING:
            # the optimizer state would not match the parameters (the lasso weights are parameters)
            raise ValueError(
                "rank_regularization: this checkpoint was saved "
                + ("with" if saved else "without")
                + " rank regularization (lasso weights) but the Tensorize callback now has rank_regularization="
                f"{self.callback.rank_regularization}; resume with the setting it was saved with, or load its "
                "weights with load_tensorized(model, ckpt) and start a new fit"
            )
        if saved:  # e.g. trainer.test(ckpt_path=...) without rank_regularization: fold the lasso into the factors
            state.update(fold_lasso_state(state)[0])
            for key in [k for k in state if marker in k]:
                del state[key]
        else:  # the lasso starts at ones: the identity
            for key, value in wanted.items():
                state.setdefault(key, value)


class _AddRankPenalty:
    """Wraps ``LightningModule.training_step``: the rank penalty of this step's forward passes joins the loss.

    Adding it to the returned loss (rather than a second ``backward`` in a hook) lets Lightning scale it like the
    loss: gradient accumulation, AMP loss scaling, and the logged ``train_loss``-style values stay consistent.
    """

    def __init__(self, callback: Tensorize, pl_module: pl.LightningModule, original: Any) -> None:
        self.callback, self.pl_module, self.original = callback, pl_module, original
        self.__wrapped__ = original  # Lightning's is_overridden("training_step") looks through it

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        lasso = self.callback.lasso
        if lasso is None:
            return self.original(*args, **kwargs)
        lasso.reset()
        out = self.original(*args, **kwargs)
        penalty = lasso.penalty()
        self.pl_module.log("tensorize/rank_penalty", penalty.detach())
        if isinstance(out, torch.Tensor):
            return out + penalty
        if isinstance(out, Mapping) and "loss" in out:
            return {**out, "loss": out["loss"] + penalty}
        return out  # None: Lightning skips the step


class Tensorize(Callback):
    """Replace the model's ``nn.Linear`` / ``nn.Conv*d`` layers by factorized ones (see :func:`tensorize`).

    With ``epoch=0`` the model is tensorized in ``setup`` (before the optimizer exists: train a dense model, load
    its weights, then fine-tune the factorized one). With ``epoch=k > 0`` it trains dense for ``k`` epochs, then
    tensorizes at the start of epoch ``k`` and rebuilds the optimizers through ``configure_optimizers``, keeping the
    optimizer state of the parameters that did not change, the current learning rates and the LR-scheduler state.

    Every argument is checked when the callback is built (``ValueError`` naming it), and the selected layers and
    their ranks against the model at ``setup``, so nothing fails epochs into a run.

    Checkpoints saved after tensorization carry the layer specs under ``"trinity_tensorized"``; a fresh (dense)
    model resumes from them with ``trainer.fit(model, ckpt_path=...)`` when this callback is present, or loads
    them with :func:`~trinity_lightning.tensor.load_tensorized` (``load_tensorized(MyModel, "last.ckpt")``, in any
    process). The callback also decorates the module's class with
    :func:`~trinity_lightning.tensor.tensorized_checkpoints`, so in the process that trained it
    ``MyModel.load_from_checkpoint("last.ckpt")`` works as well. A checkpoint from before tensorization (dense
    weights) also loads under this callback: the layers go back to dense, and ``fit`` tensorizes the loaded
    weights at the callback's epoch (the first epoch run, if that epoch has passed).

    Args:
        factorization: ``"cp"``, ``"tucker"`` or ``"tt"``.
        rank: per-layer rank (fraction of dense parameters, ``"full"`` or explicit).
        epoch: epoch at whose start to tensorize (0: at fit start).
        include: layer names/patterns/types to tensorize (names relative to the LightningModule, e.g.
            ``"model.features.*"``); default all.
        exclude: names/patterns/types to keep dense.
        implementation: ``"auto"`` (factorized convolutions, reconstructed linear layers), ``"factorized"`` or
            ``"reconstructed"``.
        min_params: keep layers with fewer weight parameters dense.
        tensor_dropout: probability of tltorch's tensor dropout on the factorized convolution kernels during
            training (drops CP components / Tucker core slices / TT ranks; 0 disables).
        rank_regularization: weight of tltorch's tensor lasso (rank regularization, see
            :class:`~trinity_lightning.tensor.regularization.RankLasso`; 0 disables): every factorized weight gets
            one learnable weight per rank component, and ``rank_regularization x mean |lasso weight|`` (exactly
            ``rank_regularization`` at the start) is added to each training step's loss and logged as
            ``tensorize/rank_penalty``. At the end of ``fit`` the lasso weights are folded into the factors and
            :attr:`effective_ranks` counts the components still on. Tucker (all layers) and TT (convolutions) only:
            ``ValueError`` for CP, and for TT linear layers (exclude them). Needs automatic optimization.
        skip_unsupported: leave layers that cannot be factorized (grouped/depthwise convolutions, ...) dense and
            list them in the report, instead of raising.
        verbose: print the tensorization report.
        progress: while tensorizing, print on stderr when each layer starts and is done (global rank 0 only).

    Example:
        >>> import lightning.pytorch as pl
        >>> from trinity_lightning.data import DigitsDataModule
        >>> from trinity_lightning.models import Classifier
        >>> model = Classifier(in_channels=1, image_size=8, channels=(8,))
        >>> callback = Tensorize("tucker", rank=0.5, epoch=1, verbose=False)
        >>> trainer = pl.Trainer(max_epochs=2, callbacks=[callback], logger=False, enable_checkpointing=False,
        ...                      enable_progress_bar=False, enable_model_summary=False, limit_train_batches=2,
        ...                      limit_val_batches=1)
        >>> trainer.fit(model, DigitsDataModule(batch_size=32))
        >>> type(model.model.features[0]).__name__, callback.report.params_after < callback.report.params_before
        ('TensorizedConv', True)

        With rank regularization (tltorch's tensor lasso; the penalty joins the loss, logged as
        ``tensorize/rank_penalty``), the rank components still on after ``fit`` are in ``effective_ranks``:

        >>> callback = Tensorize("tucker", rank=0.5, rank_regularization=0.01, verbose=False)
        >>> trainer = pl.Trainer(max_epochs=1, callbacks=[callback], logger=False, enable_checkpointing=False,
        ...                      enable_progress_bar=False, enable_model_summary=False, limit_train_batches=2,
        ...                      limit_val_batches=1)
        >>> trainer.fit(Classifier(in_channels=1, image_size=8, channels=(8,)), DigitsDataModule(batch_size=32))
        >>> callback.effective_ranks["model.features.0"]
        (1, 1, 3, 3)
        >>> round(float(trainer.callback_metrics["tensorize/rank_penalty"]), 3)  # 0.01 x mean |lasso weight|, last step
        0.01
    """

    def __init__(
        self,
        factorization: str = "tucker",
        rank: Rank = 0.25,
        epoch: int = 0,
        include: Sequence[str | type] | None = None,
        exclude: Sequence[str | type] = (),
        implementation: str = "auto",
        min_params: int = 0,
        tensor_dropout: float = 0.0,
        rank_regularization: float = 0.0,
        verbose: bool = True,
        skip_unsupported: bool = False,
        progress: bool = True,
    ) -> None:
        args = check_arguments(
            factorization, rank, include, exclude, implementation, min_params, skip_unsupported, progress
        )
        self.factorization: str = args["factorization"]
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch: expected an int >= 0, got {epoch!r}")
        if not isinstance(tensor_dropout, (int, float)) or not 0.0 <= tensor_dropout < 1.0:
            raise ValueError(f"tensor_dropout: expected a probability in [0, 1), got {tensor_dropout!r}")
        if not (isinstance(rank_regularization, (int, float)) and math.isfinite(rank_regularization)) or not (
            rank_regularization >= 0
        ):
            raise ValueError(f"rank_regularization: expected a finite penalty >= 0, got {rank_regularization!r}")
        if not isinstance(verbose, bool):
            raise ValueError(f"verbose: expected True or False, got {verbose!r}")
        if rank_regularization > 0 and self.factorization == "cp":
            raise ValueError(
                f"rank_regularization: not available with factorization='cp': {UNSUPPORTED_CP}. Use "
                "factorization='tucker' or 'tt', or rank_regularization=0"
            )
        self.rank: Rank = args["rank"]
        self.epoch = epoch
        self.include: list[str | type] | None = args["include"]
        self.exclude: list[str | type] = args["exclude"]
        self.implementation: str = args["implementation"]
        self.min_params: int = args["min_params"]
        self.skip_unsupported: bool = args["skip_unsupported"]
        self.progress: bool = args["progress"]
        self.tensor_dropout = float(tensor_dropout)
        self.rank_regularization = float(rank_regularization)
        self.verbose = verbose
        self.done = False
        self.tensorized_at: int | None = None
        self.report: TensorizeReport | None = None
        self.lasso: RankLasso | None = None  # a RankLasso once rank_regularization > 0 and the model is tensorized
        self.effective_ranks: dict[str, tuple[int, ...]] = {}
        """After ``fit`` with ``rank_regularization``: per layer, the rank components whose lasso weight is not 0."""

    @property
    def state_key(self) -> str:
        return self._generate_state_key(factorization=self.factorization, rank=self.rank, epoch=self.epoch)

    # -- structure -------------------------------------------------------------------------------------------
    def _mark_done(self, pl_module: pl.LightningModule) -> None:
        self.done = True
        self._apply_lasso(pl_module)  # before dropout: its hook must see the full-rank factors
        self._apply_dropout(pl_module)

    def _apply_lasso(self, pl_module: pl.LightningModule) -> None:
        if self.rank_regularization <= 0:
            return
        if self.lasso is None:
            self.lasso = RankLasso(self.rank_regularization)
        self.lasso.attach(pl_module, argument="rank_regularization")

    def _check_selection(self, pl_module: pl.LightningModule) -> None:
        """Fail at setup, not at the tensorization epoch: unsupported layers, ranks, TT linear layers with a lasso."""
        if self.done:
            return
        plan, _ = plan_tensorize(
            pl_module,
            self.factorization,
            self.rank,
            self.include,
            self.exclude,
            self.min_params,
            self.skip_unsupported,
        )
        if self.rank_regularization <= 0 or self.factorization != "tt":
            return
        linears = [name for name, module, _ in plan if isinstance(module, torch.nn.Linear)]
        if linears:
            raise ValueError(
                f"rank_regularization: with factorization='tt' the linear layers {linears} would become block "
                "tensor-train matrices, for which tltorch 0.5 has no tensor lasso. Pass exclude=[torch.nn.Linear] "
                f"(or exclude={linears}) to keep them dense, use factorization='tucker', or rank_regularization=0"
            )

    def _apply_dropout(self, pl_module: pl.LightningModule) -> None:
        if self.tensor_dropout <= 0:
            return
        tltorch = import_tltorch()
        # tltorch registers its dropout per factorized-tensor class name: CP/Tucker/TT tensors (our convolutions);
        # the tensorized matrices of TensorizedLinear have no dropout there and are left as they are.
        TensorDropout = tltorch.tensor_hooks._tensor_dropout.TensorDropout
        supported = TensorDropout._factorizations
        for module in pl_module.modules():
            if (
                isinstance(module, TENSORIZED_LAYERS)
                and type(module.weight).__name__ in supported
                and not any(isinstance(h, TensorDropout) for h in module.weight._forward_hooks.values())
            ):
                tltorch.tensor_dropout(module.weight, p=self.tensor_dropout)

    def _tensorize(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.report = tensorize(
            pl_module,
            self.factorization,
            self.rank,
            include=self.include,
            exclude=self.exclude,
            implementation=self.implementation,
            min_params=self.min_params,
            skip_unsupported=self.skip_unsupported,
            progress=self.progress and trainer.is_global_zero,
        )
        self.tensorized_at = trainer.current_epoch
        self._mark_done(pl_module)
        if self.verbose:
            rank_zero_info(str(self.report))

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.epoch > 0 and stage == "fit" and trainer.world_size > 1:
            raise ValueError(
                f"Tensorize(epoch={self.epoch}) with {trainer.world_size} processes: tensorizing "
                "mid-training would leave the distributed wrapper holding the old parameters; use "
                "epoch=0 (tensorize at fit start) for multi-process training"
            )
        if stage == "fit" and (self.epoch > 0 or self.rank_regularization > 0):
            self._check_selection(pl_module)  # (epoch 0 without a lasso: tensorize checks it right below)
        if self.rank_regularization > 0 and stage == "fit":
            if not pl_module.automatic_optimization:
                raise ValueError(
                    "rank_regularization: needs automatic optimization (the penalty is added to the loss "
                    "training_step returns); with manual optimization use RankLasso from "
                    "trinity_lightning.tensor.regularization and add its penalty() to your loss"
                )
            if not isinstance(pl_module.training_step, _AddRankPenalty):
                pl_module.training_step = _AddRankPenalty(self, pl_module, pl_module.training_step)  # type: ignore[method-assign]
        tensorized_checkpoints(type(pl_module))  # MyModel.load_from_checkpoint rebuilds the structure
        if not isinstance(pl_module.on_load_checkpoint, _RestoreThenLoad):
            pl_module.on_load_checkpoint = _RestoreThenLoad(self, pl_module, pl_module.on_load_checkpoint)  # type: ignore[method-assign]
        if any(isinstance(m, TENSORIZED_LAYERS) for m in pl_module.modules()):
            self._mark_done(pl_module)  # also (re)attaches the lasso / dropout to an already tensorized model
        if stage == "fit" and self.epoch == 0 and not self.done:
            self._tensorize(trainer, pl_module)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        hook = pl_module.__dict__.get("on_load_checkpoint")
        if isinstance(hook, _RestoreThenLoad):
            del pl_module.on_load_checkpoint
        if isinstance(pl_module.__dict__.get("training_step"), _AddRankPenalty):
            del pl_module.training_step
        if self.lasso is not None:
            # the trained model computes the same function without hooks: export, detensorize and a plain
            # load_state_dict of the final weights see the regularized factors
            self.effective_ranks = fold_rank_lasso(pl_module)
            if self.report is not None:
                self.report.effective_ranks = dict(self.effective_ranks)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.done or trainer.current_epoch < self.epoch:
            return
        optimizers = list(trainer.optimizers)
        scheduler_states = [config.scheduler.state_dict() for config in trainer.lr_scheduler_configs]
        self._tensorize(trainer, pl_module)
        self._rebuild_optimizers(trainer, optimizers, scheduler_states)
        report = self.report
        if report is not None:
            pl_module.log("tensorize/params_ratio", report.model_params_before / max(1, report.model_params_after))

    @staticmethod
    def _rebuild_optimizers(
        trainer: pl.Trainer, old: list[torch.optim.Optimizer], scheduler_states: list[dict[str, Any]]
    ) -> None:
        trainer.strategy.setup_optimizers(trainer)
        for old_opt, new_opt in zip(old, trainer.optimizers):
            for old_group, new_group in zip(old_opt.param_groups, new_opt.param_groups):
                for key, value in old_group.items():
                    if key != "params" and key in new_group and isinstance(value, (int, float)):
                        new_group[key] = value  # current (scheduled) learning rate, momentum, ...
            for group in new_opt.param_groups:
                for param in group["params"]:
                    if param in old_opt.state:
                        new_opt.state[param] = old_opt.state[param]
        for config, state in zip(trainer.lr_scheduler_configs, scheduler_states):
            config.scheduler.load_state_dict(state)

    # -- checkpoints -----------------------------------------------------------------------------------------
    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        spec = tensorized_spec(pl_module)
        if spec:
            checkpoint[SPEC_KEY] = spec
            mark_for_plain_reload(checkpoint, pl_module)  # MyModel.load_from_checkpoint works in any process

    def state_dict(self) -> dict[str, Any]:
        return {"done": self.done, "tensorized_at": self.tensorized_at}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.done = bool(state_dict.get("done", self.done)) or self.done
        self.tensorized_at = state_dict.get("tensorized_at", self.tensorized_at)
