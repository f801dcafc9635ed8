import json

import numpy as np
import pytest
import torch

from trinity_lightning.active import ActiveLearningDataModule
from trinity_lightning.data import ArrayDataset


def _pool(n: int = 20) -> ArrayDataset:
    return ArrayDataset(torch.arange(n, dtype=torch.float32).unsqueeze(1), torch.arange(n) % 3)


def _dm(tmp_path=None, **kwargs):
    kwargs.setdefault("initial_labelled", 4)
    kwargs.setdefault("batch_size", 4)
    kwargs.setdefault("num_classes", 3)
    dm = ActiveLearningDataModule(_pool(), labels_path=str(tmp_path / "labels.json") if tmp_path else None, **kwargs)
    dm.setup("fit")
    return dm


def test_initial_split_and_label():
    dm = _dm()
    assert dm.n_labelled == 4 and dm.n_pool == 16
    assert sorted(dm.labelled_indices + dm.pool_indices) == list(range(20))
    target = dm.pool_indices[:3]
    dm.label(target, labels=[2, 2, 2])
    assert dm.n_labelled == 7 and dm.round == 1
    assert all(i in dm.labelled_indices for i in target)
    assert (dm.labelled_round[target] == 1).all()
    # annotator labels override the dataset's own labels in the training loader
    xs, ys = zip(*[(x, y) for x, y in dm.train_dataloader().dataset])
    by_index = {int(x.item()): int(y) for x, y in zip(xs, ys)}
    assert all(by_index[i] == 2 for i in target)
    untouched = [i for i in dm.labelled_indices if i not in target]
    assert all(by_index[i] == i % 3 for i in untouched)


def test_fraction_and_costs():
    dm = ActiveLearningDataModule(_pool(), initial_labelled=0.25, cost_fn=lambda item: int(item[0].item()) + 1)
    dm.setup()
    assert dm.n_labelled == 5
    assert dm.labelled_cost == int(sum(i + 1 for i in dm.labelled_indices))


def test_pool_loader_order_and_subset():
    dm = _dm(pool_batch_size=5)
    xs = torch.cat([b[0] for b in dm.pool_dataloader()]).squeeze(1).long().tolist()
    assert xs == dm.pool_indices
    sub = dm.pool_indices[::2]
    xs = torch.cat([b[0] for b in dm.pool_dataloader(sub)]).squeeze(1).long().tolist()
    assert xs == sub


def test_pool_dataset_without_augmentation():
    train = ArrayDataset(torch.zeros(6, 1) + 100, torch.zeros(6, dtype=torch.long))  # "augmented"
    clean = ArrayDataset(torch.arange(6, dtype=torch.float32).unsqueeze(1), torch.zeros(6, dtype=torch.long))
    dm = ActiveLearningDataModule(train, pool_dataset=clean, initial_labelled=2)
    dm.setup()
    xs = torch.cat([b[0] for b in dm.pool_dataloader()]).squeeze(1).long().tolist()
    assert xs == dm.pool_indices
    with pytest.raises(ValueError, match="pool_dataset"):
        ActiveLearningDataModule(train, pool_dataset=_pool(5)).setup()


@pytest.mark.parametrize(
    ("indices", "labels", "error", "match"),
    [
        ([100], None, ValueError, "out of range"),
        ([5, 5], None, ValueError, "more than once"),
        ([0], [7], ValueError, "out of range"),
        ([0], ["cat"], TypeError, "integer"),
        ([0], [1.5], TypeError, "integer"),
        ([0, 1], [1], ValueError, "2 indices"),
    ],
)
def test_bad_label_calls(indices, labels, error, match):
    dm = ActiveLearningDataModule(_pool(), num_classes=3)
    dm.setup()
    with pytest.raises(error, match=match):
        dm.label(indices, labels)


def test_already_labelled_and_empty_pool():
    dm = _dm()
    with pytest.raises(ValueError, match="already labelled"):
        dm.label([dm.labelled_indices[0]])
    dm.label(dm.pool_indices)
    with pytest.raises(ValueError, match="pool is empty"):
        dm.pool_dataloader()
    with pytest.raises(ValueError, match="count"):
        dm.label_randomly(1)


def test_state_dict_roundtrip_plain_types(tmp_path):
    dm = _dm()
    dm.label(dm.pool_indices[:2], labels=[[0, 1], 2])
    state = dm.state_dict()
    json.dumps(state)  # plain Python only
    other = _dm(initial_labelled=0)
    other.load_state_dict(state)
    assert other.labelled_indices == dm.labelled_indices
    assert other.annotations == dm.annotations and other.round == dm.round
    with pytest.raises(ValueError, match="pool of 20"):
        small = ActiveLearningDataModule(_pool(5))
        small.setup()
        small.load_state_dict(state)


def test_labels_file_atomic_and_restored(tmp_path):
    dm = _dm(tmp_path)
    dm.label(dm.pool_indices[:3], labels=[0, 1, 2])
    data = json.loads((tmp_path / "labels.json").read_text())
    assert len(data["labelled"]) == 7 and len(data["labels"]) == 3
    assert not list(tmp_path.glob(".*tmp"))
    again = _dm(tmp_path, initial_labelled=10)  # the labels file wins over a new random start
    assert again.labelled_indices == dm.labelled_indices and again.annotations == dm.annotations


