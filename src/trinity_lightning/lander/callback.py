"""The ``SpectralNormalization`` callback: a Lipschitz bound for any model's linear and conv layers."""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.nn.utils import parametrize

from trinity_lightning.lander.lipschitz import _Scale, check_bound, layer_norm, spectral_normalize, unsupported_reason

_LAYERS = (nn.Linear, nn.modules.conv._ConvNd, nn.modules.lazy.LazyModuleMixin)


def _ours(module: nn.Module) -> bool:
    if not parametrize.is_parametrized(module, "weight"):
        return False
    return any(isinstance(p, _Scale) for p in module.parametrizations.weight)  # type: ignore[union-attr]


def _is_layer(module: nn.Module) -> bool:
    return isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)) or (
        isinstance(module, nn.modules.lazy.LazyModuleMixin) and hasattr(module, "weight")
    )


class SpectralNormalization(Callback):
    """Spectrally normalize every ``nn.Linear`` and ``nn.Conv{1,2,3}d`` of the LightningModule to ``bound``.

    Applied in ``setup`` (before the optimizer is built and before a checkpoint's weights load, so ``fit``
    resumes from a checkpoint of a normalized model). Linear layers get torch's ``spectral_norm``
    parametrization; convolutions are divided by their *operator* norm (FFT of the kernel at the input size seen,
    see :class:`~trinity_lightning.lander.lipschitz.ConvOperatorNorm`), not by the norm of the reshaped kernel.
    At each training epoch's end the exact layer norms are computed and ``spectral/certified_bound`` (their
    product: the network's Lipschitz bound when the layers are composed in sequence with 1-Lipschitz
    activations) and ``spectral/max_layer_norm`` are logged.

    Layers the callback cannot normalize (transposed, grouped, lazy, non-zero-padded convolutions, weights
    already parametrized by someone else) are all named in one ``ValueError``; ``exclude`` skips them.

    Args:
        bound: per-layer spectral norm (> 0).
        exclude: layer names or glob patterns (relative to the LightningModule, e.g. ``"model.head.*"``) to skip.
        n_power_iterations: power iterations per training forward.

    Example:
        >>> import torch
        >>> import lightning.pytorch as pl
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> class Net(pl.LightningModule):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
        ...     def training_step(self, batch, _):
        ...         return torch.nn.functional.mse_loss(self.net(batch[0]), batch[1])
        ...     def configure_optimizers(self):
        ...         return torch.optim.Adam(self.parameters(), lr=1e-2)
        >>> data = DataLoader(TensorDataset(torch.randn(64, 2), torch.randn(64, 1)), batch_size=16)
        >>> sn = SpectralNormalization(bound=1.0)
        >>> trainer = pl.Trainer(max_epochs=2, callbacks=[sn], logger=False, enable_checkpointing=False,
        ...                      enable_progress_bar=False, enable_model_summary=False)
        >>> trainer.fit(Net(), data)
        >>> sn.layers
        ['net.0', 'net.2']
        >>> len(sn.history), sn.history[-1] < 1.1
        (2, True)
    """

    def __init__(self, bound: float = 1.0, exclude: Sequence[str] = (), n_power_iterations: int = 1) -> None:
        self.bound = check_bound(bound, "bound")
        if isinstance(exclude, str):
            exclude = [exclude]
        self.exclude = list(exclude)
        if n_power_iterations < 1:
            raise ValueError(f"n_power_iterations: expected >= 1, got {n_power_iterations}")
        self.n_power_iterations = n_power_iterations
        self.layers: list[str] = []
        self.history: list[float] = []

    @property
    def state_key(self) -> str:
        return self._generate_state_key(bound=self.bound, exclude=self.exclude)

    def _excluded(self, name: str) -> bool:
        return any(name == p or fnmatch.fnmatchcase(name, p) for p in self.exclude)

    def select(self, model: nn.Module) -> list[str]:
        """Names of the layers this callback normalizes in ``model``; ``ValueError`` naming all it cannot."""
        chosen: list[str] = []
        refused: list[str] = []
        for name, module in model.named_modules():
            if not _is_layer(module) or self._excluded(name):
                continue
            if _ours(module):
                chosen.append(name)
                continue
            reason = unsupported_reason(module)
            if reason is None and not isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
                reason = f"unsupported layer type {type(module).__name__}"
            if reason is not None:
                refused.append(f"{name} ({reason})")
            else:
                chosen.append(name)
        if refused:
            names = [r.split(" (", 1)[0] for r in refused]
            raise ValueError(
                f"SpectralNormalization: cannot normalize {len(refused)} layer(s): {'; '.join(refused)}. "
                f"HINT: SpectralNormalization(exclude={names!r}) keeps them as they are"
            )
        return chosen

    def apply(self, model: nn.Module) -> list[str]:
        """Normalize the selected layers of ``model`` (once; already normalized layers are left alone)."""
        names = self.select(model)
        modules = dict(model.named_modules())
        for name in names:
            if not _ours(modules[name]):
                spectral_normalize(modules[name], self.bound, self.n_power_iterations)
        self.layers = names
        return names

    def layer_norms(self, model: nn.Module) -> dict[str, float]:
        """Exact norm of each normalized layer's weight as used now (operator norm for convolutions)."""
        modules = dict(model.named_modules())
        return {name: layer_norm(modules[name]) for name in self.layers}

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.apply(pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        norms = self.layer_norms(pl_module)
        if not norms:
            return
        certified = math.prod(norms.values())
        self.history.append(certified)
        pl_module.log("spectral/certified_bound", certified)
        pl_module.log("spectral/max_layer_norm", max(norms.values()))

    def state_dict(self) -> dict[str, Any]:
        return {"layers": list(self.layers), "history": list(self.history), "bound": self.bound}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [float(v) for v in state_dict.get("history", [])]
        saved = list(state_dict.get("layers", []))
        if self.layers and saved and saved != self.layers:
            raise ValueError(
                f"SpectralNormalization: the checkpoint normalized layers {saved} but this model has {self.layers}; "
                "resume with the same exclude list"
            )
