"""TopicModel / TopicModelDataModule: the Lightning loop reproduces SpectralLDA, and DDP reproduces one process."""

from __future__ import annotations

import json

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from trinity_lightning.topics import SpectralLDA, TopicModel, TopicModelDataModule, synthetic_lda


def _data():
    return synthetic_lda(n_docs=1200, n_words=60, n_topics=4, seed=3)


def _trainer(**kw):
    return pl.Trainer(
        max_epochs=3,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        accelerator="cpu",
        **kw,
    )


def test_lightning_loop_equals_estimator():
    data = _data()
    dm = TopicModelDataModule(counts=data.counts, batch_size=256)
    model = TopicModel(4, oversample=6, show_topics=False)
    trainer = _trainer(devices=1)
    trainer.fit(model, dm)
    ref = SpectralLDA(4, oversample=6, n_sketch_passes=2, random_state=0).fit(data.counts)
    np.testing.assert_allclose(model.components(), ref.components_, atol=1e-8)
    assert "topics/npmi" in trainer.callback_metrics and "topics/umass" in trainer.callback_metrics
    assert "alpha" in str(model.topic_table().columns[1].header)


def test_datamodule_needs_input_and_known_format():
    with pytest.raises(ValueError, match="needs path="):
        TopicModelDataModule()
    with pytest.raises(ValueError, match="format='xml'"):
        TopicModelDataModule(path="x", format="xml")


class _Dump(Callback):
    def __init__(self, root):
        self.root = root

    def on_train_end(self, trainer, pl_module):
        torch.save(pl_module.topics_, self.root / f"rank{trainer.global_rank}.pt")
        (self.root / f"docs{trainer.global_rank}.json").write_text(
            json.dumps(float(trainer.callback_metrics["topics/documents"]))
        )


@pytest.mark.slow
@pytest.mark.distributed
def test_ddp_two_processes_match_single_process(tmp_path):
    data = _data()
    single = TopicModel(4, oversample=6, show_topics=False)
    _trainer(devices=1).fit(single, TopicModelDataModule(counts=data.counts, batch_size=256))
    trainer = _trainer(devices=2, strategy="ddp_spawn", callbacks=[_Dump(tmp_path)])
    trainer.fit(
        TopicModel(4, oversample=6, show_topics=False), TopicModelDataModule(counts=data.counts, batch_size=256)
    )
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert torch.allclose(got, single.topics_, atol=1e-6, rtol=0)
        assert json.loads((tmp_path / f"docs{rank}.json").read_text()) == 1200.0  # each document counted once
