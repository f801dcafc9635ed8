"""SemiSupervisedDataModule: stratified seeded labels, batches with a ratio, HF datasets, shared data, the recipe."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tests.conftest import require_dataset
from trinity_lightning.data import ArrayDataset
from trinity_lightning.nrm import SemiSupervisedDataModule, stratified_split, to_tensors

ROOT = Path(__file__).resolve().parents[2]


def _data(n: int = 300, classes: int = 3) -> ArrayDataset:
    g = torch.Generator().manual_seed(0)
    return ArrayDataset(torch.randn(n, 1, 4, 4, generator=g) * 3 + 1, torch.arange(n) % classes)


def test_split_is_stratified_seeded_and_disjoint():
    dm = SemiSupervisedDataModule(_data(), labels_per_class=4, val_size=30, seed=5)
    dm.setup("fit")
    labels = dm.subset("labelled")[1]
    assert torch.bincount(labels).tolist() == [4, 4, 4]
    again = SemiSupervisedDataModule(_data(), labels_per_class=4, val_size=30, seed=5)
    again.setup("fit")
    other = SemiSupervisedDataModule(_data(), labels_per_class=4, val_size=30, seed=6)
    other.setup("fit")
    assert np.array_equal(dm.labelled_indices, again.labelled_indices)
    assert not np.array_equal(dm.labelled_indices, other.labelled_indices)
    parts = [set(dm.labelled_indices), set(dm.val_indices), set(dm.unlabelled_indices)]
    assert sum(map(len, parts)) == 300 and len(set.union(*parts)) == 300
    # standardized with the training statistics
    features = dm.subset("unlabelled")[0]
    assert abs(features.mean().item()) < 0.2 and abs(features.std().item() - 1) < 0.1


def test_batches_hold_labelled_and_unlabelled_with_the_ratio():
    dm = SemiSupervisedDataModule(_data(), labels_per_class=4, labelled_batch_size=6, unlabelled_ratio=2.5, val_size=30)
    dm.setup("fit")
    loader = dm.train_dataloader()
    batches = [batch for batch, _, _ in loader]
    assert len(batches) == len(dm.unlabelled_indices) // 15  # one pass over the pool; the labelled set cycles
    x, y = batches[0]["labelled"]
    assert x.shape == (6, 1, 4, 4) and y.shape == (6,) and batches[0]["unlabelled"].shape == (15, 1, 4, 4)
    labelled_only = SemiSupervisedDataModule(_data(), labels_per_class=4, labelled_batch_size=6, unlabelled_ratio=0)
    labelled_only.setup("fit")
    x, y = next(iter(labelled_only.train_dataloader()))
    assert x.shape == (6, 1, 4, 4)
    _, val_y = next(iter(dm.val_dataloader()))
    assert len(val_y) == 30


def test_hugging_face_dataset_and_pairs():
    import datasets

    images = np.random.default_rng(0).integers(0, 255, (40, 6, 6), dtype=np.uint8)
    hf = datasets.Dataset.from_dict({"image": list(images), "label": [i % 2 for i in range(40)]})
    x, y = to_tensors(hf)
    assert x.shape == (40, 1, 6, 6) and x.max() <= 1.0 and y.tolist()[:4] == [0, 1, 0, 1]
    dm = SemiSupervisedDataModule(hf, test=hf, labels_per_class=5, val_size=4)
    dm.setup("fit")
    assert dm.num_labelled == 10 and len(dm.subset("test")[1]) == 40
    pairs = [(torch.zeros(2), i % 2) for i in range(6)]

    class Pairs(torch.utils.data.Dataset):
        def __len__(self):
            return len(pairs)

        def __getitem__(self, i):
            return pairs[i]

    assert to_tensors(Pairs())[1].tolist() == [0, 1, 0, 1, 0, 1]
    with pytest.raises(ValueError, match="image_field"):
        to_tensors(hf, image_field="pixels")


def test_hugging_face_image_features_and_dataset_dict():
    """PIL images in a ``datasets.Image`` column, ``ClassLabel`` ids, and a ``DatasetDict``'s train/test splits."""
    import datasets
    from PIL import Image

    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (30, 6, 6, 3), dtype=np.uint8)
    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b", "c"])})
    train = datasets.Dataset.from_dict(
        {"img": [Image.fromarray(p) for p in pixels], "label": [i % 3 for i in range(30)]}, features=features
    )
    x, y = to_tensors(train, image_field="img")
    assert x.shape == (30, 3, 6, 6) and y.tolist()[:4] == [0, 1, 2, 0]
    assert torch.allclose(x[7], torch.from_numpy(pixels[7]).permute(2, 0, 1).float() / 255)  # lossless PNG pixels
    splits = datasets.DatasetDict({"train": train, "test": train.select(range(9))})
    dm = SemiSupervisedDataModule(splits, image_field="img", labels_per_class=2, val_size=6, normalize=False, seed=3)
    dm.setup("fit")
    assert torch.bincount(dm.subset("labelled")[1]).tolist() == [2, 2, 2]
    assert dm.subset("test")[0].shape == (9, 3, 6, 6)  # the DatasetDict's test split, no test= needed
    with pytest.raises(ValueError, match="split: the DatasetDict has no split 'validation'"):
        to_tensors(splits, image_field="img", split="validation")


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="labels_per_class: class 0 has only 4"):
        SemiSupervisedDataModule(_data(12), labels_per_class=5).setup("fit")
    with pytest.raises(ValueError, match="unlabelled_ratio"):
        SemiSupervisedDataModule(_data(), unlabelled_ratio=-1)
    with pytest.raises(ValueError, match="dataset"):
        SemiSupervisedDataModule("imagenet").setup("fit")
    with pytest.raises(ValueError, match="labels_per_class"):
        stratified_split(np.zeros(4), 0, seed=0)
    with pytest.raises(ValueError, match=r"labels: expected non-negative integer class ids.*minimum -1"):
        stratified_split(np.array([0, 1, -1, 1]), 1, seed=0)
    with pytest.raises(ValueError, match="labels: expected non-negative integer"):
        stratified_split(np.array([0.5, 1.0]), 1, seed=0)


