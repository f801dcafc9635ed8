"""A user's own image files reach the image DataModules from YAML (issue 14, item 14)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from trinity_lightning.data import SharedImageDataModule
from trinity_lightning.data.datamodules import image_tensors, open_images
from trinity_lightning.nrm import SemiSupervisedDataModule


def _images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    images = rng.integers(0, 60, size=(n, 8, 8)).astype(np.uint8)
    for i, label in enumerate(labels):  # each class lights its own rows
        images[i, 2 * label : 2 * label + 2] = 250
    return images, labels


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("user")
    images, labels = _images(60)
    test_images, test_labels = _images(15, seed=1)
    frame = pd.DataFrame(images.reshape(60, -1), columns=[f"p{i}" for i in range(64)])
    frame.insert(0, "label", labels)
    frame.to_csv(root / "train.csv", index=False)
    test_frame = pd.DataFrame(test_images.reshape(15, -1), columns=[f"p{i}" for i in range(64)])
    test_frame.insert(0, "label", test_labels)
    test_frame.to_csv(root / "test.csv", index=False)
    np.savez(root / "train.npz", image=images, label=labels)
    pd.DataFrame({"image": [im.reshape(-1).tolist() for im in images], "label": labels}).to_parquet(
        root / "train.parquet"
    )
    for split, (xs, ys) in {"train": (images, labels), "test": (test_images, test_labels)}.items():
        for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
            folder = root / "folder" / split / f"class_{y}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(x).save(folder / f"{i}.png")
    import datasets

    datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"image": images, "label": labels}),
            "test": datasets.Dataset.from_dict({"image": test_images, "label": test_labels}),
        }
    ).save_to_disk(str(root / "saved"))
    return root, images, labels


@pytest.mark.parametrize("name", ["train.csv", "train.npz", "train.parquet", "folder", "saved"])
def test_every_kind_of_user_file_opens_to_the_same_images(files, name):
    root, images, labels = files
    x, y = image_tensors(open_images(root / name))
    assert tuple(x.shape) == (60, 1, 8, 8)
    pixels = np.rint(x[:, 0].numpy() * (255.0 if x.max() <= 1.0 else 1.0)).astype(np.uint8)  # PNGs: 8-bit, /255

    def rows(ims, ys):  # an image folder lists files in its own order: compare (label, image) multisets
        return sorted((int(label), im.tobytes()) for im, label in zip(ims, ys, strict=True))

    assert rows(pixels, y.tolist()) == rows(images, labels)


def test_bad_user_data_is_named(files, tmp_path):
    root, _, _ = files
    with pytest.raises(FileNotFoundError, match=r"no such file: .*missing\.csv"):
        open_images(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match=r"dataset: 'imagenet' is not a file or folder.*mnist"):
        SemiSupervisedDataModule("imagenet").setup("fit")
    with pytest.raises(ValueError, match=r"image_shape: \[3, 8, 8\] holds 192 values.*64 per row"):
        open_images(root / "train.csv", image_shape=[3, 8, 8])
    with pytest.raises(ValueError, match="dataset: expected one of"):
        SharedImageDataModule("imagenet")


def test_shared_image_datamodule_reads_a_users_csv_from_yaml(files, tmp_path):
    """The recipe form: ``dataset: my.csv`` (and a test file), through the trinity CLI."""
    from trinity_lightning.cli import run_lightning

    root, _, _ = files
    recipe = {
        "model": {"class_path": "Classifier", "init_args": {"num_classes": 3, "image_size": 8, "channels": [4]}},
        "data": {
            "class_path": "SharedImageDataModule",
            "init_args": {"dataset": str(root / "train.csv"), "test": str(root / "test.csv"), "batch_size": 16},
        },
        "trainer": {"max_epochs": 1, "logger": False, "enable_progress_bar": False, "default_root_dir": str(tmp_path)},
    }
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    cli = run_lightning(["test", f"--config={tmp_path / 'recipe.yaml'}"])
    dm = cli.datamodule
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set), dm.num_classes) == (54, 6, 15, 3)
    x, _ = dm.train_set[0]
    assert x.shape == (1, 8, 8)
    assert "test_acc" in cli.trainer.callback_metrics


def test_nrm_datamodule_reads_an_image_folder_and_a_saved_hf_dataset(files):
    root, _, _ = files
    for name in ("folder", "saved"):
        dm = SemiSupervisedDataModule(str(root / name), labels_per_class=2, val_size=6, labelled_batch_size=3)
        dm.setup("fit")
        assert (dm.num_labelled, dm.num_classes, len(dm.subset("test")[1])) == (6, 3, 15)
        batch = next(iter(dm.train_dataloader()))[0]
        assert tuple(batch["labelled"][0].shape) == (3, 1, 8, 8)
        assert torch.isfinite(batch["unlabelled"]).all()
