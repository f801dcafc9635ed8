"""Batch augmentation (random crop + horizontal flip): exact crops and flips on hand-made images, seeded, training
batches only through ``SemiSupervisedDataModule(augment=True)``, off by default, bad values named."""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from trinity_lightning.data import ArrayDataset
from trinity_lightning.nrm import NRM, SemiSupervisedDataModule
from trinity_lightning.nrm.augment import crop_flip, random_crop_flip

TRAINER = {
    "logger": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "enable_checkpointing": False,
    "accelerator": "cpu",
    "num_sanity_val_steps": 0,
}


def _image() -> torch.Tensor:
    """One 2-channel 3x3 image: channel 0 holds 1..9 row by row, channel 1 its negative."""
    channel = torch.arange(1.0, 10.0).reshape(3, 3)
    return torch.stack([channel, -channel])[None]


@pytest.mark.parametrize(("mode", "numpy_mode"), [("reflect", "reflect"), ("zeros", "constant")])
def test_every_crop_and_flip_of_a_hand_made_image(mode, numpy_mode):
    x = _image()
    padded = np.pad(x[0].numpy(), ((0, 0), (1, 1), (1, 1)), mode=numpy_mode)
    for top in range(3):
        for left in range(3):
            for flip in (False, True):
                out = crop_flip(x, torch.tensor([[top, left]]), torch.tensor([flip]), crop_padding=1, padding_mode=mode)
                expected = padded[:, top : top + 3, left : left + 3]
                expected = expected[:, :, ::-1] if flip else expected
                assert np.array_equal(out[0].numpy(), expected), (mode, top, left, flip)
    # by hand: the centre crop is the image; flipped, its rows reverse; the top-left reflect crop mirrors the border
    centre = crop_flip(x, torch.tensor([[1, 1]]), torch.tensor([True]), crop_padding=1)
    assert centre[0, 0].tolist() == [[3, 2, 1], [6, 5, 4], [9, 8, 7]]
    corner = crop_flip(x, torch.tensor([[0, 0]]), torch.tensor([False]), crop_padding=1)
    assert corner[0, 0].tolist() == [[5, 4, 5], [2, 1, 2], [5, 4, 5]]
    zeros = crop_flip(x, torch.tensor([[2, 2]]), torch.tensor([False]), crop_padding=1, padding_mode="zeros")
    assert zeros[0, 1].tolist() == [[-5, -6, 0], [-8, -9, 0], [0, 0, 0]]


def test_each_image_gets_its_own_crop_and_flip_in_one_batch():
    x = torch.cat([_image(), 10 * _image(), 100 * _image()])
    offsets, flips = torch.tensor([[1, 1], [0, 2], [2, 0]]), torch.tensor([False, True, False])
    out = crop_flip(x, offsets, flips, crop_padding=1)
    for i in range(3):
        alone = crop_flip(x[i : i + 1], offsets[i : i + 1], flips[i : i + 1], crop_padding=1)
        assert torch.equal(out[i], alone[0])
    assert torch.equal(out[0], x[0])  # the centre crop without flip is the image


def test_random_crop_flip_keeps_shape_dtype_and_is_seeded():
    x = torch.randn(64, 3, 32, 32, dtype=torch.float64)
    a = random_crop_flip(x, generator=torch.Generator().manual_seed(3))
    b = random_crop_flip(x, generator=torch.Generator().manual_seed(3))
    c = random_crop_flip(x, generator=torch.Generator().manual_seed(4))
    assert a.shape == x.shape and a.dtype == x.dtype and a.is_contiguous()
    assert torch.equal(a, b) and not torch.equal(a, c)
    # every output is one of the 9 x 9 x 2 crops/flips of its input, and the draws cover shifts and flips
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4), mode="reflect")
    seen = set()
    for i in range(len(x)):
        found = [
            (top, left, flip)
            for top in range(9)
            for left in range(9)
            for flip in (False, True)
            if torch.equal(
                a[i],
                padded[i, :, top : top + 32, left : left + 32].flip(-1)
                if flip
                else padded[i, :, top : top + 32, left : left + 32],
            )
        ]
        assert len(found) == 1
        seen.add(found[0])
    assert {f for _, _, f in seen} == {False, True} and len({(t, lf) for t, lf, _ in seen}) > 20
    assert torch.equal(random_crop_flip(x, crop_padding=0, flip=False), x)  # nothing to do: the identity
    unflipped = random_crop_flip(x, crop_padding=0, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(u, v) or torch.equal(u, v.flip(-1)) for u, v in zip(unflipped, x))


