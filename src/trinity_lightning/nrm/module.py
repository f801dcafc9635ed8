"""The ``NRM`` LightningModule: semi-supervised training of a CNN with its own rendering model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy

from trinity_lightning.nrm.losses import max_min_cross_entropy, reconstruction_loss, rendering_path_normalization
from trinity_lightning.nrm.network import InferencePath, Latents, RenderingCNN

PSEUDO_LABELS = ("hard", "soft")
SCHEDULES = ("constant", "cosine")
METHODS: dict[str, dict[str, Any]] = {
    "ce": {"max_min": False, "alpha_recon": 0.0, "alpha_rpn": 0.0},
    "two_path_ce": {"max_min": True, "alpha_recon": 0.0, "alpha_rpn": 0.0},
    "nrm": {"max_min": False, "alpha_recon": 0.5, "alpha_rpn": 0.1},
    "maxmin_nrm": {"max_min": True, "alpha_recon": 0.5, "alpha_rpn": 0.1},
    "maxmin_nrm_no_rpn": {"max_min": True, "alpha_recon": 0.5, "alpha_rpn": 0.0},
}
"""The named methods of :class:`NRM` (its ``method`` argument): the switches each one fixes.

``ce`` is the supervised single-path baseline; ``two_path_ce`` the matched baseline of Max-Min NRM (the same Max
and Min paths, cross-entropy on both, the prediction the mean of their logits, labelled data only);
``maxmin_nrm`` the full model (the default settings); ``nrm`` and ``maxmin_nrm_no_rpn`` its ablations.
"""


def resolve_method(
    method: str | None,
    *,
    max_min: bool | None = None,
    alpha_recon: float | None = None,
    alpha_rpn: float | None = None,
) -> dict[str, Any]:
    """The ``max_min`` / ``alpha_recon`` / ``alpha_rpn`` of :class:`NRM` from a named method and explicit values.

    An explicit value (not ``None``) wins when ``method`` is ``None`` and must agree with the method otherwise;
    unset values come from ``method`` (``"maxmin_nrm"`` when ``None``).

    Example:
        >>> resolve_method("two_path_ce")
        {'max_min': True, 'alpha_recon': 0.0, 'alpha_rpn': 0.0}
        >>> resolve_method(None, max_min=False)["max_min"], resolve_method(None)["alpha_recon"]
        (False, 0.5)
    """
    if method is not None and method not in METHODS:
        raise ValueError(f"method: expected one of {sorted(METHODS)} or None, got {method!r}")
    preset = METHODS[method or "maxmin_nrm"]
    given = {"max_min": max_min, "alpha_recon": alpha_recon, "alpha_rpn": alpha_rpn}
    out = {}
    for name, value in given.items():
        if value is None:
            out[name] = preset[name]
        elif method is not None and value != preset[name]:
            raise ValueError(
                f"{name}: method {method!r} sets it to {preset[name]!r}, got {value!r} "
                f"(leave it unset, or pass method=None)"
            )
        else:
            out[name] = type(preset[name])(value)
    return out


class NRM(pl.LightningModule):
    """Neural Rendering Model: a CNN trained with cross-entropy, reconstruction, RPN and max-min cross-entropy.

    The bottom-up CNN (:class:`~trinity_lightning.nrm.network.RenderingCNN`) infers the class and the latent
    switches (ReLU states, pooling positions); its top-down twin renders the input back from the class through
    those switches with the same weights. The training loss of a batch is::

        alpha_max * CE(max logits) + alpha_min * CE(min logits)         on labelled examples
        + alpha_recon * ||x - render(y, z)||^2                           on labelled and unlabelled examples
        + alpha_rpn * RPN(y, z)                                          on labelled and unlabelled examples

    where ``y`` is the label, or the predicted class for an unlabelled example. With ``max_min=False`` and
    ``alpha_recon = alpha_rpn = 0`` (``method="ce"``) it is a plain supervised CNN (the baseline); with
    ``max_min=True`` and ``alpha_recon = alpha_rpn = 0`` (``method="two_path_ce"``) it is the matched baseline
    of Max-Min NRM: both paths trained with cross-entropy on the labelled examples only, predictions averaged,
    no reconstruction, no RPN. Predictions average the Max and Min scores. Batches are ``(x, y)`` (labelled
    only) or ``{"labelled": (x, y), "unlabelled": x}`` as yielded by
    :class:`~trinity_lightning.nrm.datamodule.SemiSupervisedDataModule`.

    Logs ``train_loss``, ``train_ce``, ``train_recon``, ``train_rpn``, ``val_loss``, ``val_acc``, ``test_acc``.

    Every argument is keyword-only; the order is the library's (``in_channels, num_classes`` first, as in
    :class:`~trinity_lightning.nrm.network.RenderingCNN`).

    Args:
        in_channels: image channels.
        num_classes: classes.
        image_size: input height = width.
        layers: conv widths and ``"M"`` (2x2 max-pool), e.g. ``[32, "M", 64, "M"]``.
        kernel_size: conv kernel size.
        slope: leaky ReLU slope.
        batch_norm: BatchNorm after each conv.
        head: ``"flatten"`` or ``"avgpool"``.
        method: one of :data:`METHODS` (``"ce"``, ``"two_path_ce"``, ``"nrm"``, ``"maxmin_nrm"``,
            ``"maxmin_nrm_no_rpn"``): sets ``max_min``, ``alpha_recon`` and ``alpha_rpn``; passing one of those
            as well with a different value is an error. ``None``: each of them as given, else as in
            ``"maxmin_nrm"``.
        max_min: add the Min network (shared weights) and its cross-entropy (``None``: from ``method``).
        alpha_max: weight of the Max cross-entropy.
        alpha_min: weight of the Min cross-entropy (used when ``max_min``).
        alpha_recon: weight of the reconstruction loss (0: off; ``None``: from ``method``).
        alpha_rpn: weight of rendering path normalization (0: off; ``None``: from ``method``).
        pseudo_label: class an unlabelled example is rendered from: ``"hard"`` (the predicted class, as in the
            paper) or ``"soft"`` (the predicted class probabilities, differentiable).
        lr: Adam learning rate.
        weight_decay: Adam (decoupled) weight decay.
        schedule: ``"constant"`` or ``"cosine"`` (annealed to zero over the run's steps).

    Example:
        >>> model = NRM(image_size=8, layers=[8, "M"], alpha_recon=0.5, alpha_rpn=0.1)
        >>> batch = {"labelled": (torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])),
        ...          "unlabelled": torch.randn(6, 1, 8, 8)}
        >>> sorted(model.losses(batch))
        ['ce', 'loss', 'recon', 'rpn']
        >>> baseline = NRM(image_size=8, layers=[8, "M"], method="two_path_ce")
        >>> baseline.hparams["max_min"], baseline.hparams["alpha_recon"], baseline.uses_unlabelled
        (True, 0.0, False)
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: int = 28,
        layers: Sequence[int | str] = (32, "M", 64, "M"),
        kernel_size: int = 3,
        slope: float = 0.1,
        batch_norm: bool = True,
        head: str = "flatten",
        method: str | None = None,
        max_min: bool | None = None,
        alpha_max: float = 1.0,
        alpha_min: float = 1.0,
        alpha_recon: float | None = None,
        alpha_rpn: float | None = None,
        pseudo_label: str = "hard",
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        schedule: str = "constant",
    ) -> None:
        super().__init__()
        switches = resolve_method(method, max_min=max_min, alpha_recon=alpha_recon, alpha_rpn=alpha_rpn)
        max_min, alpha_recon, alpha_rpn = switches["max_min"], switches["alpha_recon"], switches["alpha_rpn"]
        for name, value in (
            ("alpha_max", alpha_max),
            ("alpha_min", alpha_min),
            ("alpha_recon", alpha_recon),
            ("alpha_rpn", alpha_rpn),
            ("lr", lr),
            ("weight_decay", weight_decay),
        ):
            if value < 0:
                raise ValueError(f"{name}: expected a non-negative number, got {value}")
        if pseudo_label not in PSEUDO_LABELS:
            raise ValueError(f"pseudo_label: expected one of {PSEUDO_LABELS}, got {pseudo_label!r}")
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule: expected one of {SCHEDULES}, got {schedule!r}")
        self.save_hyperparameters()
        self.hparams.update(switches)  # the resolved values, so a checkpoint rebuilds the same model
        self.net = RenderingCNN(
            in_channels, num_classes, image_size, list(layers), kernel_size, slope, batch_norm, head
        )
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")

    # ------------------------------------------------------------------ inference
    @property
    def uses_unlabelled(self) -> bool:
        """Whether unlabelled examples contribute to the loss (reconstruction or RPN is on)."""
        return self.hparams["alpha_recon"] > 0 or self.hparams["alpha_rpn"] > 0

    def paths(self, x: torch.Tensor) -> list[InferencePath]:
        """The Max path, and the Min path when ``max_min``."""
        modes = ("max", "min") if self.hparams["max_min"] else ("max",)
        return [self.net.infer(x, mode) for mode in modes]

    @staticmethod
    def combine(paths: Sequence[InferencePath]) -> torch.Tensor:
        """Prediction scores: the mean of the paths' logits."""
        return torch.stack([p.logits for p in paths]).mean(dim=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores (Max and Min averaged when ``max_min``)."""
        return self.combine(self.paths(x))

    def infer_latents(self, x: torch.Tensor, mode: str = "max") -> Latents:
        """The latent switches and pooling positions the network infers for images ``x``."""
        return self.net.infer(x, mode).latents

    def render(
        self, y: torch.Tensor, latents: Latents | None = None, x: torch.Tensor | None = None, mode: str = "max"
    ) -> torch.Tensor:
        """Render images of classes ``y`` (ids ``(N,)`` or class weights ``(N, K)``).

        The latents are ``latents`` if given, else those inferred from reference images ``x`` (one per class
        entry), else drawn at random (each unit on with probability 0.5).
        """
        top = F.one_hot(y, self.hparams["num_classes"]).float() if y.ndim == 1 else y.float()
        if latents is None and x is not None:
            return self.net.render(top, self.net.infer(x, mode))[0]
        if latents is None:
            latents = self.net.random_latents(top.shape[0])
        return self.net.render(top, latents, self.net.running_scales(mode))[0]

    # ------------------------------------------------------------------ losses
    @staticmethod
    def split_batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``(x_labelled, y_labelled, x_unlabelled or None)`` from either batch form."""
        if isinstance(batch, dict):
            if "labelled" not in batch:
                raise ValueError(f"batch: a dict batch needs a 'labelled' entry, got keys {sorted(batch)}")
            x, y = batch["labelled"]
            unlabelled = batch.get("unlabelled")
            if isinstance(unlabelled, (list, tuple)):
                unlabelled = unlabelled[0]
            return x, y, unlabelled
        if isinstance(batch, (list, tuple)) and len(batch) == 2:
            return batch[0], batch[1], None
        raise ValueError("batch: expected (x, y) or {'labelled': (x, y), 'unlabelled': x}")

    def losses(self, batch: Any) -> dict[str, torch.Tensor]:
        """Every loss term of a batch (``loss`` is the weighted total); ``recon``/``rpn`` are unweighted."""
        hp = self.hparams
        x_l, y_l, x_u = self.split_batch(batch)
        x = torch.cat([x_l, x_u]) if x_u is not None and len(x_u) and self.uses_unlabelled else x_l
        n_labelled = len(x_l)
        paths = self.paths(x)
        logits_min = paths[1].logits[:n_labelled] if len(paths) > 1 else None
        zero = paths[0].logits.new_zeros(())
        if n_labelled:
            ce = max_min_cross_entropy(paths[0].logits[:n_labelled], logits_min, y_l, hp["alpha_max"], hp["alpha_min"])
        else:  # an unlabelled-only batch
            ce = zero
        out = {"ce": ce, "recon": zero, "rpn": zero}
        if self.uses_unlabelled:
            top = self._render_targets(paths, y_l, n_labelled)
            recon, rpn = zero, zero
            for path in paths:
                rendered, levels = self.net.render(top, path)
                recon = recon + reconstruction_loss(rendered, x).mean() / len(paths)
                if hp["alpha_rpn"] > 0:
                    _, prior_levels = self.net.render(top, self.net.prior_latents(path), path.scales)
                    rpn = rpn + rendering_path_normalization(levels, prior_levels, path.biases).mean() / len(paths)
            out["recon"], out["rpn"] = recon, rpn
        out["loss"] = ce + hp["alpha_recon"] * out["recon"] + hp["alpha_rpn"] * out["rpn"]
        return out

    def _render_targets(self, paths: Sequence[InferencePath], y_l: torch.Tensor, n_labelled: int) -> torch.Tensor:
        k = self.hparams["num_classes"]
        labelled = F.one_hot(y_l, k).to(paths[0].logits.dtype)
        scores = self.combine(paths)[n_labelled:]
        if self.hparams["pseudo_label"] == "soft":
            unlabelled = scores.softmax(dim=1)
        else:
            unlabelled = F.one_hot(scores.detach().argmax(dim=1), k).to(labelled.dtype)
        return torch.cat([labelled, unlabelled])

    # ------------------------------------------------------------------ Lightning hooks
    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        out = self.losses(batch)
        size = len(self.split_batch(batch)[0])
        for name, value in out.items():
            self.log(f"train_{name}", value, prog_bar=name == "loss", batch_size=size)
        return out["loss"]

    def _evaluate(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        x, y, _ = self.split_batch(batch)
        return self(x), y

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        logits, y = self._evaluate(batch)
        self.log("val_loss", F.cross_entropy(logits, y), prog_bar=True, batch_size=len(y), sync_dist=True)
        self.val_acc(logits, y)
        self.log("val_acc", self.val_acc, prog_bar=True, batch_size=len(y), sync_dist=True)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        logits, y = self._evaluate(batch)
        self.test_acc(logits, y)
        self.log("test_acc", self.test_acc, batch_size=len(y))

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(x).softmax(dim=-1)

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.AdamW(
            self.parameters(), lr=self.hparams["lr"], weight_decay=self.hparams["weight_decay"]
        )
        if self.hparams["schedule"] == "constant":
            return optimizer
        steps = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
