"""A classifier trained from partial labels (candidate sets) instead of exact ones."""

from __future__ import annotations

from typing import Any

import torch

from trinity_lightning.active.partial_feedback.loss import partial_label_loss
from trinity_lightning.models import Classifier


class PartialLabelClassifier(Classifier):
    """:class:`~trinity_lightning.models.Classifier` whose training batches are ``(x, candidates)``.

    The training loss is :func:`partial_label_loss` (cross-entropy when one candidate is left);
    validation and test use exact labels as usual. Integer targets in a training batch are accepted
    too (treated as single-candidate sets), so the model also trains on ordinary labelled data.
    Any other LightningModule can do the same by calling :func:`partial_label_loss` in its
    ``training_step``.

    Example:
        >>> clf = PartialLabelClassifier(num_classes=3, in_channels=1, image_size=8, channels=(4,))
        >>> batch = (torch.zeros(2, 1, 8, 8), torch.tensor([[True, True, False], [False, False, True]]))
        >>> float(clf.training_step(batch, 0)) > 0
        True
    """

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, target = batch
        logits = self(x)
        if target.dtype != torch.bool:
            target = torch.nn.functional.one_hot(target.long(), logits.shape[1]).bool()
        loss = partial_label_loss(logits, target)
        self.log("train_loss", loss, prog_bar=True)
        return loss