def test_bad_values_are_named():
    x = torch.zeros(2, 1, 4, 4)
    with pytest.raises(ValueError, match="crop_padding"):
        random_crop_flip(x, crop_padding=-1)
    with pytest.raises(ValueError, match="crop_padding: reflect padding needs"):
        random_crop_flip(x, crop_padding=4)
    with pytest.raises(ValueError, match="padding_mode"):
        random_crop_flip(x, padding_mode="circular")
    with pytest.raises(ValueError, match="x: expected a batch"):
        random_crop_flip(torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match="offsets"):
        crop_flip(x, torch.tensor([[0, 3], [0, 0]]), torch.tensor([False, False]), crop_padding=1)
    data = ArrayDataset(torch.zeros(20, 1, 4, 4), torch.arange(20) % 2)
    with pytest.raises(TypeError, match="augment"):
        SemiSupervisedDataModule(data, augment="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="crop_padding"):
        SemiSupervisedDataModule(data, augment=True, crop_padding=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="padding_mode"):
        SemiSupervisedDataModule(data, augment=True, padding_mode="edge")
    with pytest.raises(TypeError, match="flip"):
        SemiSupervisedDataModule(data, augment=True, flip=1)  # type: ignore[arg-type]


# ------------------------------------------------------------------ through the DataModule and a Trainer
def _data(n: int = 160) -> ArrayDataset:
    g = torch.Generator().manual_seed(0)
    return ArrayDataset(torch.randn(n, 3, 8, 8, generator=g), torch.arange(n) % 4)


def _dm(**kwargs) -> SemiSupervisedDataModule:
    return SemiSupervisedDataModule(
        _data(), labels_per_class=5, labelled_batch_size=6, unlabelled_ratio=2, val_size=20, seed=3, **kwargs
    )


class _Seen(pl.Callback):
    """The batches the model's steps receive (after the transfer hooks)."""

    def __init__(self) -> None:
        self.train: list = []
        self.val: list = []
        self.test: list = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.train.append(batch)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.val.append(batch)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.test.append(batch)


def _fit(dm: SemiSupervisedDataModule, steps: int = 4, method: str = "maxmin_nrm", test: bool = False):
    pl.seed_everything(0, verbose=False)
    model = NRM(in_channels=3, num_classes=4, image_size=8, layers=[4, "M"], method=method)
    seen = _Seen()
    trainer = pl.Trainer(max_steps=steps, limit_val_batches=1, val_check_interval=2, callbacks=[seen], **TRAINER)
    trainer.fit(model, dm)
    if test:
        trainer.test(model, dm, verbose=False)
    return model, seen


def test_training_batches_are_augmented_and_evaluation_batches_are_not():
    dm = _dm(augment=True)
    _, seen = _fit(dm)
    raw = _dm()
    raw.setup("fit")
    loader = [batch for batch, _, _ in raw.train_dataloader()][:4]
    assert len(seen.train) == 4 and dm.augmented_batches == 4 and dm.state_dict()["augmented_batches"] == 4
    for k, (got, plain) in enumerate(zip(seen.train, loader)):
        g = torch.Generator().manual_seed(3 * 1_000_003 + k)  # the k-th training batch of seed 3
        x, y = plain["labelled"]
        assert torch.equal(got["labelled"][0], random_crop_flip(x, 4, True, "reflect", g))
        assert torch.equal(got["unlabelled"], random_crop_flip(plain["unlabelled"], 4, True, "reflect", g))
        assert torch.equal(got["labelled"][1], y)  # labels untouched
        assert got["labelled"][0].shape == x.shape and got["labelled"][0].dtype == x.dtype
        assert not torch.equal(got["labelled"][0], x)
    val_x, val_y = next(iter(raw.val_dataloader()))
    assert len(seen.val) == 2 and all(torch.equal(b[0], val_x) and torch.equal(b[1], val_y) for b in seen.val)
    # test batches reach the model unchanged
    with_test = SemiSupervisedDataModule(
        _data(), test=_data(40), labels_per_class=5, labelled_batch_size=6, val_size=20, seed=3, augment=True
    )
    _, seen = _fit(with_test, steps=2, test=True)
    assert torch.equal(seen.test[0][0], with_test.subset("test")[0])


def test_off_by_default_the_batches_are_the_loaders_own():
    dm = _dm()
    assert dm.augment is False
    model, seen = _fit(dm)
    raw = _dm()
    raw.setup("fit")
    for got, plain in zip(seen.train, [batch for batch, _, _ in raw.train_dataloader()][:4]):
        assert torch.equal(got["labelled"][0], plain["labelled"][0]) and torch.equal(
            got["unlabelled"], plain["unlabelled"]
        )
    again, _ = _fit(_dm(augment=False))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    assert dm.augmented_batches == 0


def test_seeded_same_images_for_every_method_and_different_seeds_differ():
    first, seen_a = _fit(_dm(augment=True))
    second, _ = _fit(_dm(augment=True))
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    _, seen_ce = _fit(_dm(augment=True), method="ce")  # another model sees the same augmented batches
    assert all(torch.equal(a["unlabelled"], c["unlabelled"]) for a, c in zip(seen_a.train, seen_ce.train))
    plain, _ = _fit(_dm())
    assert not all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), plain.state_dict().values()))
    other = SemiSupervisedDataModule(
        _data(), labels_per_class=5, labelled_batch_size=6, unlabelled_ratio=2, val_size=20, seed=3, augment=True
    )
    other.augmented_batches = 1  # the stream's position: batch k is augmented by draw k
    raw = _dm()
    raw.setup("fit")
    batches = [batch for batch, _, _ in raw.train_dataloader()]
    assert torch.equal(other.augment_batch(batches[1])["unlabelled"], seen_a.train[1]["unlabelled"])
    assert other.augmented_batches == 2
    reseeded = SemiSupervisedDataModule(
        _data(), labels_per_class=5, labelled_batch_size=6, unlabelled_ratio=2, val_size=20, seed=4, augment=True
    )
    assert not torch.equal(reseeded.augment_batch(batches[0])["unlabelled"], seen_a.train[0]["unlabelled"])
    # the position is checkpointed and restored
    restored = _dm(augment=True)
    restored.load_state_dict({**_dm().state_dict(), "augmented_batches": 7})
    assert restored.augmented_batches == 7


def test_labelled_only_batches_and_the_models_own_hook():
    calls = []

    class Marked(NRM):
        def on_after_batch_transfer(self, batch, dataloader_idx):
            calls.append(self.trainer.training)
            return batch

    dm = SemiSupervisedDataModule(
        _data(), labels_per_class=5, labelled_batch_size=6, unlabelled_ratio=0, val_size=20, seed=3, augment=True
    )
    seen = _Seen()
    pl.Trainer(max_steps=2, limit_val_batches=0, callbacks=[seen], **TRAINER).fit(
        Marked(in_channels=3, num_classes=4, image_size=8, layers=[4, "M"], method="ce"), dm
    )
    raw = SemiSupervisedDataModule(
        _data(), labels_per_class=5, labelled_batch_size=6, unlabelled_ratio=0, val_size=20, seed=3
    )
    raw.setup("fit")
    x, y = next(iter(raw.train_dataloader()))
    g = torch.Generator().manual_seed(3 * 1_000_003)
    assert torch.equal(seen.train[0][0], random_crop_flip(x, 4, True, "reflect", g)) and torch.equal(
        seen.train[0][1], y
    )
    assert calls == [True, True]  # the model's hook still runs, after the augmentation
