"""Cold start (issue 23): random, class-balanced from a labelled seed set, k-means on embeddings (no labels)."""

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from torch import nn

from trinity_lightning.active import ActiveLearning, ActiveLearningDataModule
from trinity_lightning.active.cold_start import (
    ClassBalanced,
    KMeansColdStart,
    RandomColdStart,
    get_cold_start,
)
from trinity_lightning.data import ArrayDataset
from trinity_lightning.models import Classifier


def _skewed(n_per=(90, 6, 4), seed=0):
    """Three well separated blobs of very different sizes (a random draw of 10 usually misses the small ones)."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.tensor([[6.0, 0, 0, 0], [0, 6.0, 0, 0], [0, 0, 6.0, 0]])
    y = torch.cat([torch.full((n,), c) for c, n in enumerate(n_per)])
    return ArrayDataset(centers[y] + 0.3 * torch.randn(len(y), 4, generator=g), y)


def _dm(data=None, **kwargs):
    dm = ActiveLearningDataModule(data or _skewed(), num_classes=3, batch_size=16, **kwargs)
    dm.setup()
    return dm


def test_random_is_seeded_and_in_pool():
    dm = _dm()
    dm.label([0, 1, 2], advance_round=False)
    a, b = RandomColdStart(size=10, seed=3).select(dm), RandomColdStart(size=10, seed=3).select(dm)
    assert a == b and len(set(a)) == 10 and not set(a) & {0, 1, 2}
    assert RandomColdStart(seed=4).select(dm, 10) != a


def test_class_balanced_from_dataset_labels_and_from_a_seed_set():
    dm = _dm()
    y = [int(dm.dataset[i][1]) for i in range(100)]
    chosen = ClassBalanced(size=9).select(dm)
    assert np.bincount([int(y[i]) for i in chosen], minlength=3).tolist() == [3, 3, 3]
    chosen = ClassBalanced().select(dm, 14)  # class 2 has only 4: the rest go to the others in turn
    assert np.bincount([int(y[i]) for i in chosen], minlength=3).tolist() == [5, 5, 4]
    seed_set = {0: 0, 1: 0, 2: 0, 3: 0, 95: 1, 99: 2}  # labels a person gave to a few examples
    assert ClassBalanced(size=3, labels=seed_set).select(dm) in ([0, 95, 99], [1, 95, 99], [2, 95, 99], [3, 95, 99])


def test_bad_input_names_the_argument():
    dm = _dm()
    with pytest.raises(ValueError, match="size"):
        RandomColdStart(size=0)
    with pytest.raises(ValueError, match="size: asked for 500"):
        RandomColdStart(size=500).select(dm)
    with pytest.raises(ValueError, match="labels: the seed set has 2"):
        ClassBalanced(size=3, labels={0: 0, 95: 1}).select(dm)
    with pytest.raises(ValueError, match=r"labels: indices \[1000\]"):
        ClassBalanced(size=1, labels={1000: 0}).select(dm)
    with pytest.raises(ValueError, match="one class id per example"):
        ClassBalanced(size=1, labels={0: [1, 2]}).select(dm)
    with pytest.raises(ValueError, match="cold_start: unknown 'nope'"):
        get_cold_start("nope")


def test_kmeans_covers_every_cluster_without_labels():
    dm = _dm()
    y = [int(dm.dataset[i][1]) for i in range(100)]
    chosen = KMeansColdStart(size=3).select(dm)
    assert sorted(y[i] for i in chosen) == [0, 1, 2]  # random picks all three with probability < 6%
    hits = [len({y[i] for i in RandomColdStart(size=3, seed=s).select(dm)}) for s in range(20)]
    assert sum(h == 3 for h in hits) <= 3


def test_kmeans_uses_the_module_embedding_hook():
    class Embedded(nn.Module):
        calls = 0

        def pool_embeddings(self, batch):
            Embedded.calls += 1
            return batch[0][:, :1]  # only the first feature: class 0 vs the rest

    dm = _dm()
    y = [int(dm.dataset[i][1]) for i in range(100)]
    chosen = KMeansColdStart(size=2).select(dm, model=Embedded())
    assert Embedded.calls > 0 and sorted(min(y[i], 1) for i in chosen) == [0, 1]


def test_campaign_starts_from_a_balanced_batch(tmp_path):
    dm = ActiveLearningDataModule(_skewed(), val=_skewed(seed=1), num_classes=3, batch_size=16)
    torch.manual_seed(0)
    model = Classifier(model=nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)), num_classes=3, lr=0.05)
    al = ActiveLearning("entropy", query_size=6, budget=12, cold_start="balanced")
    trainer = pl.Trainer(
        max_epochs=-1,
        callbacks=[al],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule=dm)
    first = [i for i, r in enumerate(dm.labelled_round.tolist()) if r == 1]
    assert sorted(int(dm.dataset[i][1]) for i in first) == [0, 0, 1, 1, 2, 2]
    assert dm.n_labelled == 12 and al.curve[0]["labelled"] == 6
