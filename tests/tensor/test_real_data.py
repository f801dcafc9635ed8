from __future__ import annotations

import lightning.pytorch as pl
import pytest

from tests.conftest import require_dataset
from trinity_lightning.data import SharedImageDataModule
from trinity_lightning.models import Classifier
from trinity_lightning.tensor import Tensorize


@pytest.mark.slow
def test_tensorize_callback_on_fashion_mnist_keeps_most_accuracy():
    require_dataset("fashion_mnist")
    pl.seed_everything(0)
    data = SharedImageDataModule("fashion_mnist", batch_size=128, train_limit=4000, test_limit=1000)
    model = Classifier(in_channels=1, image_size=28, channels=(16, 32))
    callback = Tensorize("tucker", rank=0.33, epoch=2, min_params=1000, verbose=False)
    trainer = pl.Trainer(
        max_epochs=4,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[callback],
    )
    trainer.fit(model, data)
    accuracy = trainer.test(model, data, verbose=False)[0]["test_acc"]
    assert callback.report is not None
    assert callback.report.model_params_before / callback.report.model_params_after > 2.5
    assert accuracy > 0.7, accuracy
