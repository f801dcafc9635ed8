"""Rank regularization (tltorch's tensor lasso) on tensorized layers, and ``Tensorize(rank_regularization=...)``."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from trinity_lightning.data import DigitsDataModule
from trinity_lightning.models import Classifier, SmallCNN
from trinity_lightning.tensor import Tensorize, load_tensorized, tensorize
from trinity_lightning.tensor.regularization import LASSO_KEY, RankLasso, effective_ranks, fold_rank_lasso


def _model() -> Classifier:
    return Classifier(in_channels=1, image_size=8, channels=(8, 16), lr=0.05)


class LossProbe(Callback):
    """Records the loss handed to backward at every step."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_before_backward(self, trainer, pl_module, loss):
        self.losses.append(float(loss.detach()))


def _trainer(root: Path, max_epochs: int, *callbacks: Callback, batches: int = 3) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=max_epochs,
        default_root_dir=root,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_train_batches=batches,
        limit_val_batches=1,
        callbacks=[ModelCheckpoint(dirpath=root / "ckpt", save_last=True), *callbacks],
    )


def _lasso_keys(state: dict[str, torch.Tensor]) -> list[str]:
    return sorted(k for k in state if f".{LASSO_KEY}." in k)


@pytest.mark.parametrize("factorization", ["tucker", "tt"])
def test_penalty_is_added_to_the_loss_by_the_expected_amount(tmp_path, factorization):
    losses = {}
    metrics = {}
    for penalty in (0.0, 0.05):
        pl.seed_everything(0)
        probe = LossProbe()
        exclude = [torch.nn.Linear] if factorization == "tt" else []
        callback = Tensorize(factorization, 0.5, exclude=exclude, rank_regularization=penalty, verbose=False)
        trainer = _trainer(tmp_path / str(penalty), 1, callback, probe, batches=1)
        trainer.fit(_model(), DigitsDataModule(batch_size=32))
        losses[penalty] = probe.losses[0]
        metrics[penalty] = dict(trainer.callback_metrics)
        assert (callback.lasso is None) == (penalty == 0)
    # the lasso weights start at 1 (identity): same forward, loss larger by exactly penalty x mean|w| = penalty
    assert losses[0.05] - losses[0.0] == pytest.approx(0.05, abs=1e-5)
    assert float(metrics[0.05]["tensorize/rank_penalty"]) == pytest.approx(0.05, abs=1e-6)
    assert "tensorize/rank_penalty" not in metrics[0.0]


def test_training_shrinks_the_lasso_weights_and_folds_them_at_the_end(tmp_path):
    pl.seed_everything(0)
    model = _model()
    callback = Tensorize("tucker", 0.5, rank_regularization=1.0, verbose=False)
    trainer = _trainer(tmp_path, 2, callback)
    trainer.fit(model, DigitsDataModule(batch_size=32))
    ckpt = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)
    lasso = {k: v for k, v in ckpt["state_dict"].items() if f".{LASSO_KEY}." in k}
    assert lasso and all(float(v.max()) < 1.0 for v in lasso.values())  # the penalty pushed every weight down
    # after fit: folded into the factors, no hooks or lasso parameters left, effective ranks reported
    assert not _lasso_keys(model.state_dict())
    assert not any(m._forward_hooks for m in model.modules() if hasattr(m, "factors"))
    assert set(callback.effective_ranks) == {"model.features.0", "model.features.4", "model.head.2"}
    assert callback.report is not None and callback.report.effective_ranks == callback.effective_ranks
    assert callback.report.to_dict()["effective_ranks"]["model.features.4"] == list(
        callback.effective_ranks["model.features.4"]
    )


def test_fold_keeps_the_function_and_counts_components_switched_off():
    torch.manual_seed(0)
    net = SmallCNN(1, 10, channels=(8, 16), image_size=8)
    tensorize(net, "tucker", 0.5)
    lasso = RankLasso(0.1)
    assert lasso.attach(net) == ["features.0", "features.4", "head.2"]
    weights = net.features[4].weight.lasso_weights
    with torch.no_grad():
        for w in weights:
            w.uniform_(0.2, 0.9)
        weights[0][:2] = 0.0  # two output-channel components off
    x = torch.randn(3, 1, 8, 8)
    net.eval()
    lasso.reset()
    with torch.no_grad():
        before = net(x)
    all_weights = [w for m in (net.features[0], net.features[4], net.head[2]) for w in m.weight.lasso_weights]
    n_weights = sum(w.numel() for w in all_weights)
    total = sum(float(w.abs().sum()) for w in all_weights)
    assert float(lasso.penalty()) == pytest.approx(0.1 * total / n_weights, rel=1e-5)
    ranks = effective_ranks(net)
    assert ranks["features.4"][0] == net.features[4].weight.rank[0] - 2
    assert fold_rank_lasso(net) == ranks
    with torch.no_grad():
        assert torch.allclose(net(x), before, atol=1e-5)
    assert not _lasso_keys(net.state_dict())


