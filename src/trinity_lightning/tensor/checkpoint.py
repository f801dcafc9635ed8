"""Loading checkpoints saved after tensorization into a freshly built (dense) model.

A checkpoint written under the ``Tensorize`` callback holds factorized weights (``<layer>.weight.core``,
``...factors.factor_0``) and, under :data:`~trinity_lightning.tensor.tensorize.SPEC_KEY`, the structure that
produced them. A freshly built model has dense layers, so the structure has to be rebuilt before the weights load:

- :func:`load_tensorized` does it for a model instance, or for a LightningModule class the way
  ``MyModel.load_from_checkpoint`` does (hyper-parameters restored, ``on_load_checkpoint`` called);
- :func:`tensorized_checkpoints` (a class decorator) makes ``MyModel.load_from_checkpoint`` itself do it. The
  ``Tensorize`` callback applies it to the class of the module it tensorizes, so in the process that trained the
  model the standard reload works as is.
- In any other process, the plain ``MyModel.load_from_checkpoint`` works too once ``trinity_lightning`` is
  imported: the ``Tensorize`` callback names one of :data:`TENSORIZED_INSTANTIATORS` as the checkpoint's
  ``hyper_parameters["_instantiator"]`` (Lightning's own hook for building the module, the one ``LightningCLI``
  uses), and ``import trinity_lightning`` adds those paths to Lightning's allowlist of trusted instantiators. The
  instantiator builds the module as usual (through LightningCLI's instantiator where the checkpoint had it), and
  rebuilds the factorized layers before the weights load. Without ``trinity_lightning`` imported, Lightning stops
  with an error naming ``trinity_lightning.tensor.checkpoint.load_tensorized_module``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar, overload

import torch
from torch import nn

from trinity_lightning._registration import TENSORIZED_INSTANTIATORS
from trinity_lightning.tensor.regularization import LASSO_KEY, fold_lasso_state
from trinity_lightning.tensor.tensorize import SPEC_KEY, apply_tensorized_spec

_Module = TypeVar("_Module", bound=nn.Module)
_RESTORES = "__trinity_restores_tensorized__"
_HPARAMS = "hyper_parameters"  # LightningModule.CHECKPOINT_HYPER_PARAMS_KEY
_INSTANTIATOR = "_instantiator"  # the hyper-parameter Lightning reads its instantiator's import path from


def restore_tensorized(module: nn.Module, checkpoint: dict[str, Any]) -> list[str]:
    """Give ``module`` the factorized structure ``checkpoint`` was saved with, so its state dict loads.

    Call it right before ``load_state_dict`` (e.g. first thing in ``on_load_checkpoint``). Layers tensorized
    differently are rebuilt; a checkpoint without a spec changes nothing. When ``module`` has no rank-regularization
    lasso, lasso weights in ``checkpoint["state_dict"]`` are folded into the factors (in place), so the loaded model
    computes what the trained one did. Returns the layer names rebuilt.

    Example:
        >>> from trinity_lightning.tensor import tensorize, tensorized_spec
        >>> net = nn.Sequential(nn.Linear(16, 8))
        >>> _ = tensorize(net, "tucker", rank=0.5)
        >>> checkpoint = {"state_dict": net.state_dict(), SPEC_KEY: tensorized_spec(net)}
        >>> fresh = nn.Sequential(nn.Linear(16, 8))
        >>> restore_tensorized(fresh, checkpoint)
        ['0']
        >>> fresh.load_state_dict(checkpoint["state_dict"])
        <All keys matched successfully>
    """
    spec = checkpoint.get(SPEC_KEY)
    rebuilt = apply_tensorized_spec(module, spec, replace=True) if spec else []
    state = checkpoint.get("state_dict")
    if isinstance(state, dict) and not any(hasattr(m, LASSO_KEY) for m in module.modules()):
        folded, layers = fold_lasso_state(state)  # lasso weights of a rank-regularized run go into the factors
        if layers:
            state.clear()
            state.update(folded)
    return rebuilt


def tensorized_checkpoints(cls: type[_Module]) -> type[_Module]:
    """Class decorator: ``cls.load_from_checkpoint`` (and any ``on_load_checkpoint`` call) rebuilds tensorized layers.

    Wraps ``cls.on_load_checkpoint`` so :func:`restore_tensorized` runs first; the class's own hook still runs.
    Returns ``cls`` (changed in place). Idempotent. The ``Tensorize`` callback applies it to the trained module's
    class; decorate the class yourself to reload in another process (or use :func:`load_tensorized`).

    Example:
        >>> import lightning.pytorch as pl
        >>> @tensorized_checkpoints
        ... class Net(pl.LightningModule):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.body = nn.Linear(16, 8)
        >>> getattr(Net.on_load_checkpoint, "__trinity_restores_tensorized__")
        True
    """
    original = cls.on_load_checkpoint  # type: ignore[attr-defined]
    if getattr(original, _RESTORES, False):
        return cls

    @functools.wraps(original)
    def on_load_checkpoint(self: nn.Module, checkpoint: dict[str, Any]) -> None:
        restore_tensorized(self, checkpoint)
        original(self, checkpoint)

    setattr(on_load_checkpoint, _RESTORES, True)
    cls.on_load_checkpoint = on_load_checkpoint  # type: ignore[attr-defined]
    return cls


@overload
def load_tensorized(model: type[_Module], checkpoint: str | Path, strict: bool = True, **kwargs: Any) -> _Module: ...


@overload
def load_tensorized(
    model: _Module, checkpoint: str | Path | Mapping[str, Any], strict: bool = True, **kwargs: Any
) -> _Module: ...


def load_tensorized(
    model: Any, checkpoint: str | Path | Mapping[str, Any], strict: bool = True, **kwargs: Any
) -> nn.Module:
    """Load a checkpoint saved after tensorization into a fresh (dense) model, rebuilding the structure first.

    ``model`` is either a module instance (the LightningModule for a Lightning checkpoint; the structure is rebuilt
    and the state dict loaded) or a **LightningModule class**: ``load_tensorized(MyModel, "last.ckpt")`` is
    ``MyModel.load_from_checkpoint("last.ckpt")`` with the structure rebuilt (hyper-parameters restored, ``kwargs``
    passed on like ``load_from_checkpoint``'s, e.g. ``map_location``), in any process and without changing
    ``MyModel``.

    Accepts a Lightning checkpoint (path or dict, with ``state_dict`` and the spec under :data:`SPEC_KEY`) or a
    plain ``{"state_dict": ..., SPEC_KEY: ...}`` dict. A checkpoint without a spec loads as a dense one. ``strict``
    is passed to ``load_state_dict``. The lasso weights of a rank-regularized run (``Tensorize(rank_regularization=
    ...)``) are multiplied into the loaded factors, so the model computes what the trained one did.

    Example:
        >>> from trinity_lightning.models import SmallCNN
        >>> from trinity_lightning.tensor import tensorize, tensorized_spec
        >>> net = SmallCNN(1, 10, channels=(8,), image_size=8)
        >>> _ = tensorize(net, "tucker", rank=0.5)
        >>> ckpt = {"state_dict": net.state_dict(), SPEC_KEY: tensorized_spec(net)}
        >>> fresh = load_tensorized(SmallCNN(1, 10, channels=(8,), image_size=8), ckpt)
        >>> bool(torch.equal(fresh(torch.ones(1, 1, 8, 8)), net(torch.ones(1, 1, 8, 8))))
        True
    """
    if isinstance(model, type):
        import lightning.pytorch as pl

        if not issubclass(model, pl.LightningModule) or not isinstance(checkpoint, (str, Path)):
            raise TypeError(
                "load_tensorized(model, checkpoint): pass a module instance, or a LightningModule class with a "
                f"checkpoint path; got {model!r} and {type(checkpoint).__name__}"
            )
        # a throw-away subclass carries the hook, so the user's class is left as it is
        loader: Any = tensorized_checkpoints(type(model.__name__, (model,), {"__module__": model.__module__}))
        loaded = loader.load_from_checkpoint(checkpoint, strict=strict, **kwargs)
        loaded.__class__ = model
        return loaded  # type: ignore[no-any-return]
    if kwargs:
        raise TypeError(f"load_tensorized: unexpected arguments {sorted(kwargs)} for a module instance")
    loaded_ckpt: dict[str, Any] = dict(
        torch.load(checkpoint, map_location="cpu", weights_only=False)
        if isinstance(checkpoint, (str, Path))
        else checkpoint
    )
    state = dict(loaded_ckpt.get("state_dict", loaded_ckpt))
    restore_tensorized(model, {**loaded_ckpt, "state_dict": state})
    model.load_state_dict(state, strict=strict)
    return model  # type: ignore[no-any-return]


def mark_for_plain_reload(checkpoint: dict[str, Any], module: nn.Module) -> bool:
    """Make ``type(module).load_from_checkpoint`` rebuild the factorized layers in any process (returns whether).

    Sets the checkpoint's ``hyper_parameters["_instantiator"]`` to the matching entry of
    :data:`TENSORIZED_INSTANTIATORS` (a copy of the hyper-parameters; the module's own stay untouched). Left as is,
    with ``False``: hyper-parameters that Lightning passes to the constructor as one argument (``hparams_name``
    other than ``kwargs``), which are not a plain dict, or that name an instantiator we do not know.

    Example:
        >>> checkpoint = {"hyper_parameters": {"hidden": 8}}
        >>> mark_for_plain_reload(checkpoint, nn.Linear(2, 2))
        True
        >>> checkpoint["hyper_parameters"]["_instantiator"]
        'trinity_lightning.tensor.checkpoint.load_tensorized_module'
    """
    if checkpoint.get("hparams_name") not in (None, "kwargs"):
        return False  # Lightning nests the hyper-parameters under that one argument: ours would reach the user
    hparams = checkpoint.get(_HPARAMS)
    if hparams is None:
        hparams = {}
    if type(hparams) is not dict:
        return False  # an OmegaConf container or a Namespace keeps its own type; leave it alone
    original = hparams.get(_INSTANTIATOR)
    if original in TENSORIZED_INSTANTIATORS.values():
        return True
    if original not in TENSORIZED_INSTANTIATORS:
        return False
    checkpoint[_HPARAMS] = {**hparams, _INSTANTIATOR: TENSORIZED_INSTANTIATORS[original]}
    return True


def _restoring(module: _Module) -> _Module:
    """``module`` whose next ``on_load_checkpoint`` call rebuilds the factorized layers first (then reverts)."""
    if getattr(type(module).on_load_checkpoint, _RESTORES, False):  # type: ignore[attr-defined]
        return module  # the class is decorated already
    original: Any = module.on_load_checkpoint

    def on_load_checkpoint(checkpoint: dict[str, Any]) -> None:
        del module.on_load_checkpoint  # the class's own method again from here on
        restore_tensorized(module, checkpoint)
        original(checkpoint)

    module.on_load_checkpoint = on_load_checkpoint  # type: ignore[assignment]
    return module


def load_tensorized_module(cls: type[_Module], init_args: dict[str, Any]) -> _Module:
    """Lightning instantiator: ``cls(**init_args)``, whose ``on_load_checkpoint`` rebuilds the factorized layers.

    Named in checkpoints written under the ``Tensorize`` callback (:func:`mark_for_plain_reload`); Lightning calls
    it from ``cls.load_from_checkpoint``. Not meant to be called directly: use :func:`load_tensorized`.

    Example:
        >>> from trinity_lightning.models import Classifier
        >>> net = load_tensorized_module(Classifier, {"num_classes": 3, "image_size": 8})
        >>> net.on_load_checkpoint({})  # rebuilds nothing here (no spec), then the class's own hook runs
        >>> "on_load_checkpoint" in vars(net)
        False
    """
    return _restoring(cls(**init_args))


def load_tensorized_module_lightning_cli(cls: type[_Module], init_args: dict[str, Any]) -> _Module:
    """:func:`load_tensorized_module` for a checkpoint written by ``lightning.pytorch.cli.LightningCLI``."""
    from lightning.pytorch.cli import instantiate_module

    return _restoring(instantiate_module(cls, init_args))  # type: ignore[arg-type]


def load_tensorized_module_pytorch_lightning_cli(cls: type[_Module], init_args: dict[str, Any]) -> _Module:
    """:func:`load_tensorized_module` for a checkpoint written by ``pytorch_lightning.cli.LightningCLI``."""
    from pytorch_lightning.cli import instantiate_module  # type: ignore[import-not-found]

    return _restoring(instantiate_module(cls, init_args))  # type: ignore[no-any-return]