def test_labels_newer_than_the_checkpoint_are_kept_on_disk_and_applied_once(tmp_path, caplog):
    """Issue 13: a kill between the answers and the next checkpoint used to brick the campaign ("indices ...
    are already labelled" at every resume). The checkpoint wins; the newer labels stay in the file and the
    replayed round applies them exactly once."""
    dm = _dm(tmp_path)
    state = dm.state_dict()
    newer = dm.pool_indices[:2]
    dm.label(newer, labels=[1, 1])  # labelled after the "checkpoint"
    fresh = ActiveLearningDataModule(_pool(), labels_path=str(tmp_path / "labels.json"), num_classes=3)
    fresh.setup()
    with caplog.at_level("INFO"):
        fresh.load_state_dict(state)
    assert "2 labels in" in caplog.text and "newer than the checkpoint" in caplog.text
    assert not set(newer) & set(fresh.labelled_indices)  # the replayed epochs train on the checkpoint's set
    fresh.save_labels(tmp_path / "labels.json")  # ... and a save before the replay loses nothing on disk
    assert set(map(str, newer)) <= set(json.loads((tmp_path / "labels.json").read_text())["labelled"])
    fresh.label(newer, labels=[1, 1])  # the replayed round: applied once, no "already labelled"
    assert fresh.annotations == {newer[0]: 1, newer[1]: 1} and fresh.round == dm.round
    assert fresh.state_dict() == dm.state_dict()


def test_a_broken_labels_file_does_not_brick_a_resume(tmp_path):
    dm = _dm(tmp_path)
    state = dm.state_dict()
    (tmp_path / "labels.json").write_text("{not json")
    fresh = ActiveLearningDataModule(_pool(), labels_path=str(tmp_path / "labels.json"), num_classes=3)
    with pytest.raises(ValueError, match="labels_path"):
        fresh.setup()  # a fresh fit refuses it, naming the file ...
    fresh = ActiveLearningDataModule(
        _pool(), labels_path=str(tmp_path / "labels.json"), num_classes=3, resume_labels=False
    )
    fresh.setup()
    with pytest.warns(UserWarning, match="resuming from the checkpoint"):
        fresh.load_state_dict(state)  # ... a resume warns and goes on from the checkpoint
    assert fresh.labelled_indices == dm.labelled_indices


def test_resume_labels_at_a_fresh_fit(tmp_path, caplog):
    """Issue 13: re-running with another initial_labelled silently continued the old labels file."""
    first = ActiveLearningDataModule(_pool(), labels_path=str(tmp_path / "l.json"), initial_labelled=5, num_classes=3)
    first.setup()
    again = ActiveLearningDataModule(_pool(), labels_path=str(tmp_path / "l.json"), initial_labelled=9, num_classes=3)
    with caplog.at_level("INFO"):
        again.setup()
    assert again.n_labelled == 5 and "l.json (5 labelled examples" in caplog.text and "resume_labels" in caplog.text
    afresh = ActiveLearningDataModule(
        _pool(), labels_path=str(tmp_path / "l.json"), initial_labelled=9, num_classes=3, resume_labels=False
    )
    afresh.setup()
    assert afresh.n_labelled == 9 and len(json.loads((tmp_path / "l.json").read_text())["labelled"]) == 9


def test_dict_items_and_hf_dataset():
    datasets = pytest.importorskip("datasets")
    hf = datasets.Dataset.from_dict({"x": [[float(i)] for i in range(8)], "label": [i % 2 for i in range(8)]})
    hf = hf.with_format("torch")
    dm = ActiveLearningDataModule(hf, initial_labelled=2, label_field="label", num_classes=2, batch_size=8)
    dm.setup()
    chosen = dm.pool_indices[0]
    dm.label([chosen], labels=[1 - chosen % 2])
    batch = next(iter(dm.train_dataloader()))
    assert batch["x"].shape == (3, 1)
    got = dict(zip(batch["x"].squeeze(1).long().tolist(), batch["label"].tolist()))
    assert got[chosen] == 1 - chosen % 2 and chosen not in dm.pool_indices


def test_constructor_errors():
    with pytest.raises(ValueError, match="batch_size"):
        ActiveLearningDataModule(_pool(), batch_size=0)
    with pytest.raises(ValueError, match="initial_labelled"):
        ActiveLearningDataModule(_pool(), initial_labelled=1.5)
    with pytest.raises(ValueError, match="initial_labelled"):
        ActiveLearningDataModule(_pool(), initial_labelled=50).setup()
    with pytest.raises(ValueError, match="dataset"):
        ActiveLearningDataModule().setup()
    with pytest.raises(RuntimeError, match="no labelled"):
        dm = ActiveLearningDataModule(_pool())
        dm.setup()
        dm.train_dataloader()
    assert np.array_equal(_dm().labelled_indices, _dm().labelled_indices)  # seeded
