from __future__ import annotations

import warnings
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import yaml

from trinity_lightning.cli import main as trinity
from trinity_lightning.crowd import CrowdDataModule, CrowdEM, SimulatedCrowdDataModule, soft_target_cross_entropy
from trinity_lightning.data import ArrayDataModule, ArrayDataset
from trinity_lightning.models import Classifier

ROOT = Path(__file__).resolve().parents[2]


def _setup(epochs: int, callback: CrowdEM | None = None) -> tuple[pl.Trainer, Classifier, SimulatedCrowdDataModule]:
    pl.seed_everything(0, verbose=False)
    dm = SimulatedCrowdDataModule(
        "digits", num_annotators=12, labels_per_item=1, hammer_fraction=0.4, train_limit=600, batch_size=50, seed=0
    )
    model = Classifier(num_classes=10, in_channels=1, image_size=8, channels=(16,), lr=1e-2)
    trainer = pl.Trainer(
        max_epochs=epochs,
        callbacks=[callback or CrowdEM(epochs_per_round=2)],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
        num_sanity_val_steps=0,
    )
    return trainer, model, dm


def _crowd_em(trainer: pl.Trainer) -> CrowdEM:
    return next(c for c in trainer.callbacks if isinstance(c, CrowdEM))  # type: ignore[attr-defined]


def test_rounds_replace_the_targets_and_log_annotator_quality():
    trainer, model, dm = _setup(4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, dm)
    cb = _crowd_em(trainer)
    assert cb.round == 2 and [h["epoch"] for h in cb.history] == [1.0, 3.0]
    assert torch.equal(dm.targets, cb.posteriors) and cb.confusions.shape == (12, 10, 10)
    assert {"crowd/round", "crowd/worker_accuracy_mean", "crowd/label_acc"} <= set(trainer.callback_metrics)
    majority = (dm.aggregator.probas_.argmax(1) == dm.gold).float().mean()
    # the model-bootstrapped labels beat majority vote (0.50 vs 0.41 here: one label per item, 40% good workers)
    assert max(h["label_acc"] for h in cb.history) > majority + 0.03
    assert cb.history[0]["label_acc_initial"] == pytest.approx(float(majority))  # the targets round 1 replaced
    assert "label_acc_initial" not in cb.history[1]


def test_resume_from_a_checkpoint_is_exact(tmp_path):
    full, model_full, _ = _setup(4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full.fit(model_full, _setup(4)[2])
        first, model_first, dm_first = _setup(2)
        first.fit(model_first, dm_first)
        ckpt = tmp_path / "mid.ckpt"
        first.save_checkpoint(ckpt)
        saved = torch.load(ckpt, weights_only=True)["callbacks"][CrowdEM(epochs_per_round=2).state_key]
        assert saved["round"] == 1 and torch.equal(saved["posteriors"], _crowd_em(first).posteriors)
        resumed, model_resumed, dm_resumed = _setup(4)
        resumed.fit(model_resumed, dm_resumed, ckpt_path=ckpt)
    a, b = _crowd_em(full), _crowd_em(resumed)
    assert b.round == 2 and b.history == a.history
    assert torch.equal(a.posteriors, b.posteriors) and torch.equal(a.confusions, b.confusions)
    for (name, p), (_, q) in zip(model_full.state_dict().items(), model_resumed.state_dict().items()):
        assert torch.equal(p, q), name


def test_needs_a_crowd_datamodule():
    dm = ArrayDataModule(ArrayDataset(torch.randn(20, 1, 8, 8), torch.arange(20) % 10), batch_size=10)
    model = Classifier(num_classes=10, in_channels=1, image_size=8, channels=(4,))
    trainer = pl.Trainer(
        max_epochs=1,
        callbacks=[CrowdEM()],
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    with pytest.raises(ValueError, match="CrowdEM needs a CrowdDataModule"):
        trainer.fit(model, dm)
    with pytest.raises(ValueError, match="epochs_per_round"):
        CrowdEM(epochs_per_round=0)


def test_crowd_datamodule_soft_targets_and_validation():
    x = torch.randn(6, 4)
    frame = {"task": [0, 0, 1, 2, 3, 4], "worker": ["a", "b", "a", "b", "a", "b"], "label": [1, 0, 1, 1, 0, 1]}
    dm = CrowdDataModule(x, frame, num_classes=3, batch_size=3)
    with pytest.warns(UserWarning, match="no annotation"):  # item 5 was never labelled: excluded
        dm.setup("fit")
    assert dm.annotation_table.unlabelled_items == [5] and dm.targets.shape == (5, 3)
    assert dm.targets[0].tolist() == [0.5, 0.5, 0.0]
    with pytest.raises(ValueError, match=r"posteriors: expected shape \(5, 3\)"):
        dm.set_targets(torch.ones(2, 3))
    logits = torch.randn(3, 3)
    assert torch.isclose(
        soft_target_cross_entropy(logits, dm.targets[:3]), torch.nn.functional.cross_entropy(logits, dm.targets[:3])
    )
    bad = CrowdDataModule(x, {"task": ["x"], "worker": ["a"], "label": [0]})
    with pytest.raises(Exception, match="unknown item 'x'"):
        bad.setup("fit")


def test_crowd_digits_recipe_fast_dev_run(tmp_path):
    recipe = yaml.safe_load((ROOT / "recipes" / "crowd_digits.yaml").read_text())
    recipe["trainer"]["default_root_dir"] = str(tmp_path / "run")
    recipe["trainer"]["fast_dev_run"] = True
    recipe["trainer"]["callbacks"][0]["init_args"]["epochs_per_round"] = 1  # a round in the single epoch
    config = tmp_path / "recipe.yaml"
    config.write_text(yaml.safe_dump(recipe))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert trinity(["fit", "--config", str(config), "--summary", "false"]) == 0


def test_resume_from_a_model_checkpoint_written_mid_run_is_exact(tmp_path):
    """The realistic path: ModelCheckpoint (monitoring gold val_acc) saves the epoch of a round; resume from it."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    def run(ckpt_path: Path | None, root: Path) -> tuple[CrowdEM, Classifier]:
        trainer, model, dm = _setup(4)
        checkpoint = ModelCheckpoint(dirpath=root, filename="{epoch}", save_top_k=-1, monitor="val_acc", mode="max")
        trainer.callbacks.append(checkpoint)  # type: ignore[attr-defined]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.fit(model, dm, ckpt_path=ckpt_path)
        return _crowd_em(trainer), model

    full, model_full = run(None, tmp_path / "full")
    saved = torch.load(tmp_path / "full" / "epoch=1.ckpt", weights_only=True)
    assert saved["callbacks"][full.state_key]["round"] == 1  # the round of epoch 1 is in its checkpoint
    resumed, model_resumed = run(tmp_path / "full" / "epoch=1.ckpt", tmp_path / "resumed")
    assert resumed.history == full.history and torch.equal(resumed.posteriors, full.posteriors)
    for (name, p), (_, q) in zip(model_full.state_dict().items(), model_resumed.state_dict().items()):
        assert torch.equal(p, q), name
