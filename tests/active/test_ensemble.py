"""Ensemble (issue 23): members as MC samples for every heuristic, trained together or in turns, resumable."""

import math

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch import nn

from trinity_lightning.active import BALD, ActiveLearning, Entropy
from trinity_lightning.active.ensemble import Ensemble
from trinity_lightning.active.scoring import score_forward
from trinity_lightning.models import Classifier

from ._helpers import datamodule


def _member():
    return Classifier(model=nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3)), num_classes=3, lr=0.05)


def _trainer(root, *callbacks, **kwargs):
    kwargs.setdefault("max_epochs", -1)
    return pl.Trainer(
        callbacks=list(callbacks),
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        **kwargs,
    )


def test_bad_input():
    with pytest.raises(ValueError, match="members: an ensemble needs at least 2 members, got 1"):
        Ensemble([_member()])
    with pytest.raises(ValueError, match="members: an ensemble needs at least 2 members, got 1"):
        Ensemble.from_factory(_member, n_members=1)
    with pytest.raises(ValueError, match="members: every member must be a LightningModule"):
        Ensemble([_member(), nn.Linear(4, 3)])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="mode"):
        Ensemble([_member(), _member()], mode="bagging")


def test_members_are_samples_for_bald_and_the_mean_for_entropy():
    ens = Ensemble.from_factory(_member, n_members=4)
    x = torch.randn(6, 4)
    samples, mask = ens.mc_logits(x, n_samples=2)
    assert samples.shape == (4, 6, 3) and mask is None
    assert torch.allclose(samples[2], ens.members[2](x))
    mean = ens.pool_logits(x).exp()
    assert torch.allclose(mean, torch.stack([m(x).softmax(-1) for m in ens.members]).mean(0), atol=1e-6)
    # BALD over members: 0 when all members agree, > 0 when they disagree
    same = Ensemble([_member(), _member()])
    same.members[1].load_state_dict(same.members[0].state_dict())
    bald = BALD(n_samples=2)
    assert score_forward(bald)(same, x).abs().max() < 1e-6
    assert (score_forward(bald)(ens, x) > 1e-4).all()
    assert torch.allclose(score_forward(Entropy())(ens, x), Entropy().score(ens.pool_logits(x)))


class _Tagger(pl.LightningModule):
    """Token logits with a padding mask through ``pool_logits`` (like the NER tagger)."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 3)

    def pool_logits(self, batch):
        tokens = batch[0]
        return self.emb(tokens), tokens > 0


def test_tagger_members_keep_the_mask():
    ens = Ensemble.from_factory(_Tagger, n_members=3)
    tokens = torch.tensor([[1, 2, 0], [3, 0, 0]])
    samples, mask = ens.mc_logits((tokens,), 5)
    assert samples.shape == (3, 2, 3, 3) and mask.tolist() == [[True, True, False], [True, False, False]]
    log_p, mask2 = ens.pool_logits((tokens,))
    assert log_p.shape == (2, 3, 3) and torch.equal(mask, mask2)
    scores = BALD(n_samples=2).score(samples, mask)
    assert scores.shape == (2,) and bool(torch.isfinite(scores).all())


def test_bald_campaign_over_an_ensemble(tmp_path):
    ens = Ensemble.from_factory(_member, n_members=3)
    al = ActiveLearning("bald", query_size=10, budget=42, epochs_per_round=2, strategy_kwargs={"n_samples": 2})
    trainer = _trainer(tmp_path, al)
    trainer.fit(ens, datamodule=datamodule())
    assert al.finished and al.curve[-1]["labelled"] == 42
    assert al.curve[-1]["val_acc"] > 0.8 and "member2/val_acc" in trainer.callback_metrics
    assert "member0/val_acc" not in al.curve[-1]  # the curve holds the ensemble's own metrics
    assert len(trainer.optimizers) == 3


def test_sequence_mode_trains_one_member_per_epoch(tmp_path):
    ens = Ensemble.from_factory(_member, n_members=2, mode="sequence")
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in ens.members]
    _trainer(tmp_path, max_epochs=1, limit_val_batches=0).fit(ens, datamodule=datamodule())
    changed = [any(not torch.equal(v, m.state_dict()[k]) for k, v in b.items()) for m, b in zip(ens.members, before)]
    assert changed == [True, False]


def test_members_with_a_scheduler_are_refused(tmp_path):
    class Scheduled(Classifier):
        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=0.1)
            return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, 1)}

    torch.manual_seed(0)
    ens = Ensemble([Scheduled(model=nn.Linear(4, 3), num_classes=3), _member()])
    with pytest.raises(ValueError, match=r"members: member 0 \(Scheduled\).configure_optimizers"):
        _trainer(tmp_path, max_epochs=1).fit(ens, datamodule=datamodule())


class _Crash(Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == 3:
            raise RuntimeError("simulated crash")


def test_checkpointed_and_resumed_exactly(tmp_path):
    def run(root, crash=False, ckpt_path=None):
        ens = Ensemble.from_factory(_member, n_members=2)
        al = ActiveLearning("bald", query_size=10, budget=32, epochs_per_round=2, strategy_kwargs={"n_samples": 2})
        cbs = [al, ModelCheckpoint(dirpath=root / "ckpt", save_last=True)] + ([_Crash()] if crash else [])
        dm = datamodule(root)
        _trainer(root, *cbs).fit(ens, datamodule=dm, ckpt_path=ckpt_path)
        return ens, al, dm

    ref, ref_al, ref_dm = run(tmp_path / "ref")
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(tmp_path / "run", crash=True)
    saved = torch.load(tmp_path / "run" / "ckpt" / "last.ckpt", weights_only=False)
    assert len(saved["optimizer_states"]) == 2 and any(k.startswith("members.1.") for k in saved["state_dict"])
    ens, al, dm = run(tmp_path / "run", ckpt_path="last")
    assert dm.labelled_round.tolist() == ref_dm.labelled_round.tolist()
    assert [round(r["val_acc"], 5) for r in al.curve] == [round(r["val_acc"], 5) for r in ref_al.curve]
    for a, b in zip(ens.state_dict().values(), ref.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)
    assert not math.isnan(al.curve[-1]["val_loss"])