def test_state_dict_round_trip():
    dm = SemiSupervisedDataModule(_data(), labels_per_class=2, val_size=10, seed=1)
    dm.setup("fit")
    state = dm.state_dict()
    fresh = SemiSupervisedDataModule(_data(), labels_per_class=2, val_size=10, seed=1)
    fresh.load_state_dict(state)
    fresh.setup("fit")
    assert np.array_equal(fresh.labelled_indices, dm.labelled_indices)
    assert np.array_equal(fresh.val_indices, dm.val_indices)


def test_shared_mnist_with_100_labels():
    require_dataset("mnist")
    dm = SemiSupervisedDataModule("mnist", labels_per_class=10, val_size=1000, seed=0)
    dm.setup("fit")
    assert dm.num_labelled == 100 and len(dm.unlabelled_indices) == 58_900
    assert torch.bincount(dm.subset("labelled")[1]).tolist() == [10] * 10
    assert dm.subset("test")[0].shape == (10_000, 1, 28, 28)


def test_recipe_fits_two_steps(tmp_path):
    """Smoke test of recipes/nrm_semisupervised.yaml through the trinity CLI, shrunk to seconds."""
    require_dataset("mnist")
    from trinity_lightning.cli import run_lightning

    recipe = yaml.safe_load((ROOT / "recipes" / "nrm_semisupervised.yaml").read_text())
    recipe["trainer"].update(
        max_steps=2,
        limit_val_batches=1,
        limit_test_batches=1,
        logger=False,
        enable_progress_bar=False,
        default_root_dir=str(tmp_path),
    )
    recipe["trainer"]["callbacks"] = [c for c in recipe["trainer"]["callbacks"] if "RenderSamples" in c["class_path"]]
    recipe["trainer"]["enable_checkpointing"] = False
    recipe["model"]["init_args"]["layers"] = [4, "M"]
    recipe["data"]["init_args"].update(unlabelled_limit=400, val_size=50, test_limit=50)
    recipe["summary"] = False
    config = tmp_path / "recipe.yaml"
    config.write_text(yaml.safe_dump(recipe))
    cli = run_lightning(["fit", "--config", str(config)])
    assert cli.trainer.global_step == 2
    assert 0.0 <= float(cli.trainer.callback_metrics["test_acc"]) <= 1.0
    assert cli.datamodule.num_labelled == 100
    assert (cli.model.hparams["method"], cli.model.hparams["max_min"], cli.model.hparams["alpha_recon"]) == (
        "maxmin_nrm", True, 0.5,
    )  # fmt: skip
    # the recipe names its method, so a baseline is one flag on top of it (no conflicting switches)
    flags = ["--model.method", "two_path_ce", "--trainer.max_steps", "1"]
    baseline = run_lightning(["fit", "--config", str(config), *flags])
    assert (baseline.model.hparams["max_min"], baseline.model.hparams["alpha_recon"]) == (True, 0.0)
    assert baseline.model.hparams["alpha_rpn"] == 0.0 and not baseline.model.uses_unlabelled
    # the recipe writes a sample image: 8 reference columns + 2 random, a reference row + 10 class rows of 28px
    from PIL import Image

    (samples,) = [c for c in cli.trainer.callbacks if type(c).__name__ == "RenderSamples"]
    assert samples.path == tmp_path / "nrm_samples.png"
    assert Image.open(samples.path).size == (10 * 29 + 1, 11 * 29 + 1)