def test_lasso_runs_before_tensor_dropout():
    net = SmallCNN(1, 10, channels=(8, 16), image_size=8)
    tensorize(net, "tucker", 0.8, exclude=["head.*"])
    callback = Tensorize("tucker", 0.8, tensor_dropout=0.5, rank_regularization=0.1, verbose=False)
    callback._mark_done(net)  # type: ignore[arg-type]
    hooks = list(net.features[4].weight._forward_hooks.values())
    assert [type(h).__name__ for h in hooks] == ["_TuckerLasso", "TuckerDropout"]
    net.train()
    net(torch.randn(2, 1, 8, 8)).sum().backward()  # dropout on the lasso-scaled factors: shapes agree
    assert net.features[4].weight.lasso_weights[0].grad is not None


def test_checkpoint_resumes_with_the_trained_lasso_weights_and_loads_outside_the_trainer(tmp_path):
    pl.seed_everything(0)
    model = _model()
    trainer = _trainer(tmp_path, 1, Tensorize("tucker", 0.5, rank_regularization=1.0, verbose=False))
    trainer.fit(model, DigitsDataModule(batch_size=32))
    ckpt_path = tmp_path / "ckpt" / "last.ckpt"
    saved = torch.load(ckpt_path, weights_only=False)["state_dict"]
    assert len(_lasso_keys(saved)) == 4 + 4 + 4  # Tucker: one weight vector per mode of each of the 3 layers

    loaded: dict[str, torch.Tensor] = {}

    class Capture(Callback):
        def on_train_start(self, trainer, pl_module):  # after the checkpoint is restored, before any step
            loaded.update({k: v.clone() for k, v in pl_module.state_dict().items()})

    callback = Tensorize("tucker", 0.5, rank_regularization=1.0, verbose=False)
    resumed = _trainer(tmp_path / "resume", 2, callback, Capture())
    resumed.fit(_model(), DigitsDataModule(batch_size=32), ckpt_path=ckpt_path)
    assert loaded.keys() == saved.keys()
    assert all(torch.equal(loaded[k], saved[k]) for k in saved)  # lasso weights included
    assert resumed.global_step == trainer.global_step + 3

    # outside the Trainer the lasso weights are folded into the factors: same function as the trained model
    x = torch.randn(4, 1, 8, 8)
    fresh = load_tensorized(_model(), ckpt_path).eval()
    assert not _lasso_keys(fresh.state_dict())
    with torch.no_grad():
        assert torch.allclose(fresh(x), model.eval()(x), atol=1e-5)

    # tested under a callback without rank_regularization: the lasso weights are folded in
    plain = _trainer(tmp_path / "plain", 1, Tensorize("tucker", 0.5, verbose=False))
    tested = _model()
    plain.test(tested, DigitsDataModule(batch_size=32), ckpt_path=ckpt_path, verbose=False)
    with torch.no_grad():
        assert torch.allclose(tested.eval()(x), model(x), atol=1e-5)
    # ... but resuming fit with another setting would not restore the optimizer state: said clearly
    plain = _trainer(tmp_path / "plain", 2, Tensorize("tucker", 0.5, verbose=False))
    with pytest.raises(ValueError, match="rank_regularization: this checkpoint was saved with rank regularization"):
        plain.fit(_model(), DigitsDataModule(batch_size=32), ckpt_path=ckpt_path)


def test_bad_values_and_unsupported_factorizations(tmp_path):
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="rank_regularization: expected a finite penalty >= 0"):
            Tensorize(rank_regularization=bad)
    with pytest.raises(ValueError, match="rank_regularization: not available with factorization='cp'"):
        Tensorize("cp", rank_regularization=0.1)
    Tensorize("cp", rank_regularization=0.0)  # off: fine
    with pytest.raises(ValueError, match="penalty: expected a finite penalty > 0"):
        RankLasso(0.0)
    net = SmallCNN(1, 10, channels=(8,), image_size=8)
    tensorize(net, "cp", 0.5)
    with pytest.raises(ValueError, match=r"penalty: layer 'features.0' is CP-factorized"):
        RankLasso(0.1).attach(net)
    # TT would turn the linear head into a block-TT matrix: fails at setup, naming the layers and the way out
    trainer = _trainer(tmp_path, 1, Tensorize("tt", 0.5, rank_regularization=0.1, epoch=1, verbose=False))
    with pytest.raises(ValueError, match=r"rank_regularization: with factorization='tt' the linear layers "):
        trainer.fit(_model(), DigitsDataModule(batch_size=32))

    class Manual(Classifier):
        def __init__(self) -> None:
            super().__init__(in_channels=1, image_size=8, channels=(8,))
            self.automatic_optimization = False

    trainer = _trainer(tmp_path / "m", 1, Tensorize("tucker", 0.5, rank_regularization=0.1, verbose=False))
    with pytest.raises(ValueError, match="rank_regularization: needs automatic optimization"):
        trainer.fit(Manual(), DigitsDataModule(batch_size=32))
